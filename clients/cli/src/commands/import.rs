//! `crm import KIND FILE`: records from a CSV or spreadsheet file, with column mapping,
//! saved mapping templates, a dry run, duplicate checks, a progress bar and a per-row error
//! report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Arg, ArgAction, ArgMatches, Command};
use crm_import::{
    Action, ErrorReport, ImportError, ImportOptions, Mapping, RowOutcome, Source, SourceOptions,
};
use crm_model::Kind;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::{data_dir, open};
use crate::exit::Usage;
use crate::output;

/// How many rows to create a dry run lists in a table (all of them in JSON).
const SHOWN_CREATES: usize = 20;

pub(crate) fn command() -> Command {
    Command::new("import")
        .about("Import records from a CSV or XLSX file (columns mapped by header; duplicates checked)")
        .after_help(
            "Columns map automatically by header: field names, labels and common synonyms in English and \
             Chinese (名称, 公司, 邮箱, 电话, 手机, 网址, 行业, 备注, 标签, …). Override with --map COLUMN=FIELD \
             (FIELD may be tags, notes, custom.NAME, or - to skip the column).\n\
             CSV files may be UTF-8 (with or without a byte-order mark), UTF-16 with a byte-order mark, or \
             GB18030/GBK (detected when the file is not UTF-8); other encodings need --encoding.\n\
             Duplicates (same normalised email, phone, website domain or name) of records in the replica are \
             skipped, or merged into them with --update-existing; repeated rows of the file are skipped. \
             Rows are numbered as a spreadsheet shows them (the header is row 1).",
        )
        .arg(Arg::new("kind").required(true).value_name("KIND").help("The kind of record each row becomes, e.g. account"))
        .arg(Arg::new("file").required(true).value_name("FILE").help(".csv, .tsv, .txt, .xlsx, .xlsm, .xls or .ods"))
        .arg(
            Arg::new("map")
                .long("map")
                .value_name("COLUMN=FIELD")
                .action(ArgAction::Append)
                .help("Map a column to a field (tags, notes, custom.NAME, or - to skip it)"),
        )
        .arg(Arg::new("template").long("template").value_name("NAME").help("Use a saved column mapping"))
        .arg(
            Arg::new("save-template")
                .long("save-template")
                .value_name("NAME")
                .help("Save the column mapping used under NAME (in the replica's import-templates/)"),
        )
        .arg(
            Arg::new("dry-run")
                .long("dry-run")
                .action(ArgAction::SetTrue)
                .help("Show what would be created, updated, skipped as duplicates or rejected; write nothing"),
        )
        .arg(
            Arg::new("update-existing")
                .long("update-existing")
                .action(ArgAction::SetTrue)
                .help("Merge rows that match a stored record into it (values replaced, sets and tags united, notes appended)"),
        )
        .arg(Arg::new("sheet").long("sheet").value_name("SHEET").help("The spreadsheet sheet to read [default: the first]"))
        .arg(
            Arg::new("encoding")
                .long("encoding")
                .value_name("LABEL")
                .help("The CSV file's encoding, e.g. gbk, gb18030, big5, utf-8 [default: detected]"),
        )
        .arg(
            Arg::new("errors")
                .long("errors")
                .value_name("FILE")
                .help("Write the per-row error report (CSV) here [default: FILE.errors.csv, only when a row fails]"),
        )
}

/// Input errors of the import exit with the usage code.
fn classify(e: ImportError) -> anyhow::Error {
    if e.is_invalid_input() {
        Usage(e.to_string()).into()
    } else {
        e.into()
    }
}

