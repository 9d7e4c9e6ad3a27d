//! Convergence: any interleaving of offline edits and partial syncs on two or three replicas,
//! followed by an exchange of every change in random order, random batches and with
//! duplicates, ends with identical replicas: same heads, same projections, same records.

mod common;

use std::collections::BTreeSet;

use common::{Rng, all_changes, create, records, replica, state};
use crm_model::{Edit, Kind, RecordId};
use crm_store::{RemoteChange, Store};
use proptest::prelude::*;

/// Fields the test edits, per kind, each with a small pool of values so that replicas often
/// write the same field concurrently.
const ACCOUNT_FIELDS: &[(&str, &[&str])] = &[
    ("industry", &["retail", "energy", "零售"]),
    ("grade", &["vip", "key", "normal", "low"]),
    ("size", &["1-10", "11-50", "5000+"]),
    ("employees", &["5", "50", "500"]),
    ("website", &["acme.cn", "https://www.xg.com/about"]),
    ("emails", &["a@x.com", "b@x.com, c@x.com", ""]),
    ("annual_revenue", &["100", "2500.50"]),
    ("description", &["first draft", "第二稿 second draft"]),
    ("lifecycle", &["contacted", "active", "churned"]),
    ("custom.region", &["华南", "north"]),
];
const CONTACT_FIELDS: &[(&str, &[&str])] = &[
    ("last_name", &["李", "王", "Smith"]),
    ("title", &["CEO", "CTO"]),
    ("preferred_channel", &["phone", "wechat"]),
    ("decision_maker", &["yes", "no"]),
    ("birthday", &["1990-01-02", "1985-12-31"]),
    (
        "phones",
        &["+86 755 1234 5678", "13800000000, 010-12345678"],
    ),
];
const OPPORTUNITY_FIELDS: &[(&str, &[&str])] = &[
    ("name", &["renewal", "expansion"]),
    ("stage", &["qualification", "proposal", "closed_won"]),
    ("amount", &["1000", "99.99"]),
    ("probability", &["10", "90"]),
    ("close_date", &["2026-01-31", "2026-06-30"]),
    ("competitors", &["acme", "acme, beta"]),
    ("next_step", &["call", "demo"]),
];
const TAGS: &[&str] = &["vip", "north", "south", "重要"];
const NOTES: &[&str] = &["hello", "世界", "line three\nline four"];
const KINDS: &[Kind] = &[Kind::Account, Kind::Contact, Kind::Opportunity];

fn fields(kind: Kind) -> &'static [(&'static str, &'static [&'static str])] {
    match kind {
        Kind::Account => ACCOUNT_FIELDS,
        Kind::Contact => CONTACT_FIELDS,
        _ => OPPORTUNITY_FIELDS,
    }
}

/// One thing a replica does offline, or a partial sync between two replicas. Indices are
/// taken modulo whatever they index when the action runs.
#[derive(Clone, Debug)]
enum Action {
    Set {
        replica: usize,
        target: usize,
        field: usize,
        value: usize,
    },
    Unset {
        replica: usize,
        target: usize,
        field: usize,
    },
    Tag {
        replica: usize,
        target: usize,
        tag: usize,
        add: bool,
    },
    Notes {
        replica: usize,
        target: usize,
        text: usize,
        replace: bool,
    },
    Archive {
        replica: usize,
        target: usize,
        archived: bool,
    },
    Link {
        replica: usize,
        target: usize,
        to: usize,
    },
    Create {
        replica: usize,
        kind: usize,
        name: usize,
    },
    /// Some of `from`'s changes, shuffled, reach `to`: documents may be left waiting.
    PartialSync { from: usize, to: usize, seed: u64 },
}

fn action() -> impl Strategy<Value = Action> {
    let r = 0..3_usize;
    let i = 0..16_usize;
    prop_oneof![
        6 => (r.clone(), i.clone(), i.clone(), i.clone()).prop_map(|(replica, target, field, value)| {
            Action::Set { replica, target, field, value }
        }),
        1 => (r.clone(), i.clone(), i.clone())
            .prop_map(|(replica, target, field)| Action::Unset { replica, target, field }),
        2 => (r.clone(), i.clone(), i.clone(), any::<bool>()).prop_map(|(replica, target, tag, add)| {
            Action::Tag { replica, target, tag, add }
        }),
        2 => (r.clone(), i.clone(), i.clone(), any::<bool>()).prop_map(
            |(replica, target, text, replace)| Action::Notes { replica, target, text, replace }
        ),
        1 => (r.clone(), i.clone(), any::<bool>())
            .prop_map(|(replica, target, archived)| Action::Archive { replica, target, archived }),
        2 => (r.clone(), i.clone(), i.clone())
            .prop_map(|(replica, target, to)| Action::Link { replica, target, to }),
        1 => (r.clone(), i.clone(), i.clone())
            .prop_map(|(replica, kind, name)| Action::Create { replica, kind, name }),
        1 => (r.clone(), r, any::<u64>()).prop_map(|(from, to, seed)| Action::PartialSync { from, to, seed }),
    ]
}

