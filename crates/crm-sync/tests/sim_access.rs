//! Access control through the simulated relay: devices of users with roles and teams, the
//! relay filtering the log by each record's kind and scope, granting and purging records
//! that move, and re-syncing a device whose user's access changed. Every test ends with
//! every device holding exactly the records its user may see (see
//! `simulator::access::assert_scoped`).
//!
//! The directory is records: users and teams are `user` and `team` records in the log
//! (made by the relay, as `crm-relay user|team add` does), and a role or team change is an
//! edit of a `user` record by the admin's device.

#[allow(dead_code, reason = "each test file uses a part of the simulator")]
mod simulator;

use crm_model::{Edit, Kind, RecordId, Role};
use crm_store::Store;
use proptest::prelude::*;
use simulator::World;
use simulator::access::{Person, assert_scoped, held};

const ADMIN: usize = 0;

/// Ada the admin (device 0, in no team), Rui and Sam reps of North (devices 1 and 2), Ola a
/// rep of South (device 3).
fn acme() -> World {
    World::with_directory(
        &["North", "South"],
        &[
            Person {
                name: "Ada",
                role: Role::Admin,
                teams: &[],
            },
            Person {
                name: "Rui",
                role: Role::SalesRep,
                teams: &["North"],
            },
            Person {
                name: "Sam",
                role: Role::SalesRep,
                teams: &["North"],
            },
            Person {
                name: "Ola",
                role: Role::SalesRep,
                teams: &["South"],
            },
        ],
    )
}

fn create(
    store: &mut Store,
    kind: Kind,
    name: &str,
    owner: RecordId,
    teams: &[RecordId],
) -> RecordId {
    let mut e = Edit::new(kind);
    e.set("name", name).expect("valid");
    e.set("owner", &owner.to_string()).expect("valid");
    if !teams.is_empty() {
        e.set("teams", &ids(teams)).expect("valid");
    }
    store.create(&e).expect("create").id
}

/// A new owner and teams, in one change.
fn reassign(store: &mut Store, id: RecordId, kind: Kind, owner: RecordId, teams: &[RecordId]) {
    let mut e = Edit::new(kind);
    e.set("owner", &owner.to_string()).expect("valid");
    if teams.is_empty() {
        e.unset("teams").expect("valid");
    } else {
        e.set("teams", &ids(teams)).expect("valid");
    }
    store.edit(id, &e).expect("reassign");
}

fn edit_user(store: &mut Store, user: RecordId, field: &str, value: &str) {
    let mut e = Edit::new(Kind::User);
    e.set(field, value).expect("valid");
    store.edit(user, &e).expect("edit user");
}

