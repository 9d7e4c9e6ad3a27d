//! What the sync driver needs from the replica: the outbox, acknowledgements, and pulled
//! batches applied together with the relay cursor.

use std::collections::{HashMap, HashSet, VecDeque};

use crm_model::RecordId;
use crm_model::automerge::{Change, ChangeHash};
use rusqlite::{OptionalExtension, params};

use crate::bootstrap::ChangeBytes;
use crate::error::{Result, StoreError};
use crate::remote::{ApplyReport, PulledChange, Source};
use crate::replica::Store;

/// Where this replica is in a relay's log (see the sync protocol's cursor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncCursor {
    pub relay_id: [u8; 16],
    pub seq: u64,
    pub hash: [u8; 32],
}

/// A local change waiting for a relay's acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxChange {
    /// Its position in this replica's change log.
    pub local_seq: i64,
    pub doc_id: crm_model::RecordId,
    /// The record kind, for the relay's routing envelope (empty if not known yet).
    pub kind: String,
    /// The record's owner and teams as they are now, for the relay's scope filtering.
    pub owner: Option<crm_model::RecordId>,
    /// The assignee of a ticket or an activity: "own" to them as the owner is.
    pub assignee: Option<crm_model::RecordId>,
    pub teams: Vec<crm_model::RecordId>,
    pub bytes: Vec<u8>,
}

/// What [`Store::outbox_batch`] read: the changes to push, and the damaged ones held back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxBatch {
    /// Changes to push, oldest first, each after the changes it builds on.
    pub changes: Vec<OutboxChange>,
    /// Local changes whose stored bytes no longer match their hash, with no good copy in a
    /// snapshot. Never pushed, and neither is anything that builds on them.
    pub damaged: Vec<DamagedChange>,
    /// Local changes made under another user's name than the relay's user (before the
    /// replica joined, as `crm init` named it): the relay refuses them, so they stay here,
    /// visible in the records' history, and so does anything that builds on them.
    pub foreign: Vec<ForeignChange>,
}

/// A queued change another user authored (see [`OutboxBatch::foreign`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignChange {
    pub local_seq: i64,
    pub doc_id: RecordId,
    /// The user its commit message names.
    pub author: String,
}

/// A queued change whose bytes are damaged (see [`OutboxBatch::damaged`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedChange {
    pub local_seq: i64,
    pub doc_id: RecordId,
    /// Its hash (hex), as stored.
    pub hash: String,
    pub reason: String,
}

impl OutboxBatch {
    /// The error a sync ends with while damaged changes wait in the outbox.
    pub fn damage(&self) -> Option<StoreError> {
        let first = self.damaged.first()?;
        let more = match self.damaged.len() {
            1 => String::new(),
            n => format!(", and {} other damaged changes", n - 1),
        };
        Some(StoreError::DamagedChanges {
            id: first.doc_id,
            hash: first.hash.clone(),
            more,
        })
    }
}

const CURSOR_KEY: &str = "cursor";

impl Store {
    /// The oldest `limit` changes of the outbox that can be pushed (see
    /// [`Store::outbox_batch`]).
    pub fn outbox(&self, limit: usize) -> Result<Vec<OutboxChange>> {
        Ok(self.outbox_batch(limit, usize::MAX)?.changes)
    }

