//! `crm-bench text`: how long replacing a long text (a record's notes) takes, and how large a
//! change it makes, at 5 KB, 20 KB, 40 KB and 1 MB.
//!
//! Three ways to turn a document's text into a new one, each on a fresh copy of the same
//! document, in one Automerge transaction:
//! - `diff`: Automerge's `update_text` (a Myers diff of the two texts), what the model used
//!   before; O(N·D), so it is run only up to `--diff-max` bytes (minutes past that);
//! - `splice`: delete the whole text and insert the new one;
//! - `trimmed`: `crm_model::doc::replace_text`, the model's way now: keep the common prefix
//!   and suffix, splice the middle.
//!
//! Two replacements of each text: `rewrite`, a different text of the same length (what
//! `crm account edit ID --notes TEXT` does with new notes), and `one place`, the same text
//! with one sentence in the middle changed (what the web UI's notes editor sends).
//!
//! Then the whole write path: `Store::edit` replacing an account's notes with a new text of
//! each size in a real replica (5 KB, 20 KB, 40 KB, and the largest text a field holds,
//! `MAX_PROSE_CHARS` Chinese characters), and the 1 MB one, which the model refuses.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crm_model::automerge::transaction::Transactable;
use crm_model::automerge::{Automerge, ObjType, ROOT, ReadDoc};
use crm_model::{Edit, Kind, MAX_PROSE_CHARS};
use crm_store::Store;
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub(crate) struct TextArgs {
    /// Text sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [5_000, 20_000, 40_000, 1_000_000])]
    sizes: Vec<usize>,
    /// Run Automerge's `update_text` only on texts up to this many bytes (it is quadratic).
    #[arg(long, default_value_t = 40_000)]
    diff_max: usize,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    bytes: usize,
    case: &'static str,
    way: &'static str,
    /// `None` when not run (`diff` past `--diff-max`).
    ms: Option<f64>,
    change_bytes: Option<usize>,
}

#[derive(Debug, Serialize)]
struct PathRow {
    bytes: usize,
    chars: usize,
    ms: f64,
    change_bytes: Option<usize>,
    outcome: String,
}

/// Deterministic text of about `bytes` bytes: words of a small vocabulary, sentences,
/// paragraphs (a xorshift generator; the same `seed` gives the same text).
fn prose(bytes: usize, seed: u64) -> String {
    const WORDS: &[&str] = &[
        "customer", "visit", "contract", "renewal", "price", "discount", "meeting", "the", "a",
        "of", "and", "to", "called", "asked", "about", "delivery", "invoice", "quality", "support",
        "ticket", "order", "next", "week", "budget", "approved", "manager",
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = String::with_capacity(bytes + 16);
    let mut in_sentence = 0;
    while out.len() < bytes {
        let word = WORDS[(next() % WORDS.len() as u64) as usize];
        out.push_str(word);
        in_sentence += 1;
        if in_sentence > 8 && next() % 4 == 0 {
            out.push_str(if next() % 5 == 0 { ".\n" } else { ". " });
            in_sentence = 0;
        } else {
            out.push(' ');
        }
    }
    out.truncate(bytes);
    out
}

/// The same text with about one sentence in the middle rewritten.
fn one_place(text: &str) -> String {
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid += 1;
    }
    let end = (mid + 60).min(text.len());
    let mut end = end;
    while !text.is_char_boundary(end) {
        end += 1;
    }
    format!(
        "{}rewritten: the customer agreed to the new terms{}",
        &text[..mid],
        &text[end..]
    )
}

fn document(text: &str) -> Result<(Automerge, crm_model::automerge::ObjId)> {
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    let obj = tx.put_object(ROOT, "notes", ObjType::Text)?;
    tx.splice_text(&obj, 0, 0, text)?;
    tx.commit();
    Ok((doc, obj))
}