fn ids(ids: &[RecordId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn holds(w: &mut World, d: usize, id: RecordId) -> bool {
    held(&mut w.devices[d].store)
        .values()
        .any(|ids| ids.contains(&id))
}

#[test]
fn a_record_reassigned_from_one_team_to_another_follows_its_scope_on_every_device() {
    for seed in 1..=3 {
        let mut w = acme();
        let (rui, sam, ola) = (w.user(1), w.user(2), w.user(3));
        let (north, south) = (w.team("North"), w.team("South"));
        for d in 0..4 {
            w.connect(d);
        }
        w.run_until_quiescent(seed);
        assert_scoped(&mut w, ADMIN);

        // The admin creates records owned by the reps; one of Ola's is shared with North.
        let (a1, a2, o1, a3) = w.edit(ADMIN, |s| {
            (
                create(s, Kind::Account, "Rui's account", rui, &[]),
                create(s, Kind::Account, "Sam's account", sam, &[]),
                create(s, Kind::Opportunity, "Ola's deal", ola, &[]),
                create(s, Kind::Account, "Ola's, shared", ola, &[north]),
            )
        });
        w.run_until_quiescent(seed * 3);
        assert_scoped(&mut w, ADMIN);
        assert!(
            holds(&mut w, 2, a1) && holds(&mut w, 2, a3),
            "a teammate's and a shared record"
        );
        assert!(!holds(&mut w, 1, o1) && holds(&mut w, 3, o1));
        assert!(!holds(&mut w, 3, a1));

        // Sam and Ola go offline; Rui's account moves to Ola and South, and is edited there.
        w.disconnect(2);
        w.disconnect(3);
        w.edit(ADMIN, |s| {
            reassign(s, a1, Kind::Account, ola, &[south]);
            simulator::set(s, a1, "industry", "retail");
        });
        w.run_until_quiescent(seed * 5);
        assert!(!holds(&mut w, 1, a1), "purged on Rui's device, online");
        assert_eq!(w.devices[1].purged, 1);
        // Sam's account goes to Ola, then to Rui, while both are offline: two pushes (an
        // envelope carries the record's scope when it is pushed, so moves pushed together
        // show the relay only where the record ended).
        w.edit(ADMIN, |s| {
            reassign(s, a2, Kind::Account, ola, &[south]);
            simulator::set(s, a2, "industry", "seen by South");
        });
        w.run_until_quiescent(seed * 7);
        w.edit(ADMIN, |s| {
            reassign(s, a2, Kind::Account, rui, &[north]);
            simulator::set(s, a2, "industry", "back in North");
        });
        w.run_until_quiescent(seed * 7);
        assert!(holds(&mut w, 1, a2), "granted to Rui");

        // Ola comes back first: granted a1 (created out of her sight) and a2, purged a2.
        let before = (w.devices[3].granted, w.devices[3].purged);
        w.connect(3);
        w.run_until_quiescent(seed * 11);
        assert!(holds(&mut w, 3, a1) && !holds(&mut w, 3, a2));
        assert_eq!(
            (
                w.devices[3].granted - before.0,
                w.devices[3].purged - before.1
            ),
            (2, 1)
        );
        // Then Sam: a1 leaves North; a2 leaves and comes back.
        w.connect(2);
        w.run_until_quiescent(seed * 13);
        assert!(!holds(&mut w, 2, a1) && holds(&mut w, 2, a2));
        assert_scoped(&mut w, ADMIN);
        assert!(
            w.devices.iter().all(|d| d.rescopes == 0),
            "no access changed yet"
        );

        // Ola becomes a support agent while online: every account, no opportunity. Her
        // device re-syncs its scope.
        w.edit(ADMIN, |s| edit_user(s, ola, "role", "support_agent"));
        w.run_until_quiescent(seed * 17);
        assert_eq!(w.devices[3].rescopes, 1);
        assert!(!holds(&mut w, 3, o1) && holds(&mut w, 3, a2));
        assert_scoped(&mut w, ADMIN);

        // Rui moves to South while offline: he re-syncs when he connects; Sam, online, loses
        // a teammate and re-syncs at once.
        w.disconnect(1);
        w.edit(ADMIN, |s| edit_user(s, rui, "teams", &south.to_string()));
        w.run_until_quiescent(seed * 19);
        assert_eq!(w.devices[2].rescopes, 1);
        w.connect(1);
        w.run_until_quiescent(seed * 23);
        assert_eq!(w.devices[1].rescopes, 1);
        assert!(holds(&mut w, 1, a1), "South's account, now Rui's team's");
        assert_scoped(&mut w, ADMIN);
    }
}

/// Issue 14: Rui edits his teammate Sam's account offline while the admin moves him to
/// South. When he reconnects the relay refuses the edit; his replica keeps it as a refused
/// edit, takes it out of the record (which converges with the relay's), and nobody else ever
/// receives it. Back in North, he retries it and it goes through.
#[test]
fn an_edit_made_offline_under_a_lost_team_is_refused_kept_and_converges() {
    for seed in 1..=3 {
        let mut w = acme();
        let (rui, sam) = (w.user(1), w.user(2));
        let (north, south) = (w.team("North"), w.team("South"));
        for d in 0..4 {
            w.connect(d);
        }
        w.run_until_quiescent(seed);
        let a = w.edit(ADMIN, |s| {
            create(s, Kind::Account, "Sam's account", sam, &[])
        });
        w.run_until_quiescent(seed);
        assert!(holds(&mut w, 1, a), "a teammate's account");
        w.disconnect(1);
        w.edit(1, |s| simulator::set(s, a, "industry", "typed offline"));
        w.edit(ADMIN, |s| edit_user(s, rui, "teams", &south.to_string()));
        w.run_until_quiescent(seed * 3);
        w.connect(1);
        w.run_until_quiescent(seed * 5);
        assert_scoped(&mut w, ADMIN);
        let rejected = w.devices[1].store.rejected().expect("rejected");
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].record, a);
        assert_eq!(rejected[0].code, crm_sync::ErrorCode::FORBIDDEN.0);
        assert!(format!("{:?}", rejected[0].fields).contains("typed offline"));
        for d in [ADMIN, 2, 3] {
            if holds(&mut w, d, a) {
                let r = w.devices[d].store.get(a).expect("record");
                assert!(
                    !format!("{:?}", r.fields).contains("typed offline"),
                    "device {d}"
                );
            }
        }
        assert!(
            w.log
                .entries
                .iter()
                .all(|e| !String::from_utf8_lossy(&e.bytes).contains("typed offline")),
            "the relay stored none of it"
        );
        // Back in North, Rui retries: it is stored, and reaches Sam.
        w.edit(ADMIN, |s| edit_user(s, rui, "teams", &north.to_string()));
        w.run_until_quiescent(seed * 7);
        let id = rejected[0].id;
        w.edit(1, |s| s.retry_rejected(id).expect("retry"));
        w.run_until_quiescent(seed * 11);
        assert_scoped(&mut w, ADMIN);
        assert!(w.devices[1].store.rejected().expect("rejected").is_empty());
        let r = w.devices[2].store.get(a).expect("record");
        assert!(format!("{:?}", r.fields).contains("typed offline"));
    }
}

