//! The sync driver: one WebSocket session to the relay, or a watch loop that reconnects with
//! backoff and jitter.

use std::time::Duration;

use crm_model::RecordId;
use crm_store::{
    PulledChange, Quarantined, RelayLink, RemoteChange, Store, StoreError, SyncCursor,
};
use crm_sync::device::{DeviceConfig, DeviceEffect, DeviceInput, DeviceSync, Outgoing, PUSH_BYTES};
use crm_sync::{Cursor, Envelope, ErrorCode, ErrorFrame, Message, Scope};
use futures_util::{FutureExt as _, SinkExt, StreamExt};
use rand::RngExt as _;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Most changes per push (and at most `PUSH_BYTES` of them: see `crm_sync::device`).
const PUSH_BATCH: usize = 500;
/// How long to look for the relay's `Error` frame after sending to it failed.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);
/// Most pulled changes applied in one transaction (frames that arrived together).
const APPLY_AT_ONCE: usize = 8_192;
/// A pull at least this far behind the relay's head drops the replica's read indexes and
/// builds them again once caught up (see `Store::suspend_read_indexes`): cheaper than
/// keeping them up to date row by row from here on.
pub(crate) const SUSPEND_INDEXES_BEHIND: u64 = 5_000;
/// How long to wait for the relay to answer before calling the connection dead.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// In watch mode, ping the relay every 50 polls (10 s).
const PING_EVERY_TICKS: u64 = 50;

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("this replica has not joined a relay; run `crm join URL --token TOKEN`")]
    NotJoined,
    #[error(
        "invalid device token: expected crm1.<workspace>.<secret> as printed by `crm-relay device add`"
    )]
    BadToken,
    #[error("cannot reach the relay at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the relay refused: {} — {}", .0.code, .0.message)]
    Refused(ErrorFrame),
    #[error(
        "record {record} ({kind}): a local change of {bytes} bytes waits to be pushed, over the \
         limit of {max} bytes for one change that the relay accepts (an older version of crm \
         stored it without checking); it can never be pushed, so sync stops before it. The \
         record and every local change after it stay in the outbox, nothing is lost; `crm \
         status` shows what waits"
    )]
    Unpushable {
        record: RecordId,
        kind: String,
        bytes: usize,
        max: usize,
    },
    #[error("the connection to the relay was lost: {0}")]
    Lost(String),
    #[error(
        "an admin wiped this device: {records} records were deleted from this replica \
         ({pending} changes made here had not reached the relay and are gone with them)"
    )]
    Wiped { records: u64, pending: u64 },
    /// The user's access changed: the replica re-syncs its scope (handled inside a sync).
    #[error("the user's access changed; re-syncing what they may see")]
    Rescope,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SyncError {
    /// Whether the relay refused a push because it lacks changes the push builds on.
    pub fn is_missing_dependency(&self) -> bool {
        matches!(self, SyncError::Refused(e) if e.code == ErrorCode::MISSING_DEPENDENCY)
    }

    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Unreachable { .. } | SyncError::Lost(_) => true,
            SyncError::Refused(e) => e.code.is_transient(),
            _ => false,
        }
    }
}

/// What a session did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Local changes the relay acknowledged.
    pub pushed: usize,
    /// Changes pulled from the relay that were new here.
    pub pulled: usize,
    /// Records that changed here because of pulled changes.
    pub records_changed: usize,
    /// The relay's log head at the end.
    pub head: u64,
    /// Whether the relay did not know this device's cursor, so everything was re-pushed.
    pub reset: bool,
    /// Documents loaded from the relay's snapshots (a fresh device's first sync).
    pub bootstrapped: usize,
    /// Pulled changes this device could not apply and set aside, in the order met (see
    /// `crm_store::Quarantined`); the rest of the log applied and the cursor moved past them.
    pub quarantined: Vec<Quarantined>,
    /// Records that entered the user's scope (reassigned to them, say), loaded whole.
    pub granted: usize,
    /// Records that left the user's scope and were deleted from this replica.
    pub purged: usize,
    /// Records that left the scope but keep local changes not pushed yet (kept, visibly).
    pub kept_out_of_scope: usize,
    /// Who the relay says this device's user is, when it told this session.
    pub identity: Option<crm_sync::Access>,
    /// Local changes made under another user's name (before the replica joined): the relay
    /// accepts only its user's, so they stay on this replica, in the records' history.
    pub held_foreign: usize,
    /// The names those changes were made under.
    pub held_foreign_authors: Vec<String>,
    /// Local changes the relay refused (the user's role may not make them): kept in the
    /// replica's refused edits (`crm rejected`), and their records rebuilt from what the
    /// relay holds.
    pub refused: usize,
}

