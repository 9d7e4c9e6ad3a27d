//! Deterministic multi-device sync: real replicas (SQLite files) on every device, the two
//! protocol state machines, and an in-memory relay log and network. Every frame goes through
//! the real encoder and decoder.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crm_model::automerge::Change;
use crm_model::{Edit, Kind, RecordId};
use crm_store::{PulledChange, RemoteChange, Store, SyncCursor};
use crm_sync::device::{DeviceConfig, DeviceEffect, DeviceInput, DeviceSync, Outgoing};
use crm_sync::relay::{Authorized, LogRead, RelayConfig, RelayEffect, RelayInput, RelaySync};
use crm_sync::{Cursor, Entry, Envelope, ErrorCode, ErrorFrame};

const RELAY_ID: [u8; 16] = [0x42; 16];

/// The relay's log of one workspace, kept in memory.
#[derive(Clone, Default)]
struct Log {
    entries: Vec<(RecordId, [u8; 32], Vec<u8>)>,
    by_hash: HashMap<[u8; 32], u64>,
}

impl Log {
    fn head(&self) -> u64 {
        self.entries.len() as u64
    }

    fn store(&mut self, changes: &[Envelope]) -> Result<Vec<u64>, ErrorFrame> {
        // Validate the whole batch first: nothing of a rejected batch is stored.
        let mut parsed = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            let change = Change::try_from(c.bytes.as_slice()).map_err(|e| ErrorFrame {
                code: ErrorCode::INVALID_CHANGE,
                message: format!("change {i}: {e}"),
            })?;
            parsed.push((
                RecordId::from_uuid(uuid::Uuid::from_bytes(c.doc_id)),
                change.hash().0,
                c.bytes.clone(),
            ));
        }
        Ok(parsed
            .into_iter()
            .map(|(doc, hash, bytes)| {
                *self.by_hash.entry(hash).or_insert_with(|| {
                    self.entries.push((doc, hash, bytes));
                    self.entries.len() as u64
                })
            })
            .collect())
    }

    fn read(&self, after: u64, limit: usize) -> LogRead {
        let from = usize::try_from(after).expect("fits");
        let entries: Vec<Entry> = self
            .entries
            .iter()
            .enumerate()
            .skip(from)
            .take(limit)
            .map(|(i, (doc, _, bytes))| Entry {
                seq: i as u64 + 1,
                doc_id: *doc.as_uuid().as_bytes(),
                bytes: bytes.clone(),
            })
            .collect();
        let through = entries.last().map_or(after, |e| e.seq);
        LogRead::entries(
            entries,
            through,
            self.hash_at(through).unwrap_or([0; 32]),
            self.head(),
        )
    }

    fn hash_at(&self, seq: u64) -> Option<[u8; 32]> {
        let i = usize::try_from(seq).ok()?.checked_sub(1)?;
        self.entries.get(i).map(|e| e.1)
    }
}

struct Device {
    store: Store,
    sync: DeviceSync,
    _dir: tempfile::TempDir,
    synced: bool,
    closed_with: Option<ErrorFrame>,
}

/// The simulated world: devices, one relay, and the frames in flight.
struct World {
    devices: Vec<Device>,
    log: Log,
    tokens: HashMap<String, bool>,
    sessions: BTreeMap<usize, RelaySync>,
    to_relay: VecDeque<(usize, Vec<u8>)>,
    to_device: VecDeque<(usize, Vec<u8>)>,
    bytes_to_relay: usize,
    bytes_to_device: usize,
    frames: usize,
    /// Devices whose `Received` frames are withheld (a slow reader).
    stalled: Vec<usize>,
    window: u64,
}

