//! `verify`: whether a store is sound, read one workspace and one document at a time.
//!
//! Per workspace: every change's stored hash is the hash of its bytes and its stored
//! dependencies are the change's; positions are `1..=head` without a gap, `head` being the
//! workspace row's; every change is filed under a document of the workspace. Per document:
//! `first_seq` and `last_seq` are the positions of its first and last change in the log, and
//! its snapshot, if any, loads, holds exactly the changes it lists, lists only changes of the
//! document in the log, and holds every change up to its position.
//!
//! A relay may serve the store meanwhile: a workspace is checked up to the head read when its
//! check starts, and what is pushed later is left for the next run, so nothing written
//! during a check is reported as a problem.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;

use automerge::{Automerge, Change};
use crm_sync::{DocId, Hash};
use serde::Serialize;
use uuid::Uuid;

use super::{Relay, hex};
use crate::ids::WorkspaceId;
use crate::store::{ChangeRow, DocumentRow, StoreError, StoredSnapshot};

/// Changes read per query of the log.
const LOG_PAGE: usize = 512;
/// Directory rows read per query.
const DOCUMENT_PAGE: usize = 256;
/// Problems listed in a report; past it they are only counted.
pub const MAX_LISTED_PROBLEMS: usize = 1000;

/// What [`Relay::verify`] checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub workspaces: u64,
    pub changes: u64,
    pub documents: u64,
    pub snapshots: u64,
    /// How many problems were found (more than `problems` lists when there are many).
    pub problem_count: u64,
    /// The first [`MAX_LISTED_PROBLEMS`] problems.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_sound(&self) -> bool {
        self.problem_count == 0
    }

    fn found(&mut self, problem: Problem) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(problem);
        }
    }
}

/// Something wrong in a store, and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub workspace: WorkspaceId,
    /// The log position concerned, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The document concerned, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<Uuid>,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A change's bytes are not an Automerge change (or fail its checksum).
    UnreadableChange,
    /// A change's stored hash is not the hash of its bytes.
    HashMismatch,
    /// A change's stored dependencies are not the change's.
    DepsMismatch,
    /// Positions missing from the log.
    Gap,
    /// The workspace's head disagrees with its log.
    Head,
    /// Changes filed under documents that are not the workspace's.
    Misfiled,
    /// A document's positions disagree with the log.
    DocumentPositions,
    /// A snapshot does not load.
    UnreadableSnapshot,
    /// A snapshot does not hold exactly the changes it lists, or lacks one it should hold.
    SnapshotContents,
}