/// Replaces the text one way and returns the time and the size of the change it made.
fn replace(
    base: &Automerge,
    obj: &crm_model::automerge::ObjId,
    new: &str,
    way: &str,
) -> Result<(Duration, usize)> {
    let mut doc = base.fork();
    let start = Instant::now();
    let mut tx = doc.transaction();
    match way {
        "diff" => tx.update_text(obj, new)?,
        "splice" => {
            let len = tx.length(obj);
            tx.splice_text(obj, 0, isize::try_from(len)?, new)?;
        }
        _ => crm_model::doc::replace_text(&mut tx, obj, new)?,
    }
    tx.commit();
    let took = start.elapsed();
    let bytes = doc
        .get_last_local_change()
        .map_or(0, |c| c.raw_bytes().len());
    anyhow::ensure!(doc.text(obj)? == new, "{way} did not produce the new text");
    Ok((took, bytes))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn main(args: TextArgs) -> Result<()> {
    let mut rows = Vec::new();
    for &bytes in &args.sizes {
        let old = prose(bytes, 1);
        let (base, obj) = document(&old)?;
        for (case, new) in [("rewrite", prose(bytes, 2)), ("one place", one_place(&old))] {
            for way in ["diff", "splice", "trimmed"] {
                if way == "diff" && bytes > args.diff_max {
                    rows.push(Row {
                        bytes,
                        case,
                        way,
                        ms: None,
                        change_bytes: None,
                    });
                    continue;
                }
                let (took, change) = replace(&base, &obj, &new, way)?;
                rows.push(Row {
                    bytes,
                    case,
                    way,
                    ms: Some(ms(took)),
                    change_bytes: Some(change),
                });
            }
        }
    }
    let path = store_path(&args.sizes)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "machine": crate::Machine::this(),
                "replace": rows,
                "store_edit": path,
            }))?
        );
        return Ok(());
    }
    println!("Replacing a text in one transaction (ms; change bytes)");
    println!(
        "{:>9}  {:<9}  {:>22}  {:>22}  {:>22}",
        "bytes", "case", "diff (update_text)", "splice (all)", "trimmed (now)"
    );
    for chunk in rows.chunks(3) {
        let cell = |r: &Row| match (r.ms, r.change_bytes) {
            (Some(ms), Some(b)) => format!("{ms:>10.1} ms {b:>8} B"),
            _ => format!("{:>22}", "not run"),
        };
        println!(
            "{:>9}  {:<9}  {:>22}  {:>22}  {:>22}",
            chunk[0].bytes,
            chunk[0].case,
            cell(&chunk[0]),
            cell(&chunk[1]),
            cell(&chunk[2])
        );
    }
    println!("\nStore::edit replacing an account's notes (a real replica, one commit)");
    println!(
        "{:>9}  {:>8}  {:>10}  {:>12}  outcome",
        "bytes", "chars", "ms", "change B"
    );
    for r in &path {
        println!(
            "{:>9}  {:>8}  {:>10.1}  {:>12}  {}",
            r.bytes,
            r.chars,
            r.ms,
            r.change_bytes.map_or_else(|| "-".into(), |b| b.to_string()),
            r.outcome
        );
    }
    Ok(())
}

/// `Store::edit` with new notes of each size, and with the largest text a field holds.
fn store_path(sizes: &[usize]) -> Result<Vec<PathRow>> {
    let dir = tempfile::tempdir()?;
    let mut store = Store::init(dir.path(), "bench", "laptop")?;
    let mut add = Edit::new(Kind::Account);
    add.set("name", "Notes bench")?;
    let id = store.create(&add)?.id;
    let widest: String = "客户拜访记录合同续签价格折扣"
        .chars()
        .cycle()
        .take(MAX_PROSE_CHARS)
        .collect();
    let mut texts: Vec<String> = sizes.iter().map(|&b| prose(b, 3)).collect();
    texts.push(widest);
    let mut out = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        // Notes of the same size first, then the timed replacement by a different text.
        let mut before = Edit::new(Kind::Account);
        let mut edit = Edit::new(Kind::Account);
        let replacement = if text.is_ascii() {
            prose(text.len(), 100 + i as u64)
        } else {
            text.chars().rev().collect()
        };
        let valid = before.replace_notes(text).is_ok() && edit.replace_notes(&replacement).is_ok();
        let start = Instant::now();
        let outcome = if valid {
            store.edit(id, &before).context("setting the first notes")?;
            let start = Instant::now();
            store.edit(id, &edit).context("replacing the notes")?;
            (start.elapsed(), "replaced".to_string())
        } else {
            let refused = Edit::new(Kind::Account).replace_notes(&replacement).err();
            (
                start.elapsed(),
                refused.map_or_else(|| "?".into(), |e| format!("refused: {e}")),
            )
        };
        let change_bytes = valid
            .then(|| store.outbox(usize::MAX).ok())
            .flatten()
            .and_then(|o| o.last().map(|c| c.bytes.len()));
        out.push(PathRow {
            bytes: text.len(),
            chars: text.chars().count(),
            ms: ms(outcome.0),
            change_bytes,
            outcome: outcome.1,
        });
    }
    Ok(out)
}
