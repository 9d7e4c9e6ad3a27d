//! Deterministic multi-device sync: real replicas (SQLite files) on every device, the two
//! protocol state machines, and an in-memory relay log and network. Every frame goes through
//! the real encoder and decoder.
//!
//! [`World`] holds the devices, the relay's [`Log`] and the frames in flight;
//! [`World::run_until_quiescent`] delivers them in an order a seed picks. Without a
//! directory ([`World::new`]) the relay knows no users and sends every device everything.
//! With one ([`World::with_directory`], see [`access`]) it decides identity and read access
//! as the real relay does: per device user, role and teams, filtering every entry by its
//! kind and scope, granting and purging records that move, and re-syncing a device whose
//! user's access changed.

pub(crate) mod access;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crm_model::automerge::Change;
use crm_model::{Edit, Kind, RecordId, Scope, Viewer};
use crm_store::{OutboxChange, PulledChange, RemoteChange, RemoteDocument, Store, SyncCursor};
use crm_sync::device::{DeviceConfig, DeviceEffect, DeviceInput, DeviceSync, Outgoing};
use crm_sync::relay::{Authorized, LogRead, RelayConfig, RelayEffect, RelayInput, RelaySync};
use crm_sync::{Cursor, DocState, Entry, Envelope, ErrorCode, ErrorFrame, Outcome};

use access::{Acl, sees};

pub(crate) const RELAY_ID: [u8; 16] = [0x42; 16];

/// One change in the relay's log, with what the relay stores beside it for filtering.
#[derive(Clone, Debug)]
pub(crate) struct LogEntry {
    pub(crate) doc: RecordId,
    pub(crate) hash: [u8; 32],
    pub(crate) bytes: Vec<u8>,
    /// The record's kind, from the envelope.
    pub(crate) kind: String,
    /// The record's scope after this change, as the pushing device's projection had it.
    pub(crate) scope: Scope,
    /// The scope before, when this change moved the record (its last stored scope differs).
    pub(crate) prev_scope: Option<Scope>,
}

/// The relay's log of one workspace, kept in memory.
#[derive(Clone, Default)]
pub(crate) struct Log {
    pub(crate) entries: Vec<LogEntry>,
    by_hash: HashMap<[u8; 32], u64>,
    /// The latest scope of each document: a change whose scope differs moved the record.
    scopes: HashMap<RecordId, Scope>,
    /// Each document's shape, as the relay keeps it.
    shapes: HashMap<RecordId, crm_model::shape::Shape>,
}

