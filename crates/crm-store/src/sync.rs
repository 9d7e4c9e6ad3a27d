//! What the sync driver needs from the replica: the outbox, acknowledgements, and pulled
//! batches applied together with the relay cursor.

use rusqlite::{OptionalExtension, params};

use crate::error::Result;
use crate::remote::{ApplyReport, RemoteChange};
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
    pub teams: Vec<crm_model::RecordId>,
    pub bytes: Vec<u8>,
}

const CURSOR_KEY: &str = "cursor";

impl Store {
    /// The oldest `limit` changes of the outbox.
    pub fn outbox(&self, limit: usize) -> Result<Vec<OutboxChange>> {
        self.outbox_within(limit, usize::MAX)
    }

    /// The oldest changes of the outbox, at most `limit` of them and no more once their bytes
    /// add up to `max_bytes` (always the oldest one, whatever its size): what one push can
    /// carry, without reading hundreds of large changes to send a few.
    pub fn outbox_within(&self, limit: usize, max_bytes: usize) -> Result<Vec<OutboxChange>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.seq, d.id, coalesce(d.kind, ''), c.bytes, d.docno, c.hash FROM outbox o
             JOIN changes c ON c.seq = o.seq JOIN documents d ON d.docno = c.docno
             ORDER BY o.seq LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Vec<u8>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        let mut total = 0usize;
        // After `reset_sync`, changes a bootstrap stored in snapshots only are queued too.
        let mut from_snapshots = crate::bootstrap::ChangeBytes::default();
        for row in rows {
            let (local_seq, id, kind, bytes, docno, hash) = row?;
            let Ok(doc_id) = id.parse() else { continue };
            let bytes = from_snapshots.get(&self.conn, docno, &hash, bytes)?;
            total = total.saturating_add(bytes.len());
            if total > max_bytes && !out.is_empty() {
                break;
            }
            let (owner, teams) = match kind.parse::<crm_model::Kind>() {
                Ok(k) => self.scope_of(k, docno)?,
                Err(_) => (None, Vec::new()),
            };
            out.push(OutboxChange {
                local_seq,
                doc_id,
                kind,
                owner,
                teams,
                bytes,
            });
        }
        Ok(out)
    }

    /// A record's owner and teams, from its projection.
    fn scope_of(
        &self,
        kind: crm_model::Kind,
        docno: i64,
    ) -> Result<(Option<crm_model::RecordId>, Vec<crm_model::RecordId>)> {
        let row: Option<(Option<String>, Option<String>)> = self
            .conn
            .prepare_cached(&format!(
                "SELECT f_owner, f_teams FROM {} WHERE docno = ?1",
                crate::schema::table(kind)
            ))?
            .query_row([docno], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((owner, teams)) = row else {
            return Ok((None, Vec::new()));
        };
        let owner = owner.and_then(|o| o.parse().ok());
        let teams = teams
            .and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        Ok((owner, teams))
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
        let value: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM sync_state WHERE key = ?1",
                [CURSOR_KEY],
                |r| r.get(0),
            )
            .optional()?;
        Ok(value.and_then(|v| decode_cursor(&v)))
    }

    /// Applies a pulled batch and stores the new cursor in the same transaction, so a crash
    /// never skips a change nor leaves the cursor ahead of what is applied.
    pub fn apply_pulled(
        &mut self,
        batch: &[RemoteChange],
        cursor: SyncCursor,
    ) -> Result<ApplyReport> {
        self.apply_remote_with(batch, |tx| write_cursor(tx, &cursor))
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
}

/// Stores the relay cursor (in the caller's transaction).
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