/// The workspace a device token belongs to: tokens are `crm1.<workspace>.<secret>`.
pub fn workspace_of(token: &str) -> Result<String, SyncError> {
    let mut parts = token.trim().split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("crm1"), Some(ws), Some(secret), None)
            if uuid::Uuid::try_parse(ws).is_ok() && secret.len() >= 16 =>
        {
            Ok(ws.to_string())
        }
        _ => Err(SyncError::BadToken),
    }
}

/// The WebSocket URL of a relay's sync endpoint, from what the user typed.
pub fn sync_url(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_string()
    } else {
        format!("ws://{base}")
    };
    if base.ends_with("/v1/sync") {
        base
    } else {
        format!("{base}/v1/sync")
    }
}

/// The addresses of a relay link: `crm join` takes several, comma-separated (relay processes
/// sharing one database); a device uses the first that answers and moves to the next when
/// one is unreachable or drops the connection.
pub fn relay_urls(url: &str) -> Vec<String> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// The link to one of the relay's addresses.
fn link_at(link: &RelayLink, urls: &[String], i: usize) -> RelayLink {
    RelayLink {
        url: urls
            .get(i % urls.len().max(1))
            .cloned()
            .unwrap_or_else(|| link.url.clone()),
        token: link.token.clone(),
    }
}

/// One session: push the outbox, pull until caught up, then close. Succeeds only when every
/// local change is acknowledged.
pub async fn sync_once(store: &mut Store) -> Result<SyncReport, SyncError> {
    let link = store.relay()?.ok_or(SyncError::NotJoined)?;
    let urls = relay_urls(&link.url);
    let mut report = SyncReport::default();
    let mut requeued = false;
    let mut at = 0;
    loop {
        match session(store, &link_at(&link, &urls, at), &mut report, None).await {
            Err(e) if !requeued && e.is_missing_dependency() => {
                requeued = true;
                requeue(store, &e)?;
            }
            Err(e) if e.is_transient() && at + 1 < urls.len() => {
                tracing::warn!(error = %e, next = %urls[at + 1], "trying the relay's next address");
                at += 1;
            }
            result => return result.map(|()| report),
        }
    }
}

/// The relay refused a push for changes it lacks (`424`): queue everything this replica has
/// and push again (see `Store::requeue_all`). Done once per sync: a second refusal is an
/// error for a person.
fn requeue(store: &mut Store, e: &SyncError) -> Result<(), SyncError> {
    let queued = store.requeue_all()?;
    tracing::warn!(
        error = %e,
        queued,
        "the relay lacks changes this replica's edits build on; pushing every change again"
    );
    Ok(())
}

/// Stays connected, applying live changes and pushing local ones as they are made (noticed
/// through the replica's data version, so edits by other processes count). Reconnects with
/// exponential backoff and jitter after transient failures; returns on a permanent one, or
/// when `stop` resolves.
pub async fn watch(
    store: &mut Store,
    mut on_synced: impl FnMut(&SyncReport),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), SyncError> {
    let link = store.relay()?.ok_or(SyncError::NotJoined)?;
    let urls = relay_urls(&link.url);
    tokio::pin!(stop);
    let mut backoff = Duration::from_millis(250);
    let mut requeued = false;
    // The address in use, and how many failed in a row: each of the relay's addresses is
    // tried once before backing off.
    let (mut at, mut failed) = (0, 0);
    loop {
        let mut report = SyncReport::default();
        let one = link_at(&link, &urls, at);
        let result = tokio::select! {
            r = session(store, &one, &mut report, Some(&mut on_synced)) => r,
            () = &mut stop => return Ok(()),
        };
        match result {
            Ok(()) => {
                backoff = Duration::from_millis(250);
                failed = 0;
            }
            Err(e) if !requeued && e.is_missing_dependency() => {
                requeued = true;
                requeue(store, &e)?;
                continue;
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "sync interrupted; reconnecting");
                failed += 1;
                at = (at + 1) % urls.len().max(1);
                if failed % urls.len().max(1) != 0 {
                    continue;
                }
            }
            Err(e) => return Err(e),
        }
        let jitter = rand::rng().random_range(0.5..1.5);
        let wait = backoff.mul_f64(jitter);
        backoff = (backoff * 2).min(Duration::from_secs(30));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut stop => return Ok(()),
        }
    }
}