pub(crate) fn run(m: &ArgMatches, as_json: bool) -> Result<()> {
    let kind: Kind = m
        .get_one::<String>("kind")
        .ok_or_else(|| Usage("missing KIND".into()))?
        .parse()?;
    let file = PathBuf::from(
        m.get_one::<String>("file")
            .ok_or_else(|| Usage("missing FILE".into()))?,
    );
    if !file.is_file() {
        return Err(Usage(format!("{}: no such file", file.display())).into());
    }
    let dir = data_dir(m)?;
    let mut store = open(m)?;
    let source_options = SourceOptions {
        encoding: m.get_one::<String>("encoding").cloned(),
        sheet: m.get_one::<String>("sheet").cloned(),
    };
    let mut source = Source::open(&file, &source_options).map_err(classify)?;
    let template = match m.get_one::<String>("template") {
        Some(name) => Some(crm_import::load_template(&dir, name, kind).map_err(classify)?),
        None => None,
    };
    let overrides: Vec<String> = m
        .get_many::<String>("map")
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let mapping =
        Mapping::build(kind, source.headers(), template.as_ref(), &overrides).map_err(classify)?;
    let saved = match m.get_one::<String>("save-template") {
        Some(name) => {
            Some(crm_import::save_template(&dir, name, &mapping.to_template()).map_err(classify)?)
        }
        None => None,
    };
    let options = ImportOptions {
        dry_run: m.get_flag("dry-run"),
        update_existing: m.get_flag("update-existing"),
        ..ImportOptions::default()
    };

    let explicit_errors = m.get_one::<String>("errors").map(PathBuf::from);
    let mut report = match &explicit_errors {
        Some(path) => Some(ErrorReport::create(path).map_err(classify)?),
        None => None,
    };
    let default_errors = errors_path(&file);
    let mut report_failure: Option<ImportError> = None;

    let bar = progress_bar(&source, as_json);
    let mut shown: Vec<RowOutcome> = Vec::new();
    let mut creates_shown = 0;
    let mut n = 0u64;
    let summary = crm_import::import(
        &mut store,
        &mut source,
        &mapping,
        &options,
        |outcome, src| {
            n += 1;
            if n.is_multiple_of(256) {
                bar.set_position(src.progress().0);
            }
            if !outcome.errors.is_empty() && report_failure.is_none() {
                if report.is_none() {
                    match ErrorReport::create(&default_errors) {
                        Ok(r) => report = Some(r),
                        Err(e) => report_failure = Some(e),
                    }
                }
                if let Some(r) = report.as_mut()
                    && let Err(e) = r.add(outcome)
                {
                    report_failure = Some(e);
                }
            }
            let keep = if as_json {
                options.dry_run || outcome.action != Action::Create
            } else if outcome.action == Action::Create {
                creates_shown += 1;
                options.dry_run && creates_shown <= SHOWN_CREATES
            } else {
                options.dry_run || outcome.action != Action::Unchanged
            };
            if keep {
                shown.push(outcome.clone());
            }
        },
    );
    bar.finish_and_clear();
    let summary = summary.map_err(classify)?;
    if let Some(e) = report_failure {
        return Err(anyhow::Error::new(e).context("writing the error report"));
    }
    let errors_file = match report {
        Some(r) => Some(r.finish().map_err(classify)?),
        None => None,
    };

    if as_json {
        output::json(&json!({
            "summary": summary,
            "errors_file": errors_file,
            "template_saved": saved,
            "mapping": mapping.columns.iter().map(|(h, t)| json!({"column": h, "field": t.name()})).collect::<Vec<_>>(),
            "rows": shown,
        }));
        return Ok(());
    }
    if options.dry_run {
        println!("dry run: nothing was written");
    }
    if !shown.is_empty() {
        let rows = shown
            .iter()
            .map(|o| {
                let detail = if o.errors.is_empty() {
                    o.detail.clone().unwrap_or_default()
                } else {
                    o.errors
                        .iter()
                        .map(|e| {
                            if e.column.is_empty() {
                                e.reason.clone()
                            } else {
                                format!("{}: {}", e.column, e.reason)
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                vec![
                    o.row.to_string(),
                    o.action.as_str().to_string(),
                    output::one_line(&o.title, 40),
                    output::one_line(&detail, 100),
                ]
            })
            .collect();
        output::table(&["row", "action", "title", "detail"], rows);
        if options.dry_run && summary.created > SHOWN_CREATES {
            println!(
                "… and {} more rows to create",
                summary.created - SHOWN_CREATES
            );
        }
    }
    let verb = if options.dry_run { " would give" } else { "" };
    println!(
        "{} rows of {} ({}){verb}: {} created, {} updated, {} unchanged, {} skipped as duplicates, {} rejected",
        summary.rows,
        file.display(),
        summary.source,
        summary.created,
        summary.updated,
        summary.unchanged,
        summary.duplicates,
        summary.errors,
    );
    if !summary.skipped_columns.is_empty() {
        println!(
            "columns not imported: {} (map them with --map COLUMN=FIELD)",
            summary.skipped_columns.join(", ")
        );
    }
    if let Some(path) = errors_file {
        println!("error report: {}", path.display());
    }
    if let Some(path) = saved {
        println!("mapping saved as {}", path.display());
    }
    Ok(())
}

/// The default error report beside the imported file: `FILE.errors.csv`.
fn errors_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".errors.csv");
    file.with_file_name(name)
}

/// A progress bar on a terminal; hidden when stderr is not one or the output is JSON.
fn progress_bar(source: &Source, as_json: bool) -> ProgressBar {
    if as_json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (_, total) = source.progress();
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{spinner} importing [{bar:40}] {percent}% {elapsed_precise} (eta {eta})",
    )
    .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_report_goes_beside_the_file() {
        assert_eq!(
            super::errors_path(std::path::Path::new("/tmp/客户.csv")),
            std::path::PathBuf::from("/tmp/客户.csv.errors.csv")
        );
    }
}