impl Relay {
    /// Checks every workspace of the store (see the module's documentation). Problems are
    /// reported, not returned as errors: an error is the store failing to answer.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        for workspace in self.store.workspaces()? {
            self.verify_workspace(workspace.id, &mut report)?;
            report.workspaces += 1;
        }
        Ok(report)
    }

    fn verify_workspace(
        &self,
        workspace: WorkspaceId,
        report: &mut VerifyReport,
    ) -> Result<(), StoreError> {
        let Some(extent) = self.store.log_extent(workspace)? else {
            // Removed since it was listed: nothing to check.
            return Ok(());
        };
        let head = extent.head;
        let problem = |kind, seq, doc: Option<DocId>, detail: String| Problem {
            kind,
            workspace,
            seq,
            doc: doc.map(Uuid::from_bytes),
            detail,
        };
        if extent.last.is_some_and(|last| last > head) || (extent.changes > 0) != (head > 0) {
            report.found(problem(
                ProblemKind::Head,
                None,
                None,
                format!(
                    "the workspace's head is {head} but its log holds {} changes at positions {}",
                    extent.changes,
                    match (extent.first, extent.last) {
                        (Some(first), Some(last)) => format!("{first} to {last}"),
                        _ => "none".into(),
                    }
                ),
            ));
        }

        // The log, in pages: positions, hashes and dependencies.
        let mut expected = 1;
        let mut in_log = 0u64;
        loop {
            let mut read = 0;
            let mut beyond = false;
            self.store
                .changes(workspace, expected - 1, LOG_PAGE, &mut |row| {
                    if row.seq > head {
                        beyond = true;
                        return false;
                    }
                    read += 1;
                    if row.seq != expected {
                        report.found(problem(
                            ProblemKind::Gap,
                            Some(expected),
                            None,
                            missing(expected, row.seq - 1),
                        ));
                    }
                    expected = row.seq + 1;
                    in_log += 1;
                    if let Some((kind, detail)) = check_change(&row) {
                        report.found(problem(kind, Some(row.seq), Some(row.doc_id), detail));
                    }
                    true
                })?;
            if read < LOG_PAGE || beyond {
                break;
            }
        }
        if expected <= head {
            report.found(problem(
                ProblemKind::Gap,
                Some(expected),
                None,
                format!("{} (the head is {head})", missing(expected, head)),
            ));
        }
        report.changes += in_log;

        // The directory, a page of rows at a time and a document at a time.
        let mut after = None;
        let mut filed = 0u64;
        loop {
            let mut page: Vec<DocumentRow> = Vec::new();
            self.store
                .document_rows(workspace, after, DOCUMENT_PAGE, &mut |row| {
                    page.push(row);
                    true
                })?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.doc_id);
            let full = page.len() == DOCUMENT_PAGE;
            for doc in page {
                // Created after the check started: the next run checks it.
                if doc.first_seq > head {
                    continue;
                }
                filed += self.verify_document(workspace, head, &doc, report)?;
                report.documents += 1;
            }
            if !full {
                break;
            }
        }
        if filed != in_log {
            report.found(problem(
                ProblemKind::Misfiled,
                None,
                None,
                format!(
                    "{in_log} changes are in the log up to position {head}, but the \
                     workspace's documents hold {filed} of them"
                ),
            ));
        }
        Ok(())
    }

    /// Checks one document against the log; returns how many of its changes are at or
    /// before `head`.
    fn verify_document(
        &self,
        workspace: WorkspaceId,
        head: u64,
        doc: &DocumentRow,
        report: &mut VerifyReport,
    ) -> Result<u64, StoreError> {
        let problem = |kind, seq, detail: String| Problem {
            kind,
            workspace,
            seq,
            doc: Some(Uuid::from_bytes(doc.doc_id)),
            detail,
        };
        // The snapshot first: every change it lists was stored before it, so the log read
        // after it holds them all.
        let snapshot = self.store.snapshot(doc.doc_id)?;
        let mut log: HashMap<Hash, u64> = HashMap::new();
        let (mut count, mut first, mut last) = (0u64, None, None);
        let mut has_last = false;
        self.store
            .document_log(workspace, doc.doc_id, &mut |seq, hash| {
                has_last |= seq == doc.last_seq;
                if seq <= head {
                    count += 1;
                    first = first.or(Some(seq));
                    last = Some(seq);
                }
                if snapshot.is_some() {
                    log.insert(hash, seq);
                }
                true
            })?;
        if first != Some(doc.first_seq) {
            report.found(problem(
                ProblemKind::DocumentPositions,
                Some(doc.first_seq),
                match first {
                    Some(first) => format!(
                        "first_seq is {} but its first change is at {first}",
                        doc.first_seq
                    ),
                    None => format!(
                        "first_seq is {} but the log holds none of its changes",
                        doc.first_seq
                    ),
                },
            ));
        }
        // A document pushed to since the check started has a later last_seq; its change
        // there must still be in the log.
        let last_agrees = if doc.last_seq <= head {
            last == Some(doc.last_seq)
        } else {
            has_last
        };
        if !last_agrees {
            report.found(problem(
                ProblemKind::DocumentPositions,
                Some(doc.last_seq),
                format!(
                    "last_seq is {} but its last change is at {}",
                    doc.last_seq,
                    last.map_or_else(|| "no position".into(), |l| l.to_string())
                ),
            ));
        }
        if doc.snap_seq > doc.last_seq {
            report.found(problem(
                ProblemKind::DocumentPositions,
                Some(doc.snap_seq),
                format!(
                    "snap_seq {} is after its last change at {}",
                    doc.snap_seq, doc.last_seq
                ),
            ));
        }
        if let Some(snapshot) = snapshot {
            report.snapshots += 1;
            for (kind, detail) in check_snapshot(&snapshot, &log) {
                report.found(problem(kind, Some(snapshot.seq), detail));
            }
        }
        Ok(count)
    }
}