/// One step of the random scenario.
#[derive(Clone, Debug)]
enum Step {
    /// The admin creates an account or an opportunity owned by rep `owner` (1..=3), shared
    /// with the teams in `teams` (bit 0 North, bit 1 South).
    Create {
        opportunity: bool,
        owner: usize,
        teams: u8,
    },
    /// The admin gives the `record`-th record created (modulo) a new owner and teams.
    Reassign {
        record: usize,
        owner: usize,
        teams: u8,
    },
    /// The admin changes a rep's role.
    Role {
        user: usize,
        role: Role,
    },
    /// The admin moves a rep to one team.
    Team {
        user: usize,
        team: usize,
    },
    /// Rep `user` (1..=3) tags the `record`-th of the records their replica holds, if
    /// their role, as their replica knows it, allows it. Made offline under a role the
    /// relay has since changed, the relay may refuse it.
    Edit {
        user: usize,
        record: usize,
    },
    Online(usize),
    Offline(usize),
    Run(u64),
}

fn step(edits: bool) -> impl Strategy<Value = Step> {
    let role = prop::sample::select(vec![
        Role::Admin,
        Role::SalesManager,
        Role::SalesRep,
        Role::SupportAgent,
    ]);
    prop_oneof![
        3 => (any::<bool>(), 1..=3usize, 0..4u8)
            .prop_map(|(opportunity, owner, teams)| Step::Create { opportunity, owner, teams }),
        5 => (any::<usize>(), 1..=3usize, 0..4u8)
            .prop_map(|(record, owner, teams)| Step::Reassign { record, owner, teams }),
        1 => (1..=3usize, role).prop_map(|(user, role)| Step::Role { user, role }),
        1 => (1..=3usize, 0..2usize).prop_map(|(user, team)| Step::Team { user, team }),
        if edits { 8 } else { 0 } => (1..=3usize, any::<usize>())
            .prop_map(|(user, record)| Step::Edit { user, record }),
        2 => (0..4usize).prop_map(Step::Online),
        2 => (0..4usize).prop_map(Step::Offline),
        4 => any::<u64>().prop_map(Step::Run),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Any interleaving of record creations and reassignments, role and team changes, and
    /// devices going offline and online ends with every device holding exactly what its
    /// user may see, at the admin's heads.
    #[test]
    fn any_reassignments_and_role_changes_end_with_every_device_holding_its_scope(
        steps in prop::collection::vec(step(false), 8..40),
        seed in any::<u64>(),
    ) {
        scenario(steps, seed)?;
    }

    /// The same with reps' edits between the role and team changes: afterwards every device
    /// agrees with the relay on every record it may see, and every edit a rep made is in the
    /// relay's record or in that rep's refused edits. KNOWN FAILURE (issue 14 stays open):
    /// in some interleavings a record the rep may no longer see stays on their device after
    /// the relay refused their edit of it. Run with `cargo test -p crm-sync --test sim_access
    /// -- --ignored`.
    #[test]
    #[ignore = "known failure: a record out of the rep's scope can stay after a refused edit (issue 14)"]
    fn reps_edits_between_role_changes_converge_and_refusals_are_kept(
        steps in prop::collection::vec(step(true), 8..40),
        seed in any::<u64>(),
    ) {
        scenario(steps, seed)?;
    }
}

/// One random scenario of the proptests above.
fn scenario(steps: Vec<Step>, seed: u64) -> Result<(), TestCaseError> {
    let mut w = acme();
    let users: Vec<RecordId> = (0..4).map(|d| w.user(d)).collect();
    let teams = [w.team("North"), w.team("South")];
    let pick = |mask: u8| -> Vec<RecordId> {
        (0..2)
            .filter(|t| mask & (1 << t) != 0)
            .map(|t| teams[t])
            .collect()
    };
    // Everyone starts online; the admin's replica holds the directory before it names
    // anyone as an owner.
    for d in 0..4 {
        w.connect(d);
    }
    w.run_until_quiescent(seed);
    let mut records: Vec<(RecordId, Kind)> = Vec::new();
    // (device, record, tag) of every edit a rep's replica took.
    let mut typed: Vec<(usize, RecordId, String)> = Vec::new();
    for (i, s) in steps.into_iter().enumerate() {
        match s {
            Step::Create {
                opportunity,
                owner,
                teams,
            } => {
                let kind = if opportunity {
                    Kind::Opportunity
                } else {
                    Kind::Account
                };
                let id = w.edit(ADMIN, |st| {
                    create(st, kind, &format!("record {i}"), users[owner], &pick(teams))
                });
                records.push((id, kind));
            }
            Step::Reassign {
                record,
                owner,
                teams,
            } => {
                if let Some((id, kind)) = records.get(record % records.len().max(1)).copied() {
                    w.edit(ADMIN, |st| {
                        reassign(st, id, kind, users[owner], &pick(teams))
                    });
                }
            }
            Step::Role { user, role } => {
                w.edit(ADMIN, |st| {
                    edit_user(st, users[user], "role", role.as_str())
                });
            }
            Step::Team { user, team } => {
                w.edit(ADMIN, |st| {
                    edit_user(st, users[user], "teams", &teams[team].to_string())
                });
            }
            Step::Edit { user, record } => {
                let mine: Vec<(RecordId, Kind)> = records
                    .iter()
                    .copied()
                    .filter(|(id, _)| holds(&mut w, user, *id))
                    .collect();
                if let Some((id, kind)) = mine.get(record % mine.len().max(1)).copied() {
                    let tag = format!("t{i}");
                    let mut e = Edit::new(kind);
                    e.tag(&tag).expect("valid");
                    if w.edit(user, |st| st.edit(id, &e)).is_ok() {
                        typed.push((user, id, tag));
                    }
                }
            }
            Step::Online(d) => {
                if !w.is_connected(d) {
                    w.connect(d);
                }
            }
            Step::Offline(d) => w.disconnect(d),
            Step::Run(s) => w.run_until_quiescent(s),
        }
    }
    for d in 0..4 {
        if !w.is_connected(d) {
            w.connect(d);
        }
    }
    w.run_until_quiescent(seed);
    assert_scoped(&mut w, ADMIN);
    for (d, id, tag) in &typed {
        let accepted = w.devices[ADMIN]
            .store
            .get(*id)
            .is_ok_and(|r| r.tags.contains(tag));
        let refused = w.devices[*d]
            .store
            .rejected()
            .expect("rejected")
            .iter()
            .any(|r| {
                r.record == *id
                    && r.fields.iter().any(|f| {
                        let has = |v: &crm_store::RejectedField, typed: bool| {
                            let value = if typed { &v.typed } else { &v.old };
                            value.as_array().is_some_and(|tags| {
                                tags.iter().any(|t| t.as_str() == Some(tag.as_str()))
                            })
                        };
                        f.field == "tags" && has(f, true) && !has(f, false)
                    })
            });
        prop_assert!(
            accepted != refused,
            "device {d}'s tag {tag} on {id}: in the relay's record {accepted}, refused {refused}"
        );
    }
    Ok(())
}
