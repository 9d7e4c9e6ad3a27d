//! Access control end to end, with a real relay and real `crm` processes: each device holds
//! exactly what its user's role lets them see, records move between devices when they are
//! reassigned (whole, with their history; purged without a trace where they leave), role
//! and team changes take effect at the next sync, and nobody pushes as somebody else.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crm_tests::{KINDS, Relay, Replica};
use serde_json::Value;

/// The read level of a role for a kind, written out here from the README's matrix (not
/// taken from the code under test).
fn read_level(role: &str, kind: &str) -> &'static str {
    match (role, kind) {
        ("admin", _) => "all",
        (_, "user" | "team" | "article" | "product") => "all",
        ("sales_manager", "campaign" | "campaign-member" | "survey" | "survey-response") => "all",
        ("sales_manager", _) => "team",
        ("sales_rep", "campaign" | "survey") => "all",
        ("sales_rep", _) => "team",
        ("support_agent", "account" | "account-relation" | "contact" | "survey") => "all",
        ("support_agent", "ticket" | "survey-response") => "all",
        ("support_agent", "activity") => "team",
        ("support_agent", _) => "none",
        _ => "none",
    }
}

/// The directory as the relay lists it: users by id (name, role) and each user's teams.
struct Org {
    users: BTreeMap<String, (String, String)>,
    teams_of: BTreeMap<String, BTreeSet<String>>,
    managed_by: BTreeMap<String, BTreeSet<String>>,
}

impl Org {
    fn read(relay: &Relay, ws: &str) -> Org {
        let mut users = BTreeMap::new();
        for u in relay
            .admin(&["user", "list", "--workspace", ws])
            .as_array()
            .expect("users")
        {
            users.insert(text(&u["id"]), (text(&u["name"]), text(&u["role"])));
        }
        let mut teams_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut managed_by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for t in relay
            .admin(&["team", "list", "--workspace", ws])
            .as_array()
            .expect("teams")
        {
            let team = text(&t["id"]);
            for member in t["users"].as_array().expect("members") {
                teams_of
                    .entry(text(member))
                    .or_default()
                    .insert(team.clone());
            }
            if let Some(m) = t["manager"].as_str() {
                managed_by
                    .entry(m.to_string())
                    .or_default()
                    .insert(team.clone());
            }
        }
        Org {
            users,
            teams_of,
            managed_by,
        }
    }

    /// Whether `user` may read `row` of `kind`.
    fn sees(&self, user: &str, kind: &str, row: &Value) -> bool {
        let role = &self.users[user].1;
        let holders: Vec<String> = ["owner", "assignee"]
            .iter()
            .filter_map(|f| row[*f].as_str().map(str::to_string))
            .collect();
        let own = holders.iter().any(|h| h == user);
        let mut mine: BTreeSet<String> = self.teams_of.get(user).cloned().unwrap_or_default();
        mine.extend(self.managed_by.get(user).cloned().unwrap_or_default());
        let team =
            own || holders.iter().any(|h| {
                self.teams_of
                    .get(h)
                    .is_some_and(|t| t.iter().any(|t| mine.contains(t)))
            }) || row["teams"].as_array().is_some_and(|t| {
                t.iter()
                    .any(|t| t.as_str().is_some_and(|t| mine.contains(t)))
            });
        match read_level(role, kind) {
            "all" => true,
            "team" => team,
            "own" => own,
            _ => false,
        }
    }
}

fn text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

fn ids(rows: &[Value]) -> BTreeSet<String> {
    rows.iter().map(|r| text(&r["id"])).collect()
}

/// A replica of `user`'s, joined and synced.
fn device_of(relay: &Relay, ws: &str, user: &str, device: &str) -> Replica {
    let r = Replica::init(user, device);
    let token = relay.token(ws, user);
    r.ok(&["join", &relay.url(), "--token", &token]);
    r.json(&["sync"]);
    r
}

/// What each kind holds on `r`, by id.
fn holdings(r: &Replica) -> BTreeMap<&'static str, BTreeSet<String>> {
    KINDS.iter().map(|k| (*k, ids(&r.list(k)))).collect()
}

/// What `user` may see of the admin's replica, by kind.
fn expected(org: &Org, admin: &Replica, user: &str) -> BTreeMap<&'static str, BTreeSet<String>> {
    KINDS
        .iter()
        .map(|k| {
            let rows = admin.list(k);
            let seen = rows
                .iter()
                .filter(|r| org.sees(user, k, r))
                .map(|r| text(&r["id"]))
                .collect();
            (*k, seen)
        })
        .collect()
}

/// The bytes of a replica's files, to look for what must not be there.
fn file_bytes(r: &Replica) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["replica.db", "replica.db-wal"] {
        if let Ok(b) = std::fs::read(r.path().join(name)) {
            all.extend(b);
        }
    }
    all
}