/// What is wrong with a change row, if anything.
fn check_change(row: &ChangeRow) -> Option<(ProblemKind, String)> {
    let change = match Change::try_from(row.bytes.as_slice()) {
        Ok(change) => change,
        Err(e) => {
            return Some((
                ProblemKind::UnreadableChange,
                format!("its bytes are not an intact Automerge change: {e}"),
            ));
        }
    };
    if change.hash().0 != row.hash {
        return Some((
            ProblemKind::HashMismatch,
            format!(
                "stored hash {} but its bytes hash to {}",
                hex(&row.hash),
                hex(&change.hash().0)
            ),
        ));
    }
    let deps: Vec<u8> = change.deps().iter().flat_map(|h| h.0).collect();
    if deps != row.deps {
        return Some((
            ProblemKind::DepsMismatch,
            format!(
                "stored dependencies ({} bytes) are not the change's ({} of them)",
                row.deps.len(),
                change.deps().len()
            ),
        ));
    }
    None
}

/// The problems of a snapshot, given the document's changes in the log (hash → position).
fn check_snapshot(
    snapshot: &StoredSnapshot,
    log: &HashMap<Hash, u64>,
) -> Vec<(ProblemKind, String)> {
    use ProblemKind::{SnapshotContents, UnreadableSnapshot};
    if !snapshot.hashes.len().is_multiple_of(32) {
        return vec![(
            UnreadableSnapshot,
            format!(
                "its list of hashes is {} bytes, not a multiple of 32",
                snapshot.hashes.len()
            ),
        )];
    }
    let listed: Vec<Hash> = snapshot
        .hashes
        .chunks_exact(32)
        .filter_map(|h| Hash::try_from(h).ok())
        .collect();
    let listed_set: HashSet<Hash> = listed.iter().copied().collect();
    let loaded = std::panic::catch_unwind(AssertUnwindSafe(|| Automerge::load(&snapshot.bytes)));
    let doc = match loaded {
        Ok(Ok(doc)) => doc,
        Ok(Err(e)) => return vec![(UnreadableSnapshot, format!("it does not load: {e}"))],
        Err(_) => {
            return vec![(UnreadableSnapshot, "Automerge panicked loading it".into())];
        }
    };
    let held: HashSet<Hash> = doc.get_changes_meta(&[]).iter().map(|m| m.hash.0).collect();
    let mut problems = Vec::new();
    if listed_set.len() != listed.len() {
        problems.push((SnapshotContents, "it lists a change more than once".into()));
    }
    let unheld = listed_set.difference(&held).count();
    if unheld > 0 {
        let first = listed_set
            .difference(&held)
            .next()
            .map(hex)
            .unwrap_or_default();
        problems.push((
            SnapshotContents,
            format!("it lists {unheld} changes it does not hold (the first {first})"),
        ));
    }
    let unlisted = held.difference(&listed_set).count();
    if unlisted > 0 {
        problems.push((
            SnapshotContents,
            format!("it holds {unlisted} changes it does not list"),
        ));
    }
    let foreign = listed_set.iter().filter(|h| !log.contains_key(*h)).count();
    if foreign > 0 {
        problems.push((
            SnapshotContents,
            format!("it lists {foreign} changes that are not this document's in the log"),
        ));
    }
    let missing = log
        .iter()
        .filter(|(h, at)| **at <= snapshot.seq && !listed_set.contains(*h))
        .count();
    if missing > 0 {
        problems.push((
            SnapshotContents,
            format!(
                "it lacks {missing} of the document's changes at or before its position {}",
                snapshot.seq
            ),
        ));
    }
    problems
}

fn missing(from: u64, to: u64) -> String {
    if from == to {
        format!("position {from} is missing")
    } else {
        format!("positions {from} to {to} are missing")
    }
}