    /// Up to `limit` changes of the outbox to push, oldest first, and no more once their bytes
    /// add up to `max_bytes` (always one at least, whatever its size): what one push can
    /// carry, without reading hundreds of large changes to send a few. Checked and in an
    /// order the relay accepts:
    ///
    /// - Each change's bytes are verified against its stored hash
    ///   ([`crm_model::change::verify_hash`]): a flipped bit on this disk must not become
    ///   every device's data. A damaged change whose document's snapshot holds it is taken
    ///   from there, and its row repaired; one with no good copy is reported in
    ///   [`OutboxBatch::damaged`] and never pushed.
    /// - A change goes after the changes it builds on (the relay refuses a change whose
    ///   dependencies it lacks). Log order is causal for local edits but not always for the
    ///   rest: changes taken from another replica ([`Store::merge_from`]) or queued again by
    ///   [`Store::reset_sync`] may have been stored before their dependencies. A change whose
    ///   dependencies wait later in the outbox is held until they are taken; one that builds
    ///   on a change this replica does not have (still pending), or on a damaged one, stays
    ///   queued and is not pushed. The changes of other records are not held up by it.
    pub fn outbox_batch(&self, limit: usize, max_bytes: usize) -> Result<OutboxBatch> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.seq, d.id, coalesce(d.kind, ''), c.bytes, d.docno, c.hash, c.local FROM outbox o
             JOIN changes c ON c.seq = o.seq JOIN documents d ON d.docno = c.docno
             ORDER BY o.seq",
        )?;
        let mut rows = stmt.query([])?;
        let local_user = self.local_user()?;
        let init_user = self.init_user()?;
        // Once the replica has the relay's identity, only its user's changes can be pushed.
        let me = self
            .identity
            .device_id
            .is_some()
            .then(|| (self.identity.user.clone(), self.identity.user_id));
        let mut foreign = Vec::new();
        let mut out = Taken::new(limit, max_bytes);
        let mut damaged = Vec::new();
        let mut repairs = Vec::new();
        // After `reset_sync`, changes a bootstrap stored in snapshots only are queued too.
        let mut from_snapshots = ChangeBytes::default();
        // Changes that are not pushed now, nor anything that builds on them.
        let mut blocked: HashSet<ChangeHash> = HashSet::new();
        while !out.full() {
            let Some(row) = rows.next()? else { break };
            let local_seq: i64 = row.get(0)?;
            let id: String = row.get(1)?;
            let kind: String = row.get(2)?;
            let stored: Vec<u8> = row.get(3)?;
            let docno: i64 = row.get(4)?;
            let hash: Vec<u8> = row.get(5)?;
            let made_here: bool = row.get(6)?;
            // The User record made for working before joining never leaves the replica.
            if local_user.as_deref() == Some(id.as_str())
                || init_user.as_deref() == Some(id.as_str())
            {
                continue;
            }
            let Ok(doc_id) = id.parse::<RecordId>() else {
                continue;
            };
            let Ok(hash) = ChangeHash::try_from(hash.as_slice()) else {
                damaged.push(DamagedChange {
                    local_seq,
                    doc_id,
                    hash: hash.iter().map(|b| format!("{b:02x}")).collect(),
                    reason: "its stored hash is not a change hash".into(),
                });
                continue;
            };
            let (bytes, change) =
                match checked(&self.conn, docno, &hash, stored, &mut from_snapshots)? {
                    Checked::Good(bytes, change) => (bytes, change),
                    Checked::Repaired(bytes, change) => {
                        repairs.push((local_seq, bytes.clone()));
                        (bytes, change)
                    }
                    Checked::Damaged(reason) => {
                        blocked.insert(hash);
                        damaged.push(DamagedChange {
                            local_seq,
                            doc_id,
                            hash: hash.to_string(),
                            reason,
                        });
                        continue;
                    }
                };
            // Only what was made here is checked: another user's change this replica holds
            // (taken from another replica, or queued again for a relay that lost its log) is
            // pushed as before; the relay acknowledges what it has without checking it again.
            if let Some((name, id)) = &me
                && made_here
                && let Some(author) = crm_model::Author::from_message(change.message())
            {
                let by_id = author
                    .user_id
                    .as_deref()
                    .zip(*id)
                    .map(|(a, id)| a == id.to_string());
                if !by_id.unwrap_or(author.user == *name) {
                    blocked.insert(hash);
                    foreign.push(ForeignChange {
                        local_seq,
                        doc_id,
                        author: author.user,
                    });
                    continue;
                }
            }
            let mut unmet = Vec::new();
            let mut stuck = false;
            for dep in change.deps() {
                if out.emitted.contains(dep) {
                    continue;
                }
                if blocked.contains(dep) {
                    stuck = true;
                    break;
                }
                match queued(&self.conn, dep)? {
                    // Stored and not queued: the relay has it.
                    Some(false) => {}
                    // Queued, not taken yet.
                    Some(true) => unmet.push(*dep),
                    // Not here: this change is pending until it arrives.
                    None => {
                        stuck = true;
                        break;
                    }
                }
            }
            if stuck {
                tracing::debug!(%doc_id, %hash, "an outbox change waits for a change it builds on");
                blocked.insert(hash);
                continue;
            }
            let (owner, assignee, teams) = match kind.parse::<crm_model::Kind>() {
                Ok(k) => self.scope_of(k, docno)?,
                Err(_) => (None, None, Vec::new()),
            };
            out.offer(
                hash,
                unmet,
                OutboxChange {
                    local_seq,
                    doc_id,
                    kind,
                    owner,
                    assignee,
                    teams,
                    bytes,
                },
            );
        }
        drop(rows);
        for (seq, bytes) in repairs {
            tracing::warn!(
                local_seq = seq,
                "a stored change was damaged; repaired from its document's snapshot"
            );
            self.conn
                .prepare_cached("UPDATE changes SET bytes = ?2 WHERE seq = ?1")?
                .execute(params![seq, bytes])?;
        }
        Ok(OutboxBatch {
            changes: out.changes,
            damaged,
            foreign,
        })
    }

    /// A record's owner and teams, from its projection.
    fn scope_of(
        &self,
        kind: crm_model::Kind,
        docno: i64,
    ) -> Result<(
        Option<crm_model::RecordId>,
        Option<crm_model::RecordId>,
        Vec<crm_model::RecordId>,
    )> {
        let assigned = matches!(kind, crm_model::Kind::Ticket | crm_model::Kind::Activity);
        let row: Option<(Option<String>, Option<String>, Option<String>)> = self
            .conn
            .prepare_cached(&format!(
                "SELECT f_owner, f_teams, {} FROM {} WHERE docno = ?1",
                if assigned { "f_assignee" } else { "NULL" },
                crate::schema::table(kind)
            ))?
            .query_row([docno], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((owner, teams, assignee)) = row else {
            return Ok((None, None, Vec::new()));
        };
        let owner = owner.and_then(|o| o.parse().ok());
        let assignee = assignee.and_then(|o| o.parse().ok());
        let teams = teams
            .and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        Ok((owner, assignee, teams))
    }

    /// Drops changes a relay has stored durably from the outbox.
    pub fn acknowledge(&mut self, local_seqs: &[i64]) -> Result<()> {
        let tx = self.begin()?;
        {
            let mut del = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
            for seq in local_seqs {
                del.execute([seq])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The cursor stored for the relay this replica syncs with.
    pub fn sync_cursor(&self) -> Result<Option<SyncCursor>> {
        read_cursor(&self.conn)
    }

    /// Applies a pulled batch and stores the new cursor in the same transaction, so a crash
    /// never skips a change nor leaves the cursor ahead of what is applied.
    ///
    /// An entry that cannot be applied is quarantined with its log position, and the cursor
    /// moves past it like past any other (see [`ApplyReport::quarantined`]).
    pub fn apply_pulled(
        &mut self,
        batch: &[PulledChange],
        cursor: SyncCursor,
    ) -> Result<ApplyReport> {
        let seqs: Vec<u64> = batch.iter().map(|p| p.seq).collect();
        let changes: Vec<(RecordId, &[u8])> = batch
            .iter()
            .map(|p| (p.change.doc_id, p.change.bytes.as_slice()))
            .collect();
        self.apply_remote_with(&changes, Source::Relay(&seqs), false, |tx| {
            write_cursor(tx, &cursor)?;
            // What the relay streams is in its log: a copy of it waiting in the outbox (a
            // change taken from another replica, its author's to push) is no longer pending,
            // and what builds on it here may go.
            let waiting: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM outbox)", [], |r| r.get(0))?;
            if waiting {
                let mut drop = tx.prepare_cached(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM changes WHERE hash = ?1)",
                )?;
                for (_, bytes) in &changes {
                    if let Ok(change) = crm_model::automerge::Change::from_bytes(bytes.to_vec()) {
                        drop.execute([change.hash().0.as_slice()])?;
                    }
                }
            }
            Ok(())
        })
    }

    /// The relay does not know this replica's cursor (a new relay, or one restored from a
    /// backup): forget the cursor and queue every change this replica has for pushing, since
    /// the relay may lack any of them. Pushing is idempotent, so nothing doubles.
    pub fn reset_sync(&mut self) -> Result<u64> {
        let tx = self.begin()?;
        tx.execute("DELETE FROM sync_state WHERE key = ?1", [CURSOR_KEY])?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO outbox (seq) SELECT seq FROM changes",
            [],
        )?;
        tx.commit()?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Forgets the cursor only, for a re-sync of what the user may see (their access changed):
    /// the relay still holds every change it acknowledged, so nothing is queued again.
    pub fn forget_cursor(&mut self) -> Result<()> {
        let tx = self.begin()?;
        tx.execute("DELETE FROM sync_state WHERE key = ?1", [CURSOR_KEY])?;
        tx.commit()?;
        Ok(())
    }

    /// The relay lacks changes some queued change builds on (it answered `424`): queue every
    /// change this replica has, keeping the cursor. A replica that took changes from another
    /// one before merges queued what they took gets its whole history to the relay this way,
    /// once; the relay acknowledges what it already has without storing it twice. Returns
    /// how many changes were queued anew.
    pub fn requeue_all(&mut self) -> Result<u64> {
        let tx = self.begin()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO outbox (seq) SELECT seq FROM changes",
            [],
        )?;
        tx.commit()?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// The changes [`Store::outbox_batch`] takes, in the order it takes them: each after the
/// changes it builds on.
struct Taken {
    limit: usize,
    max_bytes: usize,
    /// The change bytes taken so far.
    bytes: usize,
    changes: Vec<OutboxChange>,
    emitted: HashSet<ChangeHash>,
    /// Changes waiting for queued changes they build on, with how many they still wait for.
    held: Vec<(ChangeHash, usize, Option<OutboxChange>)>,
    /// The held changes waiting for each change.
    waiting: HashMap<ChangeHash, Vec<usize>>,
}

impl Taken {
    fn new(limit: usize, max_bytes: usize) -> Self {
        Taken {
            limit,
            max_bytes,
            bytes: 0,
            changes: Vec::new(),
            emitted: HashSet::new(),
            held: Vec::new(),
            waiting: HashMap::new(),
        }
    }

    fn full(&self) -> bool {
        self.changes.len() >= self.limit || self.bytes >= self.max_bytes
    }

    /// Takes `change` now if it waits for nothing in `unmet`, else once those are taken;
    /// taking it releases what waits for it.
    fn offer(&mut self, hash: ChangeHash, unmet: Vec<ChangeHash>, change: OutboxChange) {
        if !unmet.is_empty() {
            let at = self.held.len();
            self.held.push((hash, unmet.len(), Some(change)));
            for dep in unmet {
                self.waiting.entry(dep).or_default().push(at);
            }
            return;
        }
        let mut ready = VecDeque::from([(hash, change)]);
        while let Some((hash, change)) = ready.pop_front() {
            if self.full() {
                break;
            }
            self.bytes = self.bytes.saturating_add(change.bytes.len());
            self.changes.push(change);
            self.emitted.insert(hash);
            for at in self.waiting.remove(&hash).unwrap_or_default() {
                let Some((held_hash, left, held)) = self.held.get_mut(at) else {
                    continue;
                };
                *left = left.saturating_sub(1);
                if *left == 0
                    && let Some(held) = held.take()
                {
                    ready.push_back((*held_hash, held));
                }
            }
        }
    }
}

/// A queued change's bytes, checked against its hash.
enum Checked {
    Good(Vec<u8>, Change),
    /// The stored bytes were damaged; these are the good ones, from the snapshot.
    Repaired(Vec<u8>, Change),
    /// Damaged, with no good copy: why.
    Damaged(String),
}

/// Checks the bytes `stored` for change `hash` of document `docno`; empty bytes (a change held
/// in the snapshot only) and damaged ones are taken from the document's snapshot.
fn checked(
    conn: &rusqlite::Connection,
    docno: i64,
    hash: &ChangeHash,
    stored: Vec<u8>,
    snapshots: &mut ChangeBytes,
) -> Result<Checked> {
    let held_only = stored.is_empty();
    let fault = if held_only {
        None
    } else {
        match crm_model::change::verify_hash(&stored, hash) {
            Ok(change) => return Ok(Checked::Good(stored, change)),
            Err(e) => Some(e.to_string()),
        }
    };
    let from_snapshot = match snapshots.get(conn, docno, &hash.0, Vec::new()) {
        Ok(bytes) => bytes,
        Err(StoreError::UnreadableChange { reason, .. }) => {
            return Ok(Checked::Damaged(fault.unwrap_or(reason)));
        }
        Err(e) => return Err(e),
    };
    Ok(
        match (
            crm_model::change::verify_hash(&from_snapshot, hash),
            held_only,
        ) {
            (Ok(change), true) => Checked::Good(from_snapshot, change),
            (Ok(change), false) => Checked::Repaired(from_snapshot, change),
            (Err(e), _) => Checked::Damaged(fault.unwrap_or_else(|| e.to_string())),
        },
    )
}

/// Whether a change is queued (`Some(true)`), stored and not queued (`Some(false)`), or not
/// stored at all (`None`).
fn queued(conn: &rusqlite::Connection, hash: &ChangeHash) -> Result<Option<bool>> {
    Ok(conn
        .prepare_cached(
            "SELECT o.seq IS NOT NULL FROM changes c LEFT JOIN outbox o ON o.seq = c.seq
             WHERE c.hash = ?1",
        )?
        .query_row([&hash.0[..]], |r| r.get(0))
        .optional()?)
}

/// Stores the relay cursor (in the caller's transaction).
/// The cursor stored in the replica open on `conn` (also read from backup files, which are
/// not opened as a [`Store`]).
pub(crate) fn read_cursor(conn: &rusqlite::Connection) -> Result<Option<SyncCursor>> {
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM sync_state WHERE key = ?1",
            [CURSOR_KEY],
            |r| r.get(0),
        )
        .optional()?;
    Ok(value.and_then(|v| decode_cursor(&v)))
}

pub(crate) fn write_cursor(tx: &rusqlite::Transaction<'_>, cursor: &SyncCursor) -> Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO sync_state (key, value) VALUES (?1, ?2)")?
        .execute(params![CURSOR_KEY, encode_cursor(cursor)])?;
    Ok(())
}

fn encode_cursor(c: &SyncCursor) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!("{}:{}:{}", hex(&c.relay_id), c.seq, hex(&c.hash))
}

