//! Large catch-ups without the read indexes.
//!
//! Most of the projections' secondary indexes serve reads only: list filters and sort orders,
//! "who refers to this record", the history reports. Kept up to date row by row they are
//! random B-tree inserts, and in a fresh device's first sync they took about a third of the
//! writer's time. For a pull that brings many changes, the device drops them
//! ([`Store::suspend_read_indexes`]) and builds them again at the end
//! ([`Store::restore_read_indexes`]): `CREATE INDEX` sorts the rows once and writes each page
//! once.
//!
//! Nothing depends on them for correctness: reads made in between are only slower. The
//! indexes that writes look rows up by (the kind tables' `id`, every primary key, tags by
//! record) are never dropped. A `meta` row marks the replica while they are suspended, in the
//! same transaction as the drop, and opening a replica so marked builds them again: a process
//! killed in between leaves nothing missing for long. (Another process opening the replica
//! during the pull builds them too: the pull is then slower, never wrong.)

use rusqlite::OptionalExtension;

use crate::error::Result;
use crate::replica::{self, Store};
use crate::schema;

/// The `meta` key present while the read indexes are suspended.
const SUSPENDED: &str = "read_indexes_suspended";

/// Indexes a write looks rows up by; never dropped.
const KEPT: &[&str] = &["record_tags_doc"];

/// The read indexes of the projection schema: (name, `CREATE INDEX` statement).
fn read_indexes() -> Vec<(&'static str, &'static str)> {
    schema::PROJECTIONS
        .lines()
        .map(str::trim)
        .filter_map(|line| {
            let rest = line.strip_prefix("CREATE INDEX ")?;
            let name = rest.split_whitespace().next()?;
            (!KEPT.contains(&name)).then_some((name, line))
        })
        .collect()
}

impl Store {
    /// Drops the projections' read indexes before a large pull (see the module docs). Does
    /// nothing when they are already suspended.
    pub fn suspend_read_indexes(&mut self) -> Result<()> {
        if self.read_indexes_suspended()? {
            return Ok(());
        }
        let tx = self.begin()?;
        if suspended(&tx)? {
            return Ok(());
        }
        for (name, _) in read_indexes() {
            tx.execute_batch(&format!("DROP INDEX IF EXISTS {name};"))?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, '1')",
            [SUSPENDED],
        )?;
        replica::commit(tx)
    }

    /// Builds the read indexes again after [`Store::suspend_read_indexes`], and refreshes the
    /// query planner's statistics. Does nothing when they are not suspended.
    pub fn restore_read_indexes(&mut self) -> Result<()> {
        // Checked before taking the write lock: this runs at every open.
        if !self.read_indexes_suspended()? {
            return Ok(());
        }
        // In the page cache of a remote batch: each index reads its whole table, and a large
        // table then stays cached for its next index.
        self.in_apply_cache(|store| {
            let tx = store.begin()?;
            if !suspended(&tx)? {
                return Ok(());
            }
            for (_, create) in read_indexes() {
                tx.execute_batch(&create.replacen(
                    "CREATE INDEX ",
                    "CREATE INDEX IF NOT EXISTS ",
                    1,
                ))?;
            }
            tx.execute("DELETE FROM meta WHERE key = ?1", [SUSPENDED])?;
            replica::commit(tx)
        })?;
        // The dropped indexes took their statistics with them.
        self.conn.execute_batch("PRAGMA optimize = 0x10002;")?;
        Ok(())
    }

    /// Whether the read indexes are suspended.
    pub fn read_indexes_suspended(&self) -> Result<bool> {
        suspended(&self.conn)
    }
}

fn suspended(conn: &rusqlite::Connection) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM meta WHERE key = ?1", [SUSPENDED], |_| Ok(()))
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_model::{Edit, Kind};

    fn indexes(store: &Store) -> Vec<String> {
        let mut stmt = store
            .conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL
                 ORDER BY name",
            )
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    #[test]
    fn read_indexes_are_dropped_and_built_again_even_after_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
        let all = indexes(&store);
        let read: Vec<&str> = read_indexes().into_iter().map(|(n, _)| n).collect();
        assert!(read.contains(&"rec_account_title"), "{read:?}");
        assert!(read.contains(&"record_refs_target"), "{read:?}");
        assert!(!read.contains(&"record_tags_doc"));
        assert!(read.iter().all(|n| all.iter().any(|a| a == n)));

        store.suspend_read_indexes().expect("suspend");
        store.suspend_read_indexes().expect("suspend twice");
        assert!(store.read_indexes_suspended().expect("flag"));
        let left = indexes(&store);
        assert_eq!(left.len(), all.len() - read.len(), "{left:?}");
        assert!(left.iter().any(|n| n == "record_tags_doc"));

        // Writes and reads work meanwhile.
        let mut edit = Edit::new(Kind::Account);
        edit.set("name", "Northwind").expect("valid");
        edit.tag("vip").expect("valid");
        let created = store.create(&edit).expect("create");
        let found = store
            .list(&crate::ListQuery::new(Kind::Account))
            .expect("list");
        assert!(found.iter().any(|r| r.id == created.id));

        // A process that dies now leaves them suspended; opening the replica builds them.
        drop(store);
        let mut store = Store::open(dir.path()).expect("open");
        assert!(!store.read_indexes_suspended().expect("flag"));
        assert_eq!(indexes(&store), all);

        store.suspend_read_indexes().expect("suspend");
        store.restore_read_indexes().expect("restore");
        store.restore_read_indexes().expect("restore twice");
        assert_eq!(indexes(&store), all);
    }
}