impl Log {
    pub(crate) fn head(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Stores a batch as the relay does (relay/src/service/push.rs `plan`): a change already
    /// in the log keeps its position; a new one is decided from its operations and its
    /// record's shape (crm-model's `Shape` and `authorize_write`) against the pusher's
    /// rights (`writer`; `None`: every right), refused alone when its user may not make it
    /// or it builds on a refused change; the scope stored is the record's, read from the
    /// shape, never the envelope's.
    pub(crate) fn store(
        &mut self,
        changes: &[Envelope],
        writer: Option<(&Viewer, &crm_model::Directory)>,
    ) -> Result<Vec<Outcome>, ErrorFrame> {
        // Validate the whole batch first: nothing of a rejected batch is stored.
        let mut parsed = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            let change = Change::try_from(c.bytes.as_slice()).map_err(|e| ErrorFrame {
                code: ErrorCode::INVALID_CHANGE,
                message: format!("change {i}: {e}"),
            })?;
            let ops = crm_model::shape::decode(&change).ok_or_else(|| ErrorFrame {
                code: ErrorCode::INVALID_CHANGE,
                message: format!("change {i}: undecodable"),
            })?;
            let deps: Vec<[u8; 32]> = change.deps().iter().map(|h| h.0).collect();
            parsed.push((record(c.doc_id), change.hash().0, deps, ops, c));
        }
        let mut outcomes = Vec::new();
        let mut refused: HashSet<[u8; 32]> = HashSet::new();
        for (doc, hash, deps, ops, c) in parsed {
            if let Some(seq) = self.by_hash.get(&hash) {
                outcomes.push(Outcome::Stored(*seq));
                continue;
            }
            let refuse = |code: ErrorCode, reason: String| {
                Outcome::Refused(crm_sync::Refusal { code, reason })
            };
            if deps.iter().any(|d| refused.contains(d)) {
                refused.insert(hash);
                outcomes.push(refuse(ErrorCode::BUILDS_ON_REFUSED, "builds on".into()));
                continue;
            }
            let created = !self.shapes.contains_key(&doc);
            let before = self.shapes.get(&doc).cloned().unwrap_or_default();
            let mut after = before.clone();
            let touches = after.apply(&ops);
            if let Some((viewer, directory)) = writer {
                let kind: Kind = c.kind.parse().expect("a known kind");
                if let Err(reason) = crm_model::authorize_write(
                    viewer,
                    directory,
                    kind,
                    created,
                    &before.scope(),
                    &after.scope(),
                    &touches,
                ) {
                    refused.insert(hash);
                    outcomes.push(refuse(ErrorCode::FORBIDDEN, reason));
                    continue;
                }
            }
            let mut scope = after.scope();
            scope.teams.sort();
            self.shapes.insert(doc, after);
            // As the relay does: the latest scope is the one a later filter reads; a change
            // that moves it keeps the scope before.
            let prev_scope = match self.scopes.insert(doc, scope.clone()) {
                Some(before) if before != scope => Some(before),
                _ => None,
            };
            self.entries.push(LogEntry {
                doc,
                hash,
                bytes: c.bytes.clone(),
                kind: c.kind.clone(),
                scope,
                prev_scope,
            });
            let seq = self.head();
            self.by_hash.insert(hash, seq);
            outcomes.push(Outcome::Stored(seq));
        }
        Ok(outcomes)
    }

    /// Up to `limit` positions after `after`, as `viewer` may see them (`None`: everything).
    /// The filtering is relay/src/service/log.rs `filter_with`'s: an entry seen before and
    /// after it is sent, one that moves its record into sight becomes a `Grant` of the whole
    /// document up to it, out of sight a `Purge`, and an unseen one is skipped; the last
    /// `Changes` always reaches the last position examined, so the cursor moves past them.
    pub(crate) fn read(&self, after: u64, limit: usize, viewer: Option<&Viewer>) -> LogRead {
        let from = usize::try_from(after).expect("fits");
        let rows: Vec<(u64, &LogEntry)> = self
            .entries
            .iter()
            .enumerate()
            .skip(from)
            .take(limit)
            .map(|(i, e)| (i as u64 + 1, e))
            .collect();
        let through = rows.last().map_or(after, |(seq, _)| *seq);
        let through_hash = self.hash_at(through).unwrap_or([0; 32]);
        let Some(viewer) = viewer else {
            let entries = rows.iter().map(|(seq, e)| entry(*seq, e)).collect();
            return LogRead::entries(entries, through, through_hash, self.head());
        };
        let mut frames = Vec::new();
        let mut entries = Vec::new();
        let mut before: Option<(u64, [u8; 32])> = None;
        for (seq, row) in rows {
            let now = sees(viewer, &row.kind, &row.scope);
            let was = match &row.prev_scope {
                Some(prev) => sees(viewer, &row.kind, prev),
                None => now,
            };
            match (was, now) {
                (true, true) => entries.push(entry(seq, row)),
                (false, false) => {}
                (was, _) => {
                    // Everything before this row first, then the grant or the purge: the
                    // device's cursor passes this row only after both.
                    if let Some((through, through_hash)) = before {
                        frames.push(crm_sync::relay::ReadFrame::Changes {
                            entries: std::mem::take(&mut entries),
                            through,
                            through_hash,
                        });
                    }
                    frames.push(if was {
                        crm_sync::relay::ReadFrame::Purge(vec![*row.doc.as_uuid().as_bytes()])
                    } else {
                        crm_sync::relay::ReadFrame::Grant(vec![self.whole_document(row.doc, seq)])
                    });
                }
            }
            before = Some((seq, row.hash));
        }
        frames.push(crm_sync::relay::ReadFrame::Changes {
            entries,
            through,
            through_hash,
        });
        LogRead {
            frames,
            head: self.head(),
        }
    }

