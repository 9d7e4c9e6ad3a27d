//! What the relay accepts in a push: the rule that keeps a change in the document it belongs
//! to, decided without loading any document.
//!
//! An Automerge change does not name its document, so a change of record X could be pushed
//! under an envelope naming record Y. Stored, it would reach every device as a change of Y
//! and fail there ("a change claims to belong to record X"). The rule, applied to every new
//! change of a batch in order (a change already in the log is a duplicate and only
//! acknowledged):
//!
//! 1. **Intact.** The bytes parse as one Automerge change and its checksum matches its
//!    contents ([`crm_model::change::verify`]); the envelope names a kind.
//! 2. **A creation creates the envelope's record.** A change with no dependencies is the
//!    creation of a record document: it must put the root `id` to the envelope's record id
//!    and the root `kind` to the envelope's kind, each once, and that record must not exist
//!    yet (a document has exactly one creation).
//! 3. **An edit extends the envelope's record.** A change with dependencies must not touch
//!    the root `id` or `kind` (only the creation sets them), and every dependency must be a
//!    change of that same record, already in the log or earlier in the batch.
//!
//! A change that breaks 2 or 3 by naming another record is refused with `415`
//! ([`PushError::WrongDocument`]). One whose record or dependencies the relay simply does
//! not have yet is refused with `424` ([`PushError::MissingDependency`]): an honest device
//! gets that only when it holds changes it never pushed (taken from another replica by an
//! older build), and answers by queueing every change it has and pushing again.
//!
//! So the log is causally closed per document: every stored change's dependencies are
//! stored before it, under the same record, and every record starts with its own creation.
//! Checking costs the parse the relay did anyway, a decoding of the change's operations
//! (about as much again: ~10 µs for a record's creation) and one index lookup per
//! dependency.
//!
//! [`parse`] does step 1 and reads what steps 2 and 3 need, outside any transaction;
//! [`Batch::check`] does steps 2 and 3 against a [`Known`] view of the log inside the
//! storing transaction, so the storage backend stays plain lookups.

use std::collections::HashMap;

use crm_sync::{DocId, Envelope, Hash};
use uuid::Uuid;

use crate::store::PushError;

/// A pushed change that passed step 1, with what the rest of the rule needs.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) envelope: &'a Envelope,
    pub(crate) hash: Hash,
    pub(crate) deps: Vec<Hash>,
    /// For a dependency-free change: the record id and kind it creates, if it is a
    /// record's creation at all.
    creation: Option<Option<crm_model::change::Creation>>,
    /// For a change with dependencies: whether it puts or deletes the root `id` or `kind`.
    touches_identity: bool,
    /// The author its commit message names, if it names one.
    pub(crate) author: Option<crm_model::Author>,
    /// Its decoded operations: write authorization reads what the change writes from them.
    pub(crate) ops: crm_model::automerge::ExpandedChange,
}

impl Parsed<'_> {
    /// The dependencies as stored in the log's `deps` column: 32 bytes each.
    pub(crate) fn deps_bytes(&self) -> Vec<u8> {
        self.deps.iter().flatten().copied().collect()
    }
}

/// Step 1 for every change of a batch, before the store is touched.
pub(crate) fn parse(changes: &[Envelope]) -> Result<Vec<Parsed<'_>>, PushError> {
    changes
        .iter()
        .enumerate()
        .map(|(index, envelope)| {
            let invalid = |reason: String| PushError::InvalidChange { index, reason };
            if envelope.kind.is_empty() {
                return Err(invalid("the envelope names no kind".into()));
            }
            let change =
                crm_model::change::verify(&envelope.bytes).map_err(|e| invalid(e.to_string()))?;
            let deps: Vec<Hash> = change.deps().iter().map(|h| h.0).collect();
            let ops = crm_model::shape::decode(&change)
                .ok_or_else(|| invalid("its operations cannot be decoded".into()))?;
            let keys = crm_model::change::root_keys_of(&ops);
            let creation = deps
                .is_empty()
                .then(|| crm_model::change::creation_of(&keys));
            Ok(Parsed {
                envelope,
                hash: change.hash().0,
                deps,
                creation,
                touches_identity: !keys.id.is_empty() || !keys.kind.is_empty(),
                author: crm_model::Author::from_message(change.message()),
                ops,
            })
        })
        .collect()
}

/// What the storing transaction knows of the log.
pub(crate) trait Known {
    /// The record a change of the workspace's log belongs to.
    fn document_of_change(&mut self, hash: &Hash) -> Result<Option<DocId>, PushError>;
}

/// Steps 2 and 3 for the new changes of one batch, in order. `exists` says whether the log
/// already holds the record; the caller records each accepted change with [`Batch::accept`].
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Changes accepted earlier in this batch, and their records.
    accepted: HashMap<Hash, DocId>,
}

