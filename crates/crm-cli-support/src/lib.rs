//! What the `crm` and `crm-relay` command lines share: stable exit codes, one-line error
//! messages, and output (JSON for scripts, aligned tables for people).
//!
//! - [`exit`]: [`exit::OK`], [`exit::RUNTIME`], [`exit::USAGE`], the [`exit::Usage`] error a
//!   binary raises for bad input it finds itself, [`exit::message`] (an error and its causes
//!   on one line) and [`exit::one_line_usage`] (clap's usage error on one line).
//! - [`output`]: [`output::json`], [`output::table`] and [`output::pairs`]. Table widths count
//!   CJK characters as two columns, so Chinese names line up.

pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A runtime failure: a file, the network or the machine failed.
    pub const RUNTIME: u8 = 1;
    /// The input was wrong; nothing was changed.
    pub const USAGE: u8 = 2;

    /// An input error found by a command line itself.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct Usage(pub String);

    /// The error and its causes on one line, each cause once.
    pub fn message(e: &anyhow::Error) -> String {
        let mut parts: Vec<String> = Vec::new();
        for cause in e.chain() {
            let text = cause.to_string();
            if !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
        }
        parts.join(": ").replace('\n', " ")
    }

    /// clap's usage error folded onto one line: the message and its tips, without the usage
    /// block, then where to look for help.
    pub fn one_line_usage(rendered: &str) -> String {
        let text: Vec<&str> = rendered
            .lines()
            .map(str::trim)
            .take_while(|l| !l.starts_with("Usage:"))
            .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
            .collect();
        let mut line = text.join(" ");
        if !line.starts_with("error") {
            line = format!("error: {line}");
        }
        format!("{line} (see --help)")
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn usage_errors_fold_to_one_line() {
            let rendered = "error: the following required arguments were not provided:\n  --user <NAME>\n\nUsage: crm init --user <NAME>\n\nFor more information, try '--help'.\n";
            assert_eq!(
                super::one_line_usage(rendered),
                "error: the following required arguments were not provided: --user <NAME> (see --help)"
            );
        }

        #[test]
        fn causes_are_joined_once() {
            let e = anyhow::anyhow!("disk full").context("cannot save");
            assert_eq!(super::message(&e), "cannot save: disk full");
        }
    }
}

pub mod output {
    use comfy_table::presets::UTF8_BORDERS_ONLY;
    use comfy_table::{Cell, ContentArrangement, Table};
    use serde::Serialize;

    /// Pretty JSON on stdout.
    pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(value)?);
        Ok(())
    }

    /// An aligned table with a header, or `(none)`.
    pub fn table(header: &[&str], rows: Vec<Vec<String>>) {
        if rows.is_empty() {
            println!("(none)");
            return;
        }
        let mut t = Table::new();
        t.load_style(UTF8_BORDERS_ONLY)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(header.iter().map(Cell::new));
        for row in rows {
            t.add_row(row);
        }
        println!("{t}");
    }

    /// Label/value rows, without a header.
    pub fn pairs(rows: Vec<Vec<String>>) {
        let mut t = Table::new();
        t.load_style(UTF8_BORDERS_ONLY)
            .set_content_arrangement(ContentArrangement::Dynamic);
        for row in rows {
            t.add_row(row);
        }
        println!("{t}");
    }
}