    /// A document whole as of position `through`: no snapshot (this relay compacts
    /// nothing), every change of it up to `through`, in log order.
    pub(crate) fn whole_document(&self, doc: RecordId, through: u64) -> DocState {
        let through = usize::try_from(through).expect("fits");
        DocState {
            doc_id: *doc.as_uuid().as_bytes(),
            snapshot: Vec::new(),
            hashes: Vec::new(),
            changes: self.entries[..through]
                .iter()
                .filter(|e| e.doc == doc)
                .map(|e| serde_bytes::ByteBuf::from(e.bytes.clone()))
                .collect(),
        }
    }

    /// What `/v1/bootstrap` sends `viewer` as of the head: every document it may see by its
    /// latest scope, whole.
    pub(crate) fn documents(&self, viewer: &Viewer) -> Vec<DocState> {
        let mut seen = HashSet::new();
        let mut docs = Vec::new();
        for e in &self.entries {
            if seen.insert(e.doc) && sees(viewer, &e.kind, &self.scopes[&e.doc]) {
                docs.push(self.whole_document(e.doc, self.head()));
            }
        }
        docs
    }

    pub(crate) fn hash_at(&self, seq: u64) -> Option<[u8; 32]> {
        let i = usize::try_from(seq).ok()?.checked_sub(1)?;
        self.entries.get(i).map(|e| e.hash)
    }
}

/// A change's envelope, its scope the record's projection on the pushing device, as
/// crm-node's driver (crm-node/src/sync.rs) builds it from an [`OutboxChange`].
pub(crate) fn envelope(c: OutboxChange) -> Envelope {
    Envelope {
        doc_id: *c.doc_id.as_uuid().as_bytes(),
        kind: c.kind,
        scope: crm_sync::Scope {
            owner: c.owner.map(|o| *o.as_uuid().as_bytes()),
            assignee: c.assignee.map(|a| *a.as_uuid().as_bytes()),
            teams: c
                .teams
                .iter()
                .take(crm_sync::MAX_SCOPE_TEAMS)
                .map(|t| *t.as_uuid().as_bytes())
                .collect(),
        },
        bytes: c.bytes,
    }
}

fn entry(seq: u64, e: &LogEntry) -> Entry {
    Entry {
        seq,
        doc_id: *e.doc.as_uuid().as_bytes(),
        bytes: e.bytes.clone(),
    }
}

pub(crate) fn record(doc: [u8; 16]) -> RecordId {
    RecordId::from_uuid(uuid::Uuid::from_bytes(doc))
}

pub(crate) struct Device {
    pub(crate) store: Store,
    pub(crate) sync: DeviceSync,
    /// The relay's id of this device.
    pub(crate) id: [u8; 16],
    pub(crate) token: String,
    _dir: tempfile::TempDir,
    pub(crate) synced: bool,
    pub(crate) closed_with: Option<ErrorFrame>,
    /// The relay said this device's user's access changed: it re-syncs its scope before
    /// anything else happens to it (see [`World::rescope`]).
    rescope: bool,
    /// Documents granted, records purged, and re-syncs of the scope, over the device's life.
    pub(crate) granted: usize,
    pub(crate) purged: usize,
    pub(crate) rescopes: usize,
}

