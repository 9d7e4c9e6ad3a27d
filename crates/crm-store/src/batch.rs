//! Batch writes: many creates and edits in one SQLite transaction.
//!
//! `Store::create` commits once per record, which costs about a millisecond; an import of
//! 100k rows needs far less per row. A batch still writes every record as its own Automerge
//! change with the author in its commit message, its own outbox entry and its projection rows
//! (the same code as `Store::create` and `Store::edit`), but commits once.
//!
//! Each operation runs inside an SQLite savepoint: an operation whose input is invalid is
//! rolled back alone and reported in its place, and the others are kept
//! ([`Store::write_batch`]). A failure of the replica itself (the disk, SQLite) rolls the
//! whole batch back, so no operation is ever half-written. [`Store::write_atomic`] is the
//! all-or-nothing variant, used where the operations only make sense together (merging
//! records).
//!
//! Written documents are not kept: at most the store's bounded cache holds a few of them.

use std::collections::HashMap;

use crm_model::{Edit, RecordId};
use rusqlite::{Transaction, TransactionBehavior};

use crate::error::{Result, StoreError};
use crate::parallel::InOrder;
use crate::projection::Fts;
use crate::replica::{
    NewRecord, Store, Writing, build_create, edit_in, prepare_create, write_create,
};

/// One write of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchOp {
    /// Create a new record from the edit (as [`Store::create`]).
    Create(Edit),
    /// Apply the edit to an existing record (as [`Store::edit`]).
    Edit { id: RecordId, edit: Edit },
}

/// What one successful operation of a batch wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub id: RecordId,
    pub title: String,
    /// A new record was created.
    pub created: bool,
    /// Whether a change was written (an edit that changes nothing writes none).
    pub changed: bool,
}

impl Store {
    /// Writes every operation in one transaction, each all-or-nothing on its own: the result
    /// has one entry per operation, in order, with the error of each operation whose input was
    /// invalid (a bad value, a missing reference, an unknown record). Such an operation
    /// writes nothing and never stops the others.
    ///
    /// Returns `Err` only when the replica itself failed; then nothing of the batch is stored.
    pub fn write_batch(&mut self, ops: &[BatchOp]) -> Result<Vec<Result<Written, StoreError>>> {
        self.run_batch(ops, false)
    }

    /// Writes every operation in one transaction, all or none: the first failing operation
    /// rolls the whole batch back and its error is returned.
    pub fn write_atomic(&mut self, ops: &[BatchOp]) -> Result<Vec<Written>> {
        self.run_batch(ops, true)?.into_iter().collect()
    }