type Watcher<'a> = Option<&'a mut dyn FnMut(&SyncReport)>;

async fn session(
    store: &mut Store,
    link: &RelayLink,
    report: &mut SyncReport,
    watcher: Watcher<'_>,
) -> Result<(), SyncError> {
    let mut result = Ok(());
    let mut watcher = watcher;
    // At most one re-sync of the scope per session: the access changed while connected.
    for _ in 0..2 {
        // A device without a cursor loads the relay's documents first, when the relay
        // offers them.
        if store.sync_cursor()?.is_none() {
            result = crate::bootstrap::bootstrap(store, link, report)
                .await
                .map(|_| ());
        }
        if result.is_ok() {
            let w = watcher
                .as_mut()
                .map(|w| &mut **w as &mut dyn FnMut(&SyncReport));
            result = connected(store, link, report, w).await;
        }
        if !matches!(result, Err(SyncError::Rescope)) {
            break;
        }
        result = Ok(());
    }
    // A pull that stopped half way leaves no index missing.
    let restored = store.restore_read_indexes();
    result?;
    Ok(restored?)
}

async fn connected(
    store: &mut Store,
    link: &RelayLink,
    report: &mut SyncReport,
    mut watcher: Watcher<'_>,
) -> Result<(), SyncError> {
    let workspace = workspace_of(&link.token)?;
    let url = sync_url(&link.url);
    let unreachable = |reason: String| SyncError::Unreachable {
        url: url.clone(),
        reason,
    };
    let (mut ws, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(url.as_str(), None, true),
    )
    .await
    .map_err(|_| unreachable("timed out".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    let mut machine = DeviceSync::new(DeviceConfig {
        workspace,
        token: link.token.clone(),
        push_batch: PUSH_BATCH,
        push_bytes: PUSH_BYTES,
    });
    let cursor = store.sync_cursor()?.map(|c| Cursor {
        relay_id: c.relay_id,
        seq: c.seq,
        hash: c.hash,
    });
    let mut pending = machine.handle(DeviceInput::Connected { cursor });
    let mut version = store.data_version()?;
    // Damaged local changes the last outbox read held back (see `Store::outbox_batch`): the
    // session pushes and pulls everything else, then fails with this.
    let mut damage: Option<StoreError> = None;
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    let mut ticks: u64 = 0;
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Carry out every effect, feeding answers back, before waiting on the socket.
        while !pending.is_empty() {
            let mut next = Vec::new();
            for effect in pending {
                match effect {
                    DeviceEffect::Send(frame) => {
                        if let Err(e) = ws.send(WsMessage::Binary(frame.into())).await {
                            return Err(lost_on_send(&mut ws, e).await);
                        }
                    }
                    DeviceEffect::ReadOutbox { limit, bytes } => {
                        let batch = store.outbox_batch(limit, bytes)?;
                        damage = batch.damage();
                        report.held_foreign = report.held_foreign.max(batch.foreign.len());
                        for f in &batch.foreign {
                            if !report.held_foreign_authors.contains(&f.author) {
                                report.held_foreign_authors.push(f.author.clone());
                            }
                        }
                        let outgoing = batch
                            .changes
                            .into_iter()
                            .map(|c| Outgoing {
                                local_seq: c.local_seq,
                                envelope: Envelope {
                                    doc_id: *c.doc_id.as_uuid().as_bytes(),
                                    kind: c.kind,
                                    scope: Scope {
                                        owner: c.owner.map(|o| *o.as_uuid().as_bytes()),
                                        assignee: c.assignee.map(|o| *o.as_uuid().as_bytes()),
                                        teams: c
                                            .teams
                                            .iter()
                                            .take(crm_sync::MAX_SCOPE_TEAMS)
                                            .map(|t| *t.as_uuid().as_bytes())
                                            .collect(),
                                    },
                                    bytes: c.bytes,
                                },
                            })
                            .collect();
                        next.extend(machine.handle(DeviceInput::Outbox(outgoing)));
                    }
                    DeviceEffect::Apply { entries, cursor } => {
                        // Frames of changes already waiting on the socket go into the same
                        // transaction: a fresh device's first sync then commits (and updates
                        // its indexes) once per several frames instead of once per frame.
                        let mut entries = entries;
                        let mut cursors = vec![cursor];
                        let mut later = Vec::new();
                        let mut lost = None;
                        // A grant, a purge or anything else ends the run: it must be carried
                        // out before the cursor passes its position.
                        while entries.len() < APPLY_AT_ONCE && lost.is_none() && later.is_empty() {
                            let Some(frame) = ws.next().now_or_never() else {
                                break;
                            };
                            match on_frame(&mut machine, frame) {
                                Ok(effects) => {
                                    for effect in effects {
                                        match effect {
                                            DeviceEffect::Apply {
                                                entries: more,
                                                cursor,
                                            } if later.is_empty() => {
                                                entries.extend(more);
                                                cursors.push(cursor);
                                            }
                                            other => later.push(other),
                                        }
                                    }
                                }
                                Err(e) => lost = Some(e),
                            }
                        }
                        let Some(last) = cursors.last().copied() else {
                            continue;
                        };
                        let behind = machine
                            .head()
                            .saturating_sub(entries.first().map_or(last.seq, |e| e.seq));
                        if behind >= SUSPEND_INDEXES_BEHIND {
                            store.suspend_read_indexes()?;
                        }
                        let batch: Vec<PulledChange> = entries
                            .into_iter()
                            .map(|e| PulledChange {
                                seq: e.seq,
                                change: RemoteChange {
                                    doc_id: RecordId::from_uuid(uuid::Uuid::from_bytes(e.doc_id)),
                                    bytes: e.bytes,
                                },
                            })
                            .collect();
                        let applied = store.apply_pulled(
                            &batch,
                            SyncCursor {
                                relay_id: last.relay_id,
                                seq: last.seq,
                                hash: last.hash,
                            },
                        )?;
                        report.pulled += applied.applied;
                        report.records_changed += applied.changed.len();
                        report.quarantined.extend(applied.quarantined);
                        if let Some(e) = lost {
                            return Err(e);
                        }
                        for cursor in cursors {
                            next.extend(machine.handle(DeviceInput::Applied(cursor)));
                        }
                        next.extend(later);
                    }
                    DeviceEffect::Acknowledged { stored, refused } => {
                        store.acknowledge(&stored)?;
                        report.pushed += stored.len();
                        if !refused.is_empty() {
                            // Refused changes, and what builds on them here, leave the
                            // outbox for the refused-edits table, and their records are
                            // rebuilt from what the relay holds: before the next push reads
                            // the outbox.
                            let refusals: Vec<crm_store::Refused> = refused
                                .into_iter()
                                .map(|(local_seq, why)| crm_store::Refused {
                                    local_seq,
                                    code: why.code.0,
                                    reason: why.reason,
                                })
                                .collect();
                            tracing::info!(refused = refusals.len(), "the relay refused changes");
                            let settled = store.settle_refused(&refusals)?;
                            report.refused += refusals.len();
                            // A record kept here only for an edit the relay has now refused
                            // holds nothing unsent any more: it goes, as the relay asked.
                            let removed = store.release_settled(&settled.rebuilt)?;
                            report.purged += usize::try_from(removed).unwrap_or(0);
                        }
                    }
                    DeviceEffect::Reset { .. } => {
                        report.reset = true;
                        store.reset_sync()?;
                    }
                    DeviceEffect::Access(access) => {
                        if adopt(store, &access, report)? {
                            // What the user may see changed: re-sync the scope from a fresh
                            // bootstrap, which purges what is no longer theirs.
                            let _ = ws.close(None).await;
                            store.forget_cursor()?;
                            return Err(SyncError::Rescope);
                        }
                    }
                    DeviceEffect::Grant(docs) => {
                        let count = docs.len();
                        let docs = docs
                            .into_iter()
                            .map(|s| crm_store::RemoteDocument {
                                doc_id: RecordId::from_uuid(uuid::Uuid::from_bytes(s.doc_id)),
                                snapshot: s.snapshot,
                                hashes: s.hashes,
                                changes: s.changes.into_iter().map(|c| c.into_vec()).collect(),
                            })
                            .collect();
                        let applied = store.apply_documents(docs, None)?;
                        report.pulled += applied.applied;
                        report.records_changed += applied.changed.len();
                        report.quarantined.extend(applied.quarantined);
                        report.granted += count;
                    }
                    DeviceEffect::Purge(ids) => {
                        let ids: Vec<RecordId> = ids
                            .into_iter()
                            .map(|d| RecordId::from_uuid(uuid::Uuid::from_bytes(d)))
                            .collect();
                        let purged = store.purge_records(&ids)?;
                        report.purged += usize::try_from(purged.removed).unwrap_or(usize::MAX);
                        report.kept_out_of_scope += purged.kept_ids.len();
                    }
                    DeviceEffect::Synced => {
                        store.restore_read_indexes()?;
                        // The relay's User record has arrived: what this replica made before
                        // it joined passes to the relay's user, and those edits go out now.
                        if store.claim_unowned()? > 0 {
                            next.extend(machine.handle(DeviceInput::LocalChanges));
                            continue;
                        }
                        report.head = machine.head();
                        if let Some(e) = damage.take() {
                            // Not synced: a damaged change and what builds on it stay here.
                            let _ = ws.close(None).await;
                            return Err(e.into());
                        }
                        store.set_last_sync(chrono::Utc::now())?;
                        version = store.data_version()?;
                        match watcher.as_mut() {
                            Some(w) => w(report),
                            None => {
                                let _ = ws.close(None).await;
                                return Ok(());
                            }
                        }
                    }
                    DeviceEffect::Unpushable {
                        doc_id,
                        kind,
                        bytes,
                        ..
                    } => {
                        let _ = ws.close(None).await;
                        return Err(SyncError::Unpushable {
                            record: RecordId::from_uuid(uuid::Uuid::from_bytes(doc_id)),
                            kind,
                            bytes,
                            max: crm_sync::MAX_CHANGE_BYTES,
                        });
                    }
                    DeviceEffect::Close { error } => {
                        let _ = ws.close(None).await;
                        if let Some(e) = &error
                            && e.code == ErrorCode::WIPED
                        {
                            let wiped = store.wipe()?;
                            return Err(SyncError::Wiped {
                                records: wiped.records,
                                pending: wiped.pending_changes,
                            });
                        }
                        return Err(match error {
                            Some(e) => SyncError::Refused(e),
                            None => SyncError::Lost("closed".into()),
                        });
                    }
                }
            }
            pending = next;
        }
        let watching = watcher.is_some();
        tokio::select! {
            frame = tokio::time::timeout(IDLE_TIMEOUT, ws.next()) => {
                match frame {
                    Err(_) => return Err(SyncError::Lost("the relay stopped answering".into())),
                    Ok(frame) => pending = on_frame(&mut machine, frame)?,
                }
            }
            _ = poll.tick(), if watching => {
                ticks += 1;
                // A ping now and then keeps an idle connection provably alive: its pong
                // resets the idle timeout, and a dead peer is noticed within it.
                if ticks.is_multiple_of(PING_EVERY_TICKS) {
                    ws.send(WsMessage::Ping(Vec::new().into()))
                        .await
                        .map_err(|e| SyncError::Lost(e.to_string()))?;
                }
                let now = store.data_version()?;
                if now != version {
                    version = now;
                    if store.outbox_len()? > 0 {
                        pending = machine.handle(DeviceInput::LocalChanges);
                    }
                }
            }
        }
    }
}

type WsResult = Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>;

/// Why sending to the relay failed. A relay that refuses a frame (413, too large) sends an
/// `Error` frame and closes without reading the rest, so the send fails with a reset
/// connection while the reason may already be waiting to be read: it is looked for
/// briefly, so the user sees the refusal rather than "connection reset".
async fn lost_on_send<S>(ws: &mut S, error: tokio_tungstenite::tungstenite::Error) -> SyncError
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    let refusal = tokio::time::timeout(REFUSAL_WAIT, async {
        while let Some(Ok(frame)) = ws.next().await {
            if let WsMessage::Binary(bytes) = frame
                && let Ok(Message::Error(e)) = Message::decode(&bytes)
            {
                return Some(e);
            }
        }
        None
    })
    .await;
    match refusal {
        Ok(Some(e)) => SyncError::Refused(e),
        _ => SyncError::Lost(error.to_string()),
    }
}