impl Batch {
    pub(crate) fn check(
        &self,
        index: usize,
        change: &Parsed<'_>,
        exists: bool,
        known: &mut dyn Known,
    ) -> Result<(), PushError> {
        let doc = change.envelope.doc_id;
        let record = Uuid::from_bytes(doc);
        let refuse = |reason: String| PushError::WrongDocument {
            index,
            doc: record,
            reason,
        };
        let missing = |reason: String| PushError::MissingDependency {
            index,
            doc: record,
            reason,
        };
        match &change.creation {
            Some(None) => Err(refuse(
                "it has no dependencies, so it must create the record, but it does not put \
                 the record's id and kind"
                    .into(),
            )),
            Some(Some(created)) => {
                if created.id != record.to_string() {
                    return Err(refuse(format!("it creates record {}", created.id)));
                }
                if created.kind != change.envelope.kind {
                    return Err(refuse(format!(
                        "it creates a {}, not a {}",
                        created.kind, change.envelope.kind
                    )));
                }
                if exists {
                    return Err(refuse("the record has been created already".into()));
                }
                Ok(())
            }
            None => {
                if change.touches_identity {
                    return Err(refuse(
                        "it changes the record's id or kind, which only its creation sets".into(),
                    ));
                }
                if !exists {
                    return Err(missing(
                        "the relay has no creation of this record; push the record's earlier \
                         changes first"
                            .into(),
                    ));
                }
                for dep in &change.deps {
                    let of = match self.accepted.get(dep) {
                        Some(d) => Some(*d),
                        None => known.document_of_change(dep)?,
                    };
                    match of {
                        Some(d) if d == doc => {}
                        Some(other) => {
                            return Err(refuse(format!(
                                "it depends on a change of record {}",
                                Uuid::from_bytes(other)
                            )));
                        }
                        None => {
                            return Err(missing(format!(
                                "it depends on change {} that the relay does not have; push \
                                 the record's earlier changes first",
                                data_encoding::HEXLOWER.encode(dep)
                            )));
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// A change passed [`Batch::check`] and is stored: later changes may depend on it.
    pub(crate) fn accept(&mut self, change: &Parsed<'_>) {
        self.accepted.insert(change.hash, change.envelope.doc_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable as _;
    use automerge::{AutoCommit, ROOT};

    /// A log held in a map, for the rule's unit tests.
    #[derive(Default)]
    struct Log(HashMap<Hash, DocId>);

    impl Known for Log {
        fn document_of_change(&mut self, hash: &Hash) -> Result<Option<DocId>, PushError> {
            Ok(self.0.get(hash).copied())
        }
    }

    fn envelope(doc: DocId, kind: &str, bytes: Vec<u8>) -> Envelope {
        Envelope {
            doc_id: doc,
            kind: kind.into(),
            scope: Default::default(),
            bytes,
        }
    }

    /// A record document: its creation, then an edit.
    fn record(id: DocId, kind: &str) -> (Vec<u8>, Vec<u8>) {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "id", Uuid::from_bytes(id).to_string())
            .expect("put");
        doc.put(ROOT, "kind", kind).expect("put");
        doc.commit();
        let created = doc
            .get_last_local_change()
            .expect("a change")
            .raw_bytes()
            .to_vec();
        doc.put(ROOT, "name", "ACME").expect("put");
        doc.commit();
        let edited = doc
            .get_last_local_change()
            .expect("a change")
            .raw_bytes()
            .to_vec();
        (created, edited)
    }

    fn run(log: &mut Log, exists: &[DocId], batch: &[Envelope]) -> Result<(), PushError> {
        let parsed = parse(batch)?;
        let mut checked = Batch::default();
        let mut docs: Vec<DocId> = exists.to_vec();
        for (index, change) in parsed.iter().enumerate() {
            let doc = change.envelope.doc_id;
            checked.check(index, change, docs.contains(&doc), log)?;
            checked.accept(change);
            docs.push(doc);
        }
        for change in &parsed {
            log.0.insert(change.hash, change.envelope.doc_id);
        }
        Ok(())
    }

    fn wrong_document(result: Result<(), PushError>) -> String {
        match result {
            Err(PushError::WrongDocument { reason, .. }) => reason,
            other => panic!("expected WrongDocument, got {other:?}"),
        }
    }

    fn missing(result: Result<(), PushError>) -> String {
        match result {
            Err(PushError::MissingDependency { reason, .. }) => reason,
            other => panic!("expected MissingDependency, got {other:?}"),
        }
    }

    #[test]
    fn a_record_created_and_edited_in_one_batch_or_two_is_accepted() {
        let (x, y) = ([1; 16], [2; 16]);
        let (cx, ex) = record(x, "account");
        let (cy, ey) = record(y, "contact");
        let mut log = Log::default();
        run(
            &mut log,
            &[],
            &[envelope(x, "account", cx), envelope(x, "account", ex)],
        )
        .expect("one batch");
        run(&mut log, &[x], &[envelope(y, "contact", cy)]).expect("a creation");
        run(&mut log, &[x, y], &[envelope(y, "contact", ey)]).expect("then its edit");
    }

    #[test]
    fn a_change_under_another_records_envelope_is_refused() {
        let (x, y) = ([1; 16], [2; 16]);
        let (cx, ex) = record(x, "account");
        let (cy, _) = record(y, "account");
        let mut log = Log::default();
        // X's creation named Y.
        let reason = wrong_document(run(&mut log, &[], &[envelope(y, "account", cx.clone())]));
        assert!(reason.contains("creates record"), "{reason}");
        run(&mut log, &[], &[envelope(x, "account", cx)]).expect("X");
        run(&mut log, &[x], &[envelope(y, "account", cy)]).expect("Y");
        // X's edit named Y, which exists: its dependency is X's.
        let reason = wrong_document(run(&mut log, &[x, y], &[envelope(y, "account", ex)]));
        assert!(reason.contains("depends on a change of record"), "{reason}");
    }

    #[test]
    fn creations_must_be_the_records_own_and_only_one() {
        let x = [1; 16];
        let (cx, ex) = record(x, "account");
        let mut log = Log::default();
        let reason = wrong_document(run(&mut log, &[], &[envelope(x, "contact", cx.clone())]));
        assert!(
            reason.contains("creates a account, not a contact"),
            "{reason}"
        );
        // An edit of a record the relay never saw created.
        let reason = missing(run(&mut log, &[], &[envelope(x, "account", ex)]));
        assert!(reason.contains("no creation"), "{reason}");
        run(&mut log, &[], &[envelope(x, "account", cx)]).expect("created");
        // A second, different creation of the same record.
        let (again, _) = record(x, "account");
        let reason = wrong_document(run(&mut log, &[x], &[envelope(x, "account", again)]));
        assert!(reason.contains("created already"), "{reason}");
        // A dependency-free change that is no record's creation.
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "name", "no id").expect("put");
        doc.commit();
        let bare = doc
            .get_last_local_change()
            .expect("a change")
            .raw_bytes()
            .to_vec();
        let reason = wrong_document(run(&mut log, &[], &[envelope([3; 16], "account", bare)]));
        assert!(reason.contains("does not put"), "{reason}");
    }

    #[test]
    fn an_edit_that_puts_another_id_is_refused() {
        let x = [1; 16];
        let (cx, ex) = record(x, "account");
        let mut doc = AutoCommit::new();
        doc.apply_changes([
            automerge::Change::try_from(cx.as_slice()).expect("change"),
            automerge::Change::try_from(ex.as_slice()).expect("change"),
        ])
        .expect("apply");
        doc.put(ROOT, "id", Uuid::from_bytes([2; 16]).to_string())
            .expect("put");
        doc.commit();
        let forged = doc
            .get_last_local_change()
            .expect("a change")
            .raw_bytes()
            .to_vec();
        let mut log = Log::default();
        run(
            &mut log,
            &[],
            &[envelope(x, "account", cx), envelope(x, "account", ex)],
        )
        .expect("the record");
        let reason = wrong_document(run(&mut log, &[x], &[envelope(x, "account", forged)]));
        assert!(reason.contains("only its creation sets"), "{reason}");
    }

    #[test]
    fn an_edit_whose_dependency_the_relay_lacks_is_refused() {
        let x = [1; 16];
        let (cx, ex) = record(x, "account");
        let mut doc = AutoCommit::load(&{
            let mut d = automerge::Automerge::new();
            d.apply_changes([
                automerge::Change::try_from(cx.as_slice()).expect("change"),
                automerge::Change::try_from(ex.as_slice()).expect("change"),
            ])
            .expect("apply");
            d.save()
        })
        .expect("load");
        doc.put(ROOT, "industry", "retail").expect("put");
        doc.commit();
        let later = doc
            .get_last_local_change()
            .expect("a change")
            .raw_bytes()
            .to_vec();
        let mut log = Log::default();
        run(&mut log, &[], &[envelope(x, "account", cx)]).expect("created");
        // `later` depends on `ex`, which was never pushed.
        let reason = missing(run(&mut log, &[x], &[envelope(x, "account", later)]));
        assert!(reason.contains("does not have"), "{reason}");
    }

    #[test]
    fn damaged_bytes_are_refused_before_anything_else() {
        let (cx, _) = record([1; 16], "account");
        let mut damaged = cx;
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        match parse(&[envelope([1; 16], "account", damaged)]) {
            Err(PushError::InvalidChange { index: 0, reason }) => {
                assert!(
                    reason.contains("damaged") || reason.contains("not an Automerge change"),
                    "{reason}"
                );
            }
            other => panic!("expected InvalidChange, got {other:?}"),
        }
    }
}