    fn run_batch(
        &mut self,
        ops: &[BatchOp],
        atomic: bool,
    ) -> Result<Vec<Result<Written, StoreError>>> {
        self.writable()?;
        let now = self.now();
        let mut out = Vec::with_capacity(ops.len());
        let mut keep = Vec::new();
        {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // First what needs the replica of every create (owner, number, reference checks),
            // in order. Bad input fails here or while building, before anything is written.
            let mut jobs: Vec<(usize, RecordId, Edit)> = Vec::new();
            let mut refused: HashMap<usize, StoreError> = HashMap::new();
            for (i, op) in ops.iter().enumerate() {
                if let BatchOp::Create(edit) = op {
                    match prepare_create(&tx, edit, self.identity.user_id, &self.author) {
                        Ok((id, edit)) => jobs.push((i, id, edit)),
                        Err(e) => {
                            refused.insert(i, e);
                        }
                    }
                }
            }
            let (author, actor) = (&self.author, &self.actor);
            let writing = Writing {
                author,
                actor,
                now,
                fts: Fts::AtCommit,
            };
            // Batches keep no new document: only the record goes to the writer.
            let build = |(_, id, edit): &(usize, RecordId, Edit)| {
                build_create(*id, edit, author, actor, now).map(NewRecord::without_document)
            };
            std::thread::scope(|scope| -> Result<()> {
                // Documents are built on worker threads while this one writes, in order, what
                // they have built.
                let mut built = InOrder::start(scope, &jobs, &build);
                for (i, op) in ops.iter().enumerate() {
                    let result = match op {
                        BatchOp::Create(_) => match refused.remove(&i) {
                            Some(e) => Err(e),
                            None => built
                                .next()
                                .ok_or(StoreError::Internal("a batch lost a record it built"))
                                .and_then(|r| r)
                                .and_then(|new| {
                                    write_create(&tx, &new, now, writing.fts).map(|()| Written {
                                        id: new.record.id,
                                        title: new.record.title(),
                                        created: true,
                                        changed: true,
                                    })
                                }),
                        },
                        BatchOp::Edit { id, edit } => {
                            // An edit may fail after writing part of its rows: it runs in a
                            // savepoint of its own.
                            tx.prepare_cached("SAVEPOINT batch_op")?.execute([])?;
                            let cached = self.cache.pop(id);
                            let result = edit_in(&tx, *id, edit, cached, &writing).map(
                                |(record, document, changed)| {
                                    keep.push((record.id, document));
                                    Written {
                                        id: record.id,
                                        title: record.title(),
                                        created: false,
                                        changed,
                                    }
                                },
                            );
                            match &result {
                                Ok(_) => {
                                    tx.prepare_cached("RELEASE batch_op")?.execute([])?;
                                }
                                Err(e) if e.is_invalid_input() && !atomic => rollback_op(&tx)?,
                                Err(_) => {}
                            }
                            result
                        }
                    };
                    match result {
                        Ok(written) => out.push(Ok(written)),
                        Err(e) if e.is_invalid_input() && !atomic => out.push(Err(e)),
                        // The transaction rolls back when dropped: nothing of the batch is
                        // stored.
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })?;
            crate::replica::commit(tx)?;
        }
        // Only edited documents go back to the (bounded) cache; they are the likely next
        // reads. New ones are left to be loaded on demand.
        for (id, document) in keep {
            self.cache.put(id, document);
        }
        Ok(out)
    }
}

fn rollback_op(tx: &Transaction<'_>) -> Result<()> {
    tx.prepare_cached("ROLLBACK TO batch_op")?.execute([])?;
    tx.prepare_cached("RELEASE batch_op")?.execute([])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crm_model::{Edit, Kind};

    use super::BatchOp;
    use crate::{ListQuery, Store};

    fn account(name: &str, email: &str) -> Edit {
        let mut e = Edit::new(Kind::Account);
        e.set("name", name).expect("valid");
        if !email.is_empty() {
            e.set("emails", email).expect("valid");
        }
        e
    }

    #[test]
    fn a_bad_op_is_rolled_back_alone_and_reported_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
        let existing = store.create(&account("Old", "")).expect("create");
        let outbox_before = store.outbox_len().expect("outbox");
        let mut bad_ref = Edit::new(Kind::Contact);
        bad_ref.set("last_name", "王").expect("valid");
        bad_ref
            .set("account", &crm_model::RecordId::new().to_string())
            .expect("valid");
        let mut rename = Edit::new(Kind::Account);
        rename.set("name", "Renamed 深圳").expect("valid");
        let ops = vec![
            BatchOp::Create(account("星光贸易", "a@star.cn")),
            BatchOp::Create(bad_ref),
            BatchOp::Edit {
                id: crm_model::RecordId::new(),
                edit: rename.clone(),
            },
            BatchOp::Edit {
                id: existing.id,
                edit: rename,
            },
            BatchOp::Create(account("Northwind", "")),
        ];
        let results = store.write_batch(&ops).expect("batch");
        assert_eq!(results.len(), 5);
        assert!(results[0].as_ref().is_ok_and(|w| w.created));
        assert!(results[1].is_err());
        assert!(results[2].is_err());
        assert!(results[3].as_ref().is_ok_and(|w| !w.created && w.changed));
        assert!(results[4].is_ok());
        // Three writes, three changes in the outbox; the failed ones left nothing.
        assert_eq!(store.outbox_len().expect("outbox"), outbox_before + 3);
        assert_eq!(store.count(Kind::Contact, true).expect("count"), 0);
        let names: Vec<String> = store
            .list(&ListQuery::new(Kind::Account))
            .expect("list")
            .into_iter()
            .map(|r| r.title)
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"Renamed 深圳".to_string()));
        // Every write is attributed and has its own history.
        let created = results[0].as_ref().expect("ok").id;
        let history = store.history(created).expect("history");
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].user.as_deref(), Some("alice"));
    }

    #[test]
    fn atomic_batches_store_nothing_when_one_op_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
        let mut rename = Edit::new(Kind::Account);
        rename.set("name", "x").expect("valid");
        let ops = vec![
            BatchOp::Create(account("A", "")),
            BatchOp::Edit {
                id: crm_model::RecordId::new(),
                edit: rename,
            },
        ];
        assert!(store.write_atomic(&ops).is_err());
        assert_eq!(store.count(Kind::Account, true).expect("count"), 0);
        let ok = store
            .write_atomic(&[BatchOp::Create(account("A", ""))])
            .expect("atomic");
        assert_eq!(ok.len(), 1);
        assert_eq!(store.count(Kind::Account, true).expect("count"), 1);
    }

    /// Enough creates that they are built on worker threads: results stay in batch order,
    /// bad rows are refused alone, numbers are handed out in order, and search finds them.
    #[test]
    fn a_large_batch_is_built_in_parallel_and_written_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
        let account = store.create(&account("深圳星光贸易", "")).expect("create");
        let mut ops = Vec::new();
        for i in 0..120 {
            let mut ticket = Edit::new(Kind::Ticket);
            ticket
                .set("subject", &format!("打印机故障 {i}"))
                .expect("valid");
            if i % 10 == 3 {
                // A reference to no record: refused while preparing.
                ticket
                    .set("account", &crm_model::RecordId::new().to_string())
                    .expect("valid");
            } else {
                ticket
                    .set("account", &account.id.to_string())
                    .expect("valid");
            }
            ops.push(BatchOp::Create(ticket));
        }
        let results = store.write_batch(&ops).expect("batch");
        assert_eq!(results.len(), 120);
        let mut numbers = Vec::new();
        for (i, result) in results.iter().enumerate() {
            if i % 10 == 3 {
                assert!(result.is_err(), "op {i} refers to no record");
                continue;
            }
            let written = result.as_ref().expect("written");
            assert!(
                written.title.ends_with(&format!(" 打印机故障 {i}")),
                "op {i} in order: {}",
                written.title
            );
            let record = store.get(written.id).expect("get");
            numbers.push(record.fields["number"].display());
        }
        let want: Vec<String> = (1..=108).map(|n| format!("T-laptop-{n}")).collect();
        assert_eq!(numbers, want, "numbers in batch order, none skipped");
        assert_eq!(store.count(Kind::Ticket, true).expect("count"), 108);
        let hits = store
            .search("打印机故障 7", None, false, 500)
            .expect("search");
        assert!(
            hits.iter().any(|h| h.title.ends_with(" 打印机故障 7")),
            "{hits:?}"
        );
    }
}