/// The simulated world: devices, one relay, and the frames in flight.
pub(crate) struct World {
    pub(crate) devices: Vec<Device>,
    pub(crate) log: Log,
    pub(crate) tokens: HashMap<String, bool>,
    /// Users, teams and roles, when the relay knows users; `None`: everyone sees everything.
    pub(crate) acl: Option<Acl>,
    pub(crate) sessions: BTreeMap<usize, RelaySync>,
    to_relay: VecDeque<(usize, Vec<u8>)>,
    to_device: VecDeque<(usize, Vec<u8>)>,
    pub(crate) bytes_to_relay: usize,
    pub(crate) bytes_to_device: usize,
    pub(crate) frames: usize,
    /// Devices whose `Received` frames are withheld (a slow reader).
    pub(crate) stalled: Vec<usize>,
    pub(crate) window: u64,
}

impl World {
    pub(crate) fn new(n: usize) -> World {
        let devices = (0..n)
            .map(|i| {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = Store::init(dir.path(), &format!("user{i}"), &format!("device{i}"))
                    .expect("init");
                Device {
                    store,
                    sync: DeviceSync::new(DeviceConfig {
                        workspace: "acme".into(),
                        token: format!("token{i}"),
                        push_batch: 50,
                        push_bytes: crm_sync::device::PUSH_BYTES,
                    }),
                    id: *uuid::Uuid::now_v7().as_bytes(),
                    token: format!("token{i}"),
                    _dir: dir,
                    synced: false,
                    closed_with: None,
                    rescope: false,
                    granted: 0,
                    purged: 0,
                    rescopes: 0,
                }
            })
            .collect();
        World {
            devices,
            log: Log::default(),
            tokens: (0..n).map(|i| (format!("token{i}"), true)).collect(),
            acl: None,
            sessions: BTreeMap::new(),
            to_relay: VecDeque::new(),
            to_device: VecDeque::new(),
            bytes_to_relay: 0,
            bytes_to_device: 0,
            frames: 0,
            stalled: Vec::new(),
            window: 256,
        }
    }

    pub(crate) fn connect(&mut self, d: usize) {
        self.sessions.insert(
            d,
            RelaySync::new(RelayConfig {
                relay_id: RELAY_ID,
                window: self.window,
                read_batch: 64,
            }),
        );
        let cursor = self.devices[d]
            .store
            .sync_cursor()
            .expect("cursor")
            .map(|c| Cursor {
                relay_id: c.relay_id,
                seq: c.seq,
                hash: c.hash,
            });
        self.devices[d].synced = false;
        self.device_input(d, DeviceInput::Connected { cursor });
    }

    pub(crate) fn disconnect(&mut self, d: usize) {
        self.sessions.remove(&d);
        if let Some(acl) = &mut self.acl {
            acl.told.remove(&d);
        }
        self.to_relay.retain(|(i, _)| *i != d);
        self.to_device.retain(|(i, _)| *i != d);
    }

    pub(crate) fn is_connected(&self, d: usize) -> bool {
        self.sessions.contains_key(&d)
    }

    fn device_input(&mut self, d: usize, input: DeviceInput<'_>) {
        let effects = self.devices[d].sync.handle(input);
        for effect in effects {
            self.device_effect(d, effect);
        }
    }