struct World {
    _dirs: Vec<tempfile::TempDir>,
    stores: Vec<Store>,
    /// Every record the test created, anywhere, in creation order.
    created: Vec<(RecordId, Kind)>,
}

impl World {
    fn new(n: usize) -> World {
        let mut dirs = Vec::new();
        let mut stores = Vec::new();
        for (user, device) in [("alice", "laptop"), ("bob", "phone"), ("carol", "desktop")]
            .into_iter()
            .take(n)
        {
            let (dir, store) = replica(user, device);
            dirs.push(dir);
            stores.push(store);
        }
        let first = &mut stores[0];
        let a1 = create(first, Kind::Account, &[("name", "ACME 深圳")]);
        let a2 = create(first, Kind::Account, &[("name", "星光贸易")]);
        let c1 = create(
            first,
            Kind::Contact,
            &[("last_name", "李"), ("account", &a1.to_string())],
        );
        let c2 = create(first, Kind::Contact, &[("last_name", "Smith")]);
        let o1 = create(
            first,
            Kind::Opportunity,
            &[("name", "renewal"), ("account", &a1.to_string())],
        );
        let (head, tail) = stores.split_at_mut(1);
        for other in tail {
            other
                .merge_from(&head[0])
                .expect("share the initial records");
        }
        World {
            _dirs: dirs,
            stores,
            created: vec![
                (a1, Kind::Account),
                (a2, Kind::Account),
                (c1, Kind::Contact),
                (c2, Kind::Contact),
                (o1, Kind::Opportunity),
            ],
        }
    }

    /// The records replica `r` can read, optionally only of one kind.
    fn known(&self, r: usize, kind: Option<Kind>) -> Vec<(RecordId, Kind)> {
        self.created
            .iter()
            .copied()
            .filter(|(id, k)| {
                kind.is_none_or(|want| want == *k) && self.stores[r].kind_of(*id).is_ok()
            })
            .collect()
    }

    fn pick(&self, r: usize, index: usize, kind: Option<Kind>) -> Option<(RecordId, Kind)> {
        let known = self.known(r, kind);
        (!known.is_empty()).then(|| known[index % known.len()])
    }

    fn edit(&mut self, r: usize, id: RecordId, e: &Edit) {
        self.stores[r]
            .edit(id, e)
            .unwrap_or_else(|err| panic!("replica {r}: edit {e:?} of {id}: {err}"));
    }