/// What the sqlite3 shell prints for `sql` on a replica's file.
fn sqlite3(r: &Replica, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(r.path().join("replica.db"))
        .arg(sql)
        .output()
        .expect("the sqlite3 shell (apt-get install sqlite3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    hay.windows(n.len()).any(|w| w == n)
}

#[test]
fn each_device_holds_what_its_role_allows_and_records_follow_reassignment() {
    let relay = Relay::start();
    let ws = relay.workspace("acme");
    // The admin seeds the company: its users and teams are records an admin may write, and
    // the relay's directory follows them.
    let admin = device_of(&relay, &ws, "root", "admin-laptop");
    admin.ok(&["seed", "--accounts", "60"]);
    admin.json(&["sync"]);
    let org = Org::read(&relay, &ws);
    let by_role = |role: &str| -> Vec<String> {
        org.users
            .iter()
            .filter(|(_, (_, r))| r == role)
            .map(|(id, _)| id.clone())
            .collect()
    };
    let managers = by_role("sales_manager");
    let manager = managers
        .iter()
        .find(|m| org.managed_by.contains_key(*m))
        .expect("a manager of a team")
        .clone();
    let team: String = org.managed_by[&manager]
        .iter()
        .next()
        .expect("team")
        .clone();
    let reps = by_role("sales_rep");
    let in_team: Vec<&String> = reps
        .iter()
        .filter(|r| org.teams_of.get(*r).is_some_and(|t| t.contains(&team)))
        .collect();
    assert!(
        in_team.len() >= 2,
        "two reps in the manager's team: {in_team:?}"
    );
    let other_rep = reps
        .iter()
        .find(|r| org.teams_of.get(*r).is_some_and(|t| !t.contains(&team)))
        .expect("a rep of another team")
        .clone();
    let agent = by_role("support_agent")[0].clone();
    let name = |id: &str| org.users[id].0.clone();

    let people = [
        manager.clone(),
        in_team[0].clone(),
        in_team[1].clone(),
        other_rep.clone(),
        agent.clone(),
    ];
    let devices: Vec<Replica> = people
        .iter()
        .enumerate()
        .map(|(i, p)| device_of(&relay, &ws, &name(p), &format!("device-{i}")))
        .collect();
    for (person, device) in people.iter().zip(&devices) {
        let want = expected(&org, &admin, person);
        let got = holdings(device);
        assert_eq!(
            got.iter().map(|(k, v)| (*k, v.len())).collect::<Vec<_>>(),
            want.iter().map(|(k, v)| (*k, v.len())).collect::<Vec<_>>(),
            "{} ({}) holds what the matrix allows",
            name(person),
            org.users[person].1
        );
        assert_eq!(got, want, "{} holds exactly those records", name(person));
    }
    // The relay ships no record a rep may not see: the other team's accounts are nowhere in
    // the first team's rep's file.
    let rep_a = &devices[1];
    let foreign: Vec<Value> = admin
        .list("account")
        .into_iter()
        .filter(|a| !org.sees(&people[1], "account", a))
        .collect();
    assert!(!foreign.is_empty(), "another team has accounts");
    let bytes = file_bytes(rep_a);
    for a in &foreign {
        assert!(
            !contains(&bytes, &text(&a["id"])),
            "no trace of {}",
            a["id"]
        );
    }

    // Reassign one of the first team's accounts to the other team's rep, with a note only
    // this record holds.
    let moved = admin
        .list("account")
        .into_iter()
        .find(|a| a["owner"].as_str() == Some(in_team[0].as_str()))
        .expect("an account of the first rep");
    let moved_id = text(&moved["id"]);
    let marker = format!("Reassigned-星光-{}", uuid::Uuid::now_v7());
    admin.ok(&["account", "edit", &moved_id, "--append-notes", &marker]);
    admin.json(&["sync"]);
    // A live device of the first team sees it arrive, then leave, without reconnecting.
    let mut watching = rep_a.spawn(&["sync", "--watch"]);
    let other_teams: Vec<String> = org.teams_of[&other_rep].iter().cloned().collect();
    admin.ok(&[
        "account",
        "edit",
        &moved_id,
        "--set",
        &format!("owner={other_rep}"),
        "--set",
        &format!("teams={}", other_teams.join(",")),
    ]);
    admin.json(&["sync"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids(&rep_a.list("account")).contains(&moved_id) {
        assert!(Instant::now() < deadline, "the live device never purged it");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = watching.kill();
    let _ = watching.wait();
    for (i, device) in devices.iter().enumerate() {
        device.json(&["sync"]);
        let holds = ids(&device.list("account")).contains(&moved_id);
        let should = org.sees(&people[i], "account", &admin.json(&["show", &moved_id]));
        if holds != should {
            let there = device.json(&["show", &moved_id]);
            let admin_view = admin.json(&["show", &moved_id]);
            eprintln!(
                "device: owner {} teams {} / admin: owner {} teams {} / sync {}",
                there["owner"],
                there["teams"],
                admin_view["owner"],
                admin_view["teams"],
                device.json(&["sync"])
            );
        }
        assert_eq!(holds, should, "{} after the reassignment", name(&people[i]));
        if !should {
            let bytes = file_bytes(device);
            assert!(
                !contains(&bytes, &marker),
                "{}: no trace of the notes",
                name(&people[i])
            );
            // The sqlite3 shell finds nothing of it: no document, no change, no row of the
            // account table, nothing in a dump (other records may still name its id as a
            // reference: a contact of it the user still sees).
            let dump = sqlite3(device, ".dump");
            assert!(
                !dump.contains(&marker),
                "{}: the notes in a dump",
                name(&people[i])
            );
            for table in ["documents", "rec_account"] {
                let n = sqlite3(
                    device,
                    &format!("SELECT count(*) FROM {table} WHERE id = '{moved_id}';"),
                );
                assert_eq!(n.trim(), "0", "{}: {table}", name(&people[i]));
            }
        }
    }
    // The new owner has it whole: its history goes back to its creation.
    let new_owner = &devices[3];
    let history = new_owner.json(&["history", &moved_id]);
    let admin_history = admin.json(&["history", &moved_id]);
    assert_eq!(
        history.as_array().map(Vec::len),
        admin_history.as_array().map(Vec::len),
        "the whole history"
    );
    assert!(new_owner.ok(&["show", &moved_id]).contains(&marker));

    // A role change and a team change take effect at the next sync, both ways.
    let agent_device = &devices[4];
    assert!(agent_device.list("opportunity").is_empty());
    relay.admin(&[
        "user",
        "edit",
        "--workspace",
        &ws,
        &name(&agent),
        "--role",
        "admin",
    ]);
    agent_device.json(&["sync"]);
    assert_eq!(
        ids(&agent_device.list("opportunity")),
        ids(&admin.list("opportunity")),
        "an admin now"
    );
    relay.admin(&[
        "user",
        "edit",
        "--workspace",
        &ws,
        &name(&agent),
        "--role",
        "support_agent",
    ]);
    agent_device.json(&["sync"]);
    assert!(
        agent_device.list("opportunity").is_empty(),
        "an agent again"
    );
    let rep_b = &devices[2];
    let before = ids(&rep_b.list("account"));
    relay.admin(&[
        "user",
        "edit",
        "--workspace",
        &ws,
        &name(in_team[1]),
        "--team",
        &other_teams[0],
    ]);
    rep_b.json(&["sync"]);
    let after = ids(&rep_b.list("account"));
    assert_ne!(before, after, "a team change moves what the rep holds");
    let org = Org::read(&relay, &ws);
    assert_eq!(after, expected(&org, &admin, in_team[1])["account"]);
}

#[test]
fn nobody_pushes_as_somebody_else() {
    let relay = Relay::start();
    let ws = relay.workspace("acme");
    let bob = device_of(&relay, &ws, "bob", "laptop");
    // A replica started as bob, joined with carol's token: its changes name bob, so the
    // relay would refuse them; they stay on it, visible, and everything else syncs.
    relay.token_as(&ws, "carol", "sales_rep");
    let mallory = Replica::init("bob", "stolen");
    mallory.add("account", &["--name", "Spoofed Ltd"]);
    let token = relay.token(&ws, "carol");
    mallory.ok(&["join", &relay.url(), "--token", &token]);
    let report = mallory.json(&["sync"]);
    assert!(report["held_foreign"].as_u64() >= Some(1), "{report}");
    assert_eq!(report["held_foreign_authors"][0], "bob", "{report}");
    assert_eq!(mallory.json(&["whoami"])["user"], "carol");
    bob.json(&["sync"]);
    assert!(
        bob.list("account")
            .iter()
            .all(|a| a["name"] != "Spoofed Ltd")
    );
    assert!(
        mallory
            .list("account")
            .iter()
            .any(|a| a["name"] == "Spoofed Ltd")
    );
    // A rep may not change users: the CLI refuses before writing anything (exit 2), and the
    // relay would refuse it too (relay/tests/access.rs).
    let carol = device_of(&relay, &ws, "carol", "phone");
    let carol_id = carol.json(&["whoami"])["user_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(carol.json(&["whoami"])["role"], "sales_rep");
    let out = carol.run(&["user", "edit", &carol_id, "--set", "role=admin"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sales_rep") && err.contains("users"), "{err}");
    assert_eq!(carol.json(&["status"])["pending"], 0, "nothing was written");
    // The workspace's own matrix reaches the device: once an admin takes account creation
    // away from reps, carol's replica refuses it too, before writing.
    carol.add("account", &["--name", "Allowed Ltd"]);
    relay.admin(&[
        "role",
        "set",
        "--workspace",
        &ws,
        "sales_rep",
        "account",
        "create",
        "none",
    ]);
    carol.json(&["sync"]);
    let out = carol.run(&["account", "add", "--name", "Refused Ltd"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        carol
            .list("account")
            .iter()
            .all(|a| a["name"] != "Refused Ltd")
    );
    // Another workspace's device sees nothing of this one.
    let globex = relay.workspace("globex");
    let gina = device_of(&relay, &globex, "gina", "tablet");
    assert!(gina.list("account").is_empty());
}