fn decode_cursor(s: &str) -> Option<SyncCursor> {
    let mut parts = s.split(':');
    let relay_id = unhex::<16>(parts.next()?)?;
    let seq = parts.next()?.parse().ok()?;
    let hash = unhex::<32>(parts.next()?)?;
    Some(SyncCursor {
        relay_id,
        seq,
        hash,
    })
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let c = SyncCursor {
            relay_id: [0xab; 16],
            seq: 123_456,
            hash: [7; 32],
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
        assert_eq!(decode_cursor("garbage"), None);
    }
}

/// The relay this replica syncs with, as `crm join` stored it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayLink {
    pub url: String,
    pub token: String,
}

impl Store {
    /// Remembers the relay and the device token. A different relay than before keeps the
    /// cursor: the relay's id in it tells the new relay it is not its own, and the first
    /// session then re-pushes everything.
    pub fn set_relay(&mut self, link: &RelayLink) -> Result<()> {
        let tx = self.begin()?;
        for (k, v) in [("relay_url", &link.url), ("relay_token", &link.token)] {
            tx.execute(
                "INSERT OR REPLACE INTO sync_state (key, value) VALUES (?1, ?2)",
                params![k, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn relay(&self) -> Result<Option<RelayLink>> {
        let get = |k: &str| -> Result<Option<String>> {
            Ok(self
                .conn
                .query_row("SELECT value FROM sync_state WHERE key = ?1", [k], |r| {
                    r.get(0)
                })
                .optional()?)
        };
        Ok(match (get("relay_url")?, get("relay_token")?) {
            (Some(url), Some(token)) => Some(RelayLink { url, token }),
            _ => None,
        })
    }

    /// Records a completed sync (everything pushed and pulled).
    pub fn set_last_sync(&mut self, at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO sync_state (key, value) VALUES ('last_sync', ?1)",
            [crm_model::format_time(&at)],
        )?;
        Ok(())
    }

    pub fn last_sync(&self) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM sync_state WHERE key = 'last_sync'",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// A number that changes whenever another connection commits to the replica, so a
    /// long-running node notices local edits made by the CLI.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "data_version", |r| r.get(0))?)
    }
}