fn on_frame(machine: &mut DeviceSync, frame: WsResult) -> Result<Vec<DeviceEffect>, SyncError> {
    match frame {
        None => Err(SyncError::Lost("the relay closed the connection".into())),
        Some(Err(e)) => Err(SyncError::Lost(e.to_string())),
        Some(Ok(WsMessage::Binary(bytes))) => Ok(machine.handle(DeviceInput::Frame(&bytes))),
        Some(Ok(WsMessage::Close(_))) => {
            Err(SyncError::Lost("the relay closed the connection".into()))
        }
        Some(Ok(WsMessage::Text(_))) => Err(SyncError::Refused(ErrorFrame {
            code: ErrorCode::MALFORMED_FRAME,
            message: "the relay sent a text frame".into(),
        })),
        Some(Ok(_)) => Ok(Vec::new()),
    }
}

/// The identity an `Access` describes.
pub(crate) fn identity_of(
    access: &crm_sync::Access,
) -> Result<crm_store::RelayIdentity, SyncError> {
    let role = access.role.parse().map_err(|_| {
        SyncError::Refused(ErrorFrame {
            code: ErrorCode::UNEXPECTED_MESSAGE,
            message: format!("the relay named an unknown role {:?}", access.role),
        })
    })?;
    Ok(crm_store::RelayIdentity {
        user_id: RecordId::from_uuid(uuid::Uuid::from_bytes(access.user)),
        user_name: access.name.clone(),
        role,
        teams: access
            .teams
            .iter()
            .map(|t| RecordId::from_uuid(uuid::Uuid::from_bytes(*t)))
            .collect(),
        device_id: uuid::Uuid::from_bytes(access.device).to_string(),
        access_key: access.key,
    })
}