    fn device_effect(&mut self, d: usize, effect: DeviceEffect) {
        if self.devices[d].rescope {
            // This session ends for a re-sync of the scope: nothing more of it is carried
            // out (crm-node closes the socket and returns at once).
            return;
        }
        match effect {
            DeviceEffect::Send(frame) => {
                self.bytes_to_relay += frame.len();
                self.frames += 1;
                self.to_relay.push_back((d, frame));
            }
            DeviceEffect::ReadOutbox { limit, .. } => {
                let outgoing = self.devices[d]
                    .store
                    .outbox(limit)
                    .expect("outbox")
                    .into_iter()
                    .map(|c| Outgoing {
                        local_seq: c.local_seq,
                        envelope: envelope(c),
                    })
                    .collect();
                self.device_input(d, DeviceInput::Outbox(outgoing));
            }
            DeviceEffect::Apply { entries, cursor } => {
                let batch: Vec<PulledChange> = entries
                    .into_iter()
                    .map(|e| PulledChange {
                        seq: e.seq,
                        change: RemoteChange {
                            doc_id: record(e.doc_id),
                            bytes: e.bytes,
                        },
                    })
                    .collect();
                self.devices[d]
                    .store
                    .apply_pulled(
                        &batch,
                        SyncCursor {
                            relay_id: cursor.relay_id,
                            seq: cursor.seq,
                            hash: cursor.hash,
                        },
                    )
                    .expect("apply");
                self.device_input(d, DeviceInput::Applied(cursor));
            }
            DeviceEffect::Acknowledged { stored, refused } => {
                self.devices[d].store.acknowledge(&stored).expect("ack");
                if !refused.is_empty() {
                    let refusals: Vec<crm_store::Refused> = refused
                        .into_iter()
                        .map(|(local_seq, why)| crm_store::Refused {
                            local_seq,
                            code: why.code.0,
                            reason: why.reason,
                        })
                        .collect();
                    let device = &mut self.devices[d];
                    let store = &mut device.store;
                    let settled = store.settle_refused(&refusals).expect("settle");
                    // As crm-node does: a record kept only for an edit now refused goes.
                    let removed = store.release_settled(&settled.rebuilt).expect("release");
                    device.purged += usize::try_from(removed).expect("fits");
                }
            }
            DeviceEffect::Reset { .. } => {
                self.devices[d].store.reset_sync().expect("reset");
            }
            DeviceEffect::Synced => {
                // The relay's User record has arrived: what the replica made before it
                // adopted its identity passes to the relay's user (crm-node does the same).
                if self.devices[d].store.claim_unowned().expect("claim") > 0 {
                    self.device_input(d, DeviceInput::LocalChanges);
                } else {
                    self.devices[d].synced = true;
                }
            }
            DeviceEffect::Access(access) => {
                if access::adopt(&mut self.devices[d].store, &access) {
                    self.devices[d].rescope = true;
                }
            }
            DeviceEffect::Grant(docs) => {
                self.devices[d].granted += docs.len();
                let docs = docs
                    .into_iter()
                    .map(|s| RemoteDocument {
                        doc_id: record(s.doc_id),
                        snapshot: s.snapshot,
                        hashes: s.hashes,
                        changes: s.changes.into_iter().map(|c| c.into_vec()).collect(),
                    })
                    .collect();
                self.devices[d]
                    .store
                    .apply_documents(docs, None)
                    .expect("grant");
            }
            DeviceEffect::Purge(ids) => {
                let ids: Vec<RecordId> = ids.into_iter().map(record).collect();
                let purged = self.devices[d].store.purge_records(&ids).expect("purge");
                self.devices[d].purged += usize::try_from(purged.removed).expect("fits");
            }
            DeviceEffect::Close { error } => {
                self.devices[d].closed_with = error;
                self.sessions.remove(&d);
            }
            DeviceEffect::Unpushable { bytes, .. } => {
                self.devices[d].closed_with = Some(ErrorFrame {
                    code: crm_sync::ErrorCode::TOO_LARGE,
                    message: format!("a local change of {bytes} bytes cannot be pushed"),
                });
                self.sessions.remove(&d);
            }
        }
    }