    fn run(&mut self, action: &Action) {
        let n = self.stores.len();
        match *action {
            Action::Set {
                replica,
                target,
                field,
                value,
            } => {
                let r = replica % n;
                let Some((id, kind)) = self.pick(r, target, None) else {
                    return;
                };
                let (name, values) = fields(kind)[field % fields(kind).len()];
                let mut e = Edit::new(kind);
                e.set(name, values[value % values.len()])
                    .expect("pool values are valid");
                self.edit(r, id, &e);
            }
            Action::Unset {
                replica,
                target,
                field,
            } => {
                let r = replica % n;
                let Some((id, kind)) = self.pick(r, target, None) else {
                    return;
                };
                let (name, _) = fields(kind)[field % fields(kind).len()];
                let mut e = Edit::new(kind);
                if e.unset(name).is_err() {
                    return; // a required field
                }
                self.edit(r, id, &e);
            }
            Action::Tag {
                replica,
                target,
                tag,
                add,
            } => {
                let r = replica % n;
                let Some((id, kind)) = self.pick(r, target, None) else {
                    return;
                };
                let mut e = Edit::new(kind);
                let tag = TAGS[tag % TAGS.len()];
                if add { e.tag(tag) } else { e.untag(tag) }.expect("valid tag");
                self.edit(r, id, &e);
            }
            Action::Notes {
                replica,
                target,
                text,
                replace,
            } => {
                let r = replica % n;
                let Some((id, kind)) = self.pick(r, target, None) else {
                    return;
                };
                let mut e = Edit::new(kind);
                let text = NOTES[text % NOTES.len()];
                if replace {
                    e.replace_notes(text)
                } else {
                    e.append_notes(text)
                }
                .expect("valid notes");
                self.edit(r, id, &e);
            }
            Action::Archive {
                replica,
                target,
                archived,
            } => {
                let r = replica % n;
                let Some((id, _)) = self.pick(r, target, None) else {
                    return;
                };
                self.stores[r]
                    .set_archived(id, archived)
                    .unwrap_or_else(|err| panic!("replica {r}: archive {id}: {err}"));
            }
            Action::Link {
                replica,
                target,
                to,
            } => {
                let r = replica % n;
                let Some((id, kind)) = self.pick(r, target, None) else {
                    return;
                };
                let (field, to_kind) = match (kind, to % 2) {
                    (Kind::Account, _) => ("parent", Kind::Account),
                    (Kind::Contact, _) => ("account", Kind::Account),
                    (_, 0) => ("account", Kind::Account),
                    (_, _) => ("primary_contact", Kind::Contact),
                };
                let Some((other, _)) = self.pick(r, to, Some(to_kind)) else {
                    return;
                };
                let mut e = Edit::new(kind);
                e.set(field, &other.to_string()).expect("valid id");
                self.edit(r, id, &e);
            }
            Action::Create {
                replica,
                kind,
                name,
            } => {
                let r = replica % n;
                let kind = KINDS[kind % KINDS.len()];
                let title = ["Nova", "新星", "Orbit"][name % 3];
                let mut e = Edit::new(kind);
                let field = if kind == Kind::Contact {
                    "last_name"
                } else {
                    "name"
                };
                e.set(field, title).expect("valid name");
                if kind != Kind::Account
                    && let Some((account, _)) = self.pick(r, name, Some(Kind::Account))
                {
                    e.set("account", &account.to_string()).expect("valid id");
                }
                let record = self.stores[r]
                    .create(&e)
                    .unwrap_or_else(|err| panic!("replica {r}: create {e:?}: {err}"));
                self.created.push((record.id, kind));
            }
            Action::PartialSync { from, to, seed } => {
                let (from, to) = (from % n, to % n);
                if from == to {
                    return;
                }
                let mut rng = Rng::new(seed);
                let mut changes = all_changes(&self.stores[from]);
                rng.shuffle(&mut changes);
                let keep = rng.below(changes.len() + 1);
                changes.truncate(keep);
                self.deliver(to, changes, &mut rng);
            }
        }
    }

    /// Applies `changes` to replica `to` in random batches, with some sent twice.
    fn deliver(&mut self, to: usize, mut changes: Vec<RemoteChange>, rng: &mut Rng) {
        let dups: Vec<RemoteChange> = changes
            .iter()
            .filter(|_| rng.below(4) == 0)
            .cloned()
            .collect();
        changes.extend(dups);
        rng.shuffle(&mut changes);
        let mut rest = &changes[..];
        while !rest.is_empty() {
            let take = (1 + rng.below(8)).min(rest.len());
            let (batch, tail) = rest.split_at(take);
            self.stores[to]
                .apply_remote_changes(batch)
                .unwrap_or_else(|err| panic!("replica {to}: apply batch: {err}"));
            rest = tail;
        }
    }

    /// Every replica sends everything it has to every other, pairs in random order, each
    /// transfer shuffled, batched and with duplicates, or as a plain `merge_from`.
    fn exchange_all(&mut self, seed: u64) {
        let mut rng = Rng::new(seed);
        let n = self.stores.len();
        let mut pairs: Vec<(usize, usize)> = (0..n)
            .flat_map(|a| (0..n).map(move |b| (a, b)))
            .filter(|(a, b)| a != b)
            .collect();
        rng.shuffle(&mut pairs);
        for (from, to) in pairs {
            if rng.below(3) == 0 {
                let (lo, hi) = self.stores.split_at_mut(from.max(to));
                let (dst, src) = if to < from {
                    (&mut lo[to], &hi[0])
                } else {
                    (&mut hi[0], &lo[from])
                };
                dst.merge_from(src).expect("merge_from");
            } else {
                let changes = all_changes(&self.stores[from]);
                self.deliver(to, changes, &mut rng);
            }
        }
    }
}