/// Takes the relay's word for who this device's user is. Returns whether what the user may
/// see changed since the replica last settled its scope (then it re-syncs): never on the
/// first identity a replica learns.
pub(crate) fn adopt(
    store: &mut Store,
    access: &crm_sync::Access,
    report: &mut SyncReport,
) -> Result<bool, SyncError> {
    report.identity = Some(access.clone());
    // A device added before the relay knew users (an admin's): nothing to adopt, and the
    // replica's own User record is its user's record.
    if access.user == [0; 16] {
        store.release_local_user()?;
        return Ok(false);
    }
    store.set_matrix_overrides(&access.matrix)?;
    let user_id = RecordId::from_uuid(uuid::Uuid::from_bytes(access.user));
    let identity = identity_of(access)?;
    let role = identity.role;
    let known = store.access_key();
    let same_user = store.identity().user_id == Some(user_id);
    if known.is_some() && same_user && known != Some(access.key) {
        // Keep the old key until the re-sync has swept: a crash in between re-syncs again.
        return Ok(true);
    }
    if !same_user || known.is_none() || store.identity().role != Some(role) {
        // Changes made here under another name are held back and reported by the sync
        // (`SyncReport::held_foreign`).
        store.adopt_identity(&identity)?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised() {
        assert_eq!(sync_url("127.0.0.1:7070"), "ws://127.0.0.1:7070/v1/sync");
        assert_eq!(
            sync_url("https://crm.example.com/"),
            "wss://crm.example.com/v1/sync"
        );
        assert_eq!(sync_url("ws://h:1/v1/sync"), "ws://h:1/v1/sync");
    }

    #[test]
    fn tokens_name_their_workspace() {
        let ws = "0192f0c4-1d2e-7a3b-9c4d-5e6f7a8b9c0d";
        assert_eq!(
            workspace_of(&format!("crm1.{ws}.abcdefghijklmnopqrstuvwxyz")).ok(),
            Some(ws.to_string())
        );
        assert!(workspace_of("garbage").is_err());
        assert!(workspace_of(&format!("crm1.{ws}.short")).is_err());
    }
}