    /// A re-sync of the device's scope after its user's access changed, as crm-node does it
    /// (crm-node/src/sync.rs `connected` on `Access`, then `session`, then
    /// crm-node/src/bootstrap.rs): the session closes, the cursor is forgotten, the
    /// documents the user may see now are loaded as a bootstrap carries them (whole, as of
    /// the log's head, with the head as the new cursor), every other record is swept
    /// (records with unsent changes stay), the new access key is stored, and the device
    /// syncs on from that cursor. The bootstrap exchange itself is a direct call here, not
    /// frames: its state machine is crm-node's, not crm-sync's.
    fn rescope(&mut self, d: usize) {
        self.disconnect(d);
        let device = &mut self.devices[d];
        device.rescope = false;
        device.rescopes += 1;
        device.store.forget_cursor().expect("forget cursor");
        let acl = self.acl.as_ref().expect("a rescope needs a directory");
        let token = device.token.clone();
        let user = acl.users[&token];
        let viewer = acl.viewer(user).expect("a user of the directory");
        let access = acl.access(device.id, &viewer);
        // Bootstrap's `Welcome`: adopt the identity (a changed key is dealt with below).
        access::adopt(&mut device.store, &access);
        let docs = self.log.documents(&viewer);
        let sent: HashSet<RecordId> = docs.iter().map(|s| record(s.doc_id)).collect();
        let head = self.log.head();
        let cursor = SyncCursor {
            relay_id: RELAY_ID,
            seq: head,
            hash: self.log.hash_at(head).unwrap_or([0; 32]),
        };
        let docs = docs
            .into_iter()
            .map(|s| RemoteDocument {
                doc_id: record(s.doc_id),
                snapshot: s.snapshot,
                hashes: s.hashes,
                changes: s.changes.into_iter().map(|c| c.into_vec()).collect(),
            })
            .collect();
        device
            .store
            .apply_documents(docs, Some(cursor))
            .expect("bootstrap");
        if device.store.access_key() != Some(access.key) {
            let swept = device.store.sweep_except(&sent).expect("sweep");
            device.purged += usize::try_from(swept.removed).expect("fits");
            device.store.set_access_key(access.key).expect("key");
        }
        self.connect(d);
    }

    fn relay_input(&mut self, d: usize, input: RelayInput<'_>) {
        let Some(session) = self.sessions.get_mut(&d) else {
            return;
        };
        let effects = session.handle(input);
        for effect in effects {
            self.relay_effect(d, effect);
        }
    }

    fn relay_effect(&mut self, d: usize, effect: RelayEffect) {
        match effect {
            RelayEffect::Send(frame) => {
                self.bytes_to_device += frame.len();
                self.frames += 1;
                self.to_device.push_back((d, frame));
            }
            RelayEffect::Authenticate {
                token,
                cursor,
                workspace,
            } => {
                let access = match &mut self.acl {
                    None => Ok(crm_sync::Access::default()),
                    Some(acl) => acl.authorize(d, self.devices[d].id, &token),
                };
                let result = match (workspace.as_str(), self.tokens.get(&token)) {
                    ("acme", Some(true)) => access.map(|access| Authorized {
                        head: self.log.head(),
                        cursor_known: cursor
                            .is_some_and(|c| self.log.hash_at(c.seq) == Some(c.hash)),
                        access,
                    }),
                    ("acme", Some(false)) => Err(ErrorFrame {
                        code: ErrorCode::REVOKED,
                        message: "token revoked".into(),
                    }),
                    _ => Err(ErrorFrame {
                        code: ErrorCode::UNAUTHENTICATED,
                        message: "unknown token".into(),
                    }),
                };
                self.relay_input(d, RelayInput::Authenticated(result));
            }
            RelayEffect::Store { changes, .. } => {
                let before = self.log.head();
                let writer = self.acl.as_ref().and_then(|acl| {
                    let user = acl.users.get(&self.devices[d].token)?;
                    let viewer = acl.viewer(*user)?;
                    // An admin (and a device with no user) writes anything.
                    (viewer.role != crm_model::Role::Admin).then_some((viewer, &acl.directory))
                });
                let result = self
                    .log
                    .store(&changes, writer.as_ref().map(|(v, d)| (v, *d)));
                self.relay_input(d, RelayInput::Stored(result));
                let head = self.log.head();
                if head > before {
                    // The relay projects the directory in the appending transaction, and
                    // tells every open session whose access changed.
                    let before = usize::try_from(before).expect("fits");
                    let changed = self.acl.as_mut().map(|acl| {
                        let entries = &self.log.entries[before..];
                        if acl.absorb(entries) {
                            acl.changed_sessions(&self.devices, self.sessions.keys().copied())
                        } else {
                            Vec::new()
                        }
                    });
                    for (o, access) in changed.unwrap_or_default() {
                        self.relay_input(o, RelayInput::Access(access));
                    }
                    let others: Vec<usize> =
                        self.sessions.keys().copied().filter(|o| *o != d).collect();
                    for o in others {
                        self.relay_input(o, RelayInput::NewHead(head));
                    }
                }
            }
            RelayEffect::Read { after, limit } => {
                let viewer = self.acl.as_ref().map(|acl| {
                    let user = acl.users[&self.devices[d].token.clone()];
                    acl.viewer(user).expect("authorized user")
                });
                let read = self.log.read(after, limit, viewer.as_ref());
                self.relay_input(d, RelayInput::Read(read));
            }
            RelayEffect::Close => {
                self.sessions.remove(&d);
            }
        }
    }