fn check_converged(world: &mut World, reindexed: usize) -> Result<(), TestCaseError> {
    let first = state(&world.stores[0]);
    prop_assert!(
        first.heads.values().all(|h| !h.is_empty()),
        "a document is still waiting for changes"
    );
    let first_records = records(&mut world.stores[0]);
    prop_assert_eq!(
        first_records.len(),
        world.created.len() + world.stores.len(),
        "every record and every user is on every replica"
    );
    let terms = ["hello", "ACME", "vip", "星光"];
    let search = |store: &Store| -> Vec<BTreeSet<RecordId>> {
        terms
            .iter()
            .map(|t| {
                store
                    .search(t, None, true, 1000)
                    .expect("search")
                    .into_iter()
                    .map(|h| h.id)
                    .collect()
            })
            .collect()
    };
    let first_search = search(&world.stores[0]);
    for (r, store) in world.stores.iter_mut().enumerate().skip(1) {
        let s = state(store);
        prop_assert_eq!(&s.heads, &first.heads, "heads of replica {}", r);
        prop_assert_eq!(
            &s.projection,
            &first.projection,
            "projection of replica {}",
            r
        );
        prop_assert_eq!(&s.conflicts, &first.conflicts, "conflicts of replica {}", r);
        prop_assert_eq!(&records(store), &first_records, "records of replica {}", r);
        prop_assert_eq!(&search(store), &first_search, "search on replica {}", r);
    }
    // Rebuilding the projections from the documents changes nothing (one replica suffices:
    // they are all identical by now).
    let n = world.stores.len();
    let store = &mut world.stores[reindexed % n];
    store.reindex().expect("reindex");
    prop_assert_eq!(store.projection_dump().expect("dump"), first.projection);
    // What is on disk is what was compared.
    let mut reopened = Store::open(world.stores[0].dir()).expect("reopen");
    prop_assert_eq!(records(&mut reopened), first_records);
    Ok(())
}

proptest! {
    #[test]
    fn replicas_converge_after_exchanging_everything(
        replicas in 2..=3_usize,
        actions in prop::collection::vec(action(), 1..16),
        seed in any::<u64>(),
    ) {
        let mut world = World::new(replicas);
        for action in &actions {
            world.run(action);
        }
        world.exchange_all(seed);
        check_converged(&mut world, usize::try_from(seed % 3).expect("small"))?;
    }
}

/// A fixed scenario with every kind of concurrent edit, so a plain `cargo test` always covers
/// conflicts, concurrent tags, notes and links regardless of what the generator draws.
#[test]
fn concurrent_edits_of_every_kind_converge() {
    let mut world = World::new(3);
    let (acme, deal) = (world.created[0].0, world.created[4].0);
    for r in 0..3 {
        let tag = TAGS[r];
        // Three different grades, none of them the default "normal" (writing the value a
        // field already holds is no change).
        world.run(&Action::Set {
            replica: r,
            target: 0,
            field: 1,
            value: [0, 1, 3][r],
        });
        world.run(&Action::Tag {
            replica: r,
            target: 0,
            tag: r,
            add: true,
        });
        world.run(&Action::Notes {
            replica: r,
            target: 0,
            text: r,
            replace: false,
        });
        // Archived on one replica, archived and restored on another: a conflict.
        if r < 2 {
            world.run(&Action::Archive {
                replica: r,
                target: 4,
                archived: true,
            });
        }
        if r == 1 {
            world.run(&Action::Archive {
                replica: r,
                target: 4,
                archived: false,
            });
        }
        world.run(&Action::Link {
            replica: r,
            target: 2,
            to: r,
        });
        world.run(&Action::Create {
            replica: r,
            kind: r,
            name: r,
        });
        assert!(world.stores[r].get(acme).expect("acme").tags.contains(tag));
    }
    world.exchange_all(42);
    check_converged(&mut world, 2).expect("converged");
    let store = &mut world.stores[0];
    let record = store.get(acme).expect("acme");
    assert_eq!(record.tags.len(), 3, "concurrent tags all survive");
    for text in &NOTES[..3] {
        assert!(record.notes.contains(text), "{:?}", record.notes);
    }
    assert_eq!(
        record.conflicts["grade"].len(),
        3,
        "three concurrent grades: {:?}",
        record.conflicts
    );
    let deal_record = store.get(deal).expect("deal");
    assert!(
        deal_record.conflicts.contains_key("archived"),
        "{:?}",
        deal_record.conflicts
    );

    // Resolving every conflict on one replica settles it everywhere once synced.
    let conflicts = store.conflicts(None).expect("conflicts");
    assert!(conflicts.len() >= 2, "{conflicts:?}");
    for c in conflicts {
        let value = match &c.values[0] {
            _ if c.field == "archived" => "false".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        store
            .resolve(c.id, &c.field, &value)
            .unwrap_or_else(|err| panic!("resolve {} {}: {err}", c.id, c.field));
    }
    world.exchange_all(7);
    check_converged(&mut world, 1).expect("converged after resolving");
    for store in &world.stores {
        assert!(store.conflicts(None).expect("conflicts").is_empty());
    }
    assert!(!world.stores[2].get(deal).expect("deal").archived);
}