impl World {
    fn new(n: usize) -> World {
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
                    _dir: dir,
                    synced: false,
                    closed_with: None,
                }
            })
            .collect();
        World {
            devices,
            log: Log::default(),
            tokens: (0..n).map(|i| (format!("token{i}"), true)).collect(),
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

    fn connect(&mut self, d: usize) {
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

    fn disconnect(&mut self, d: usize) {
        self.sessions.remove(&d);
        self.to_relay.retain(|(i, _)| *i != d);
        self.to_device.retain(|(i, _)| *i != d);
    }

    fn device_input(&mut self, d: usize, input: DeviceInput<'_>) {
        let effects = self.devices[d].sync.handle(input);
        for effect in effects {
            self.device_effect(d, effect);
        }
    }

    fn device_effect(&mut self, d: usize, effect: DeviceEffect) {
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
                        envelope: Envelope {
                            doc_id: *c.doc_id.as_uuid().as_bytes(),
                            kind: c.kind,
                            scope: Default::default(),
                            bytes: c.bytes,
                        },
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
                            doc_id: RecordId::from_uuid(uuid::Uuid::from_bytes(e.doc_id)),
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
            DeviceEffect::Acknowledged(seqs) => {
                self.devices[d].store.acknowledge(&seqs).expect("ack");
            }
            DeviceEffect::Reset { .. } => {
                self.devices[d].store.reset_sync().expect("reset");
            }
            DeviceEffect::Synced => self.devices[d].synced = true,
            // This simulator's relay knows no users and does not filter: every device sees
            // every record, and a replica's own User record is its user's (as crm-node does
            // for a relay that names no user).
            DeviceEffect::Access(_) => {
                self.devices[d].store.release_local_user().expect("release");
            }
            DeviceEffect::Grant(_) | DeviceEffect::Purge(_) => {}
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
                let result = match (workspace.as_str(), self.tokens.get(&token)) {
                    ("acme", Some(true)) => Ok(Authorized {
                        head: self.log.head(),
                        cursor_known: cursor
                            .is_some_and(|c| self.log.hash_at(c.seq) == Some(c.hash)),
                        access: crm_sync::Access::default(),
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
                let result = self.log.store(&changes);
                self.relay_input(d, RelayInput::Stored(result));
                let head = self.log.head();
                if head > before {
                    let others: Vec<usize> =
                        self.sessions.keys().copied().filter(|o| *o != d).collect();
                    for o in others {
                        self.relay_input(o, RelayInput::NewHead(head));
                    }
                }
            }
            RelayEffect::Read { after, limit } => {
                let read = self.log.read(after, limit);
                self.relay_input(d, RelayInput::Read(read));
            }
            RelayEffect::Close => {
                self.sessions.remove(&d);
            }
        }
    }

    /// Delivers frames, in an order picked by `seed`, until nothing moves.
    fn run_until_quiescent(&mut self, seed: u64) {
        let mut rng = seed | 1;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 1_000_000, "no quiescence");
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

    fn edit(&mut self, d: usize, f: impl FnOnce(&mut Store)) {
        f(&mut self.devices[d].store);
        if self.sessions.contains_key(&d) {
            self.device_input(d, DeviceInput::LocalChanges);
        }
    }
}

fn account(store: &mut Store, name: &str) -> RecordId {
    let mut e = Edit::new(Kind::Account);
    e.set("name", name).expect("valid");
    store.create(&e).expect("create").id
}

fn set(store: &mut Store, id: RecordId, field: &str, value: &str) {
    let mut e = Edit::new(Kind::Account);
    e.set(field, value).expect("valid");
    store.edit(id, &e).expect("edit");
}

fn assert_converged(world: &World) {
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

#[test]
fn offline_edits_on_three_devices_converge_through_the_relay() {
    for seed in 1..=5 {
        let mut w = World::new(3);
        // Device 0 creates a shared record and everyone syncs.
        let shared = account(&mut w.devices[0].store, "ACME");
        for d in 0..3 {
            w.connect(d);
        }
        w.run_until_quiescent(seed);
        assert_converged(&w);
        // Everyone goes offline and edits.
        for d in 0..3 {
            w.disconnect(d);
        }
        set(&mut w.devices[0].store, shared, "industry", "retail");
        set(&mut w.devices[1].store, shared, "website", "acme.cn");
        for d in 0..3 {
            set(
                &mut w.devices[d].store,
                shared,
                "grade",
                ["vip", "key", "low"][d],
            );
            for i in 0..20 {
                account(&mut w.devices[d].store, &format!("device {d} account {i}"));
            }
        }
        for d in 0..3 {
            w.connect(d);
        }
        w.run_until_quiescent(seed * 7);
        assert_converged(&w);
        let record = w.devices[2].store.get(shared).expect("shared");
        assert_eq!(
            record.get("industry").map(|v| v.display()),
            Some("retail".into())
        );
        assert_eq!(
            record.get("website").map(|v| v.display()),
            Some("acme.cn".into())
        );
        assert_eq!(
            record.conflicts["grade"].len(),
            3,
            "all three grades stay visible"
        );
        // Live: an edit while connected reaches the others.
        w.edit(1, |s| set(s, shared, "industry", "wholesale"));
        w.run_until_quiescent(seed * 13);
        assert_converged(&w);
        let record = w.devices[0].store.get(shared).expect("shared");
        assert_eq!(
            record.get("industry").map(|v| v.display()),
            Some("wholesale".into())
        );
    }
}

#[test]
fn a_reconnect_with_nothing_new_costs_the_same_whatever_the_size() {
    let mut costs = Vec::new();
    for records in [20, 400] {
        let mut w = World::new(2);
        for i in 0..records {
            account(&mut w.devices[0].store, &format!("account {i}"));
        }
        w.connect(0);
        w.connect(1);
        w.run_until_quiescent(3);
        assert_converged(&w);
        w.disconnect(0);
        w.disconnect(1);
        let (up, down, frames) = (w.bytes_to_relay, w.bytes_to_device, w.frames);
        w.connect(1);
        w.run_until_quiescent(5);
        assert!(w.devices[1].synced);
        let cost = (
            w.bytes_to_relay - up + w.bytes_to_device - down,
            w.frames - frames,
        );
        assert!(cost.0 < 1024, "reconnect cost {} bytes", cost.0);
        costs.push(cost);
    }
    // Two frames (Hello, Welcome) either way; the bytes differ only by the varint width of
    // the cursor and head (a few bytes), not by anything per record.
    assert_eq!(costs[0].1, costs[1].1, "frames");
    assert!(costs[1].0.abs_diff(costs[0].0) <= 8, "{costs:?}");
}

#[test]
fn a_relay_restored_from_an_older_backup_gets_everything_back() {
    let mut w = World::new(3);
    let a = account(&mut w.devices[0].store, "before the backup");
    w.connect(0);
    w.connect(1);
    w.run_until_quiescent(1);
    let backup = w.log.clone();
    // After the backup: more work reaches the relay, then the relay is restored.
    w.edit(0, |s| set(s, a, "industry", "lost in the restore"));
    w.edit(1, |s| {
        account(s, "also lost in the restore");
    });
    w.run_until_quiescent(2);
    assert!(w.devices[0].synced && w.devices[1].synced);
    w.disconnect(0);
    w.disconnect(1);
    w.log = backup;
    // A third device joins the restored relay and writes first, so positions are reused.
    account(&mut w.devices[2].store, "written after the restore");
    w.connect(2);
    w.run_until_quiescent(3);
    w.connect(0);
    w.connect(1);
    w.run_until_quiescent(4);
    // A fresh device then gets everything, including what the backup had lost.
    w.run_until_quiescent(5);
    assert_converged(&w);
    let record = w.devices[2].store.get(a).expect("present");
    assert_eq!(
        record.get("industry").map(|v| v.display()),
        Some("lost in the restore".into())
    );
    assert_eq!(
        w.devices[2]
            .store
            .count(Kind::Account, false)
            .expect("count"),
        3
    );
}

#[test]
fn bad_and_revoked_tokens_are_refused_with_a_code() {
    let mut w = World::new(2);
    account(&mut w.devices[0].store, "kept locally");
    w.tokens.insert("token0".into(), false);
    w.tokens.remove("token1");
    w.connect(0);
    w.connect(1);
    w.run_until_quiescent(1);
    assert_eq!(
        w.devices[0].closed_with.as_ref().map(|e| e.code),
        Some(ErrorCode::REVOKED)
    );
    assert_eq!(
        w.devices[1].closed_with.as_ref().map(|e| e.code),
        Some(ErrorCode::UNAUTHENTICATED)
    );
    assert_eq!(w.log.head(), 0, "nothing stored");
    assert!(
        w.devices[0].store.outbox_len().expect("outbox") > 0,
        "local work stays in the outbox"
    );
}

#[test]
fn a_slow_reader_holds_at_most_one_window() {
    let mut w = World::new(2);
    w.window = 40;
    for i in 0..300 {
        account(&mut w.devices[0].store, &format!("account {i}"));
    }
    w.connect(0);
    w.run_until_quiescent(1);
    w.stalled.push(1);
    w.connect(1);
    w.run_until_quiescent(2);
    let session = w.sessions.get(&1).expect("session open");
    assert!(session.unconfirmed() <= 40, "{}", session.unconfirmed());
    assert!(!w.devices[1].synced);
    // Once it reads again it catches up.
    w.stalled.clear();
    w.disconnect(1);
    w.connect(1);
    w.run_until_quiescent(3);
    assert_converged(&w);
}

#[test]
fn a_pushed_batch_with_garbage_is_refused_whole() {
    let mut w = World::new(1);
    account(&mut w.devices[0].store, "valid");
    w.connect(0);
    w.run_until_quiescent(1);
    let head = w.log.head();
    let result = w.log.store(&[
        Envelope {
            doc_id: [1; 16],
            kind: "account".into(),
            scope: Default::default(),
            bytes: w.devices[0].store.changes_after(0, 1).expect("log")[0]
                .change
                .bytes
                .clone(),
        },
        Envelope {
            doc_id: [2; 16],
            kind: "account".into(),
            scope: Default::default(),
            bytes: b"not an automerge change".to_vec(),
        },
    ]);
    assert_eq!(result.map_err(|e| e.code), Err(ErrorCode::INVALID_CHANGE));
    assert_eq!(w.log.head(), head);
}

/// The device refuses local changes over the relay's limit at edit time with the model's
/// constant: it must be the protocol's.
#[test]
fn the_models_change_limit_is_the_protocols() {
    assert_eq!(crm_model::MAX_CHANGE_BYTES, crm_sync::MAX_CHANGE_BYTES);
}