    /// Delivers frames, in an order picked by `seed`, until nothing moves. A device told
    /// that its access changed re-syncs its scope before the next frame moves.
    pub(crate) fn run_until_quiescent(&mut self, seed: u64) {
        let mut rng = seed | 1;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 1_000_000, "no quiescence");
            if let Some(d) = self.devices.iter().position(|d| d.rescope) {
                self.rescope(d);
                continue;
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let relay_first = rng.is_multiple_of(2);
            let mut moved = false;
            for pass in 0..2 {
                if (pass == 0) == relay_first {
                    if let Some((d, frame)) = self.to_relay.pop_front() {
                        let withheld = self.stalled.contains(&d)
                            && matches!(
                                crm_sync::Message::decode(&frame),
                                Ok(crm_sync::Message::Received(_))
                            );
                        if !withheld {
                            self.relay_input(d, RelayInput::Frame(&frame));
                        }
                        moved = true;
                        break;
                    }
                } else if let Some((d, frame)) = self.to_device.pop_front() {
                    if self.sessions.contains_key(&d) || !self.devices[d].sync.is_closed() {
                        self.device_input(d, DeviceInput::Frame(&frame));
                    }
                    moved = true;
                    break;
                }
            }
            if !moved {
                return;
            }
        }
    }

    pub(crate) fn edit<T>(&mut self, d: usize, f: impl FnOnce(&mut Store) -> T) -> T {
        let out = f(&mut self.devices[d].store);
        if self.sessions.contains_key(&d) {
            self.device_input(d, DeviceInput::LocalChanges);
        }
        out
    }
}

pub(crate) fn account(store: &mut Store, name: &str) -> RecordId {
    let mut e = Edit::new(Kind::Account);
    e.set("name", name).expect("valid");
    store.create(&e).expect("create").id
}

pub(crate) fn set(store: &mut Store, id: RecordId, field: &str, value: &str) {
    let mut e = Edit::new(Kind::Account);
    e.set(field, value).expect("valid");
    store.edit(id, &e).expect("edit");
}

/// Every device holds what device 0 holds, with nothing left to push.
pub(crate) fn assert_converged(world: &World) {
    let first = &world.devices[0].store;
    let heads = first.all_heads().expect("heads");
    let dump = first.projection_dump().expect("dump");
    for (i, d) in world.devices.iter().enumerate().skip(1) {
        assert_eq!(
            d.store.all_heads().expect("heads"),
            heads,
            "device {i} heads"
        );
        assert_eq!(
            d.store.projection_dump().expect("dump"),
            dump,
            "device {i} projections"
        );
    }
    for (i, d) in world.devices.iter().enumerate() {
        assert_eq!(
            d.store.outbox_len().expect("outbox"),
            0,
            "device {i} outbox"
        );
        assert!(d.synced, "device {i} reported synced");
    }
}
