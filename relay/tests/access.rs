//! Access control at the relay, over real WebSocket connections: identity bound to the token
//! (the author rule), users and teams written by admins only, entries filtered per user in
//! the log, the live tail and bootstrap pages, grants and purges when a record is
//! reassigned, access changes told to live sessions, and wiped devices.

mod common;

use std::time::Duration;

use common::{Client, Relay};
use crm_model::automerge::{ActorId, Automerge};
use crm_model::{Author, Edit, Kind, RecordId, Role, Stamp};
use crm_relay::WorkspaceId;
use crm_sync::{DocId, Envelope, ErrorCode, Message, Outcome, Refusal, Scope};

/// A user of the directory with a device.
struct Person {
    id: RecordId,
    device: crm_relay::DeviceId,
    token: String,
    author: Author,
}

fn person(relay: &Relay, ws: WorkspaceId, name: &str, role: Role, teams: &[&str]) -> Person {
    let teams: Vec<String> = teams.iter().map(|t| t.to_string()).collect();
    let user = relay.blocking(|| {
        relay
            .store
            .add_user(ws, name, None, role, &teams)
            .expect("user")
    });
    let added = relay.blocking(|| relay.store.add_device(ws, name).expect("device"));
    Person {
        id: user.id,
        device: added.device.id,
        token: added.token.expose().to_string(),
        author: Author::new(name, "laptop")
            .with_ids(user.id.to_string(), added.device.id.to_string()),
    }
}

fn doc_id(id: RecordId) -> DocId {
    *id.as_uuid().as_bytes()
}

/// An account record document owned by `owner`, made by `by`.
struct Account {
    id: RecordId,
    doc: Automerge,
}

impl Account {
    fn create(by: &Person, name: &str, owner: RecordId) -> (Account, Envelope) {
        let id = RecordId::new();
        let mut edit = Edit::new(Kind::Account);
        edit.set("name", name).expect("name");
        edit.set("owner", &owner.to_string()).expect("owner");
        let doc = crm_model::doc::create(
            id,
            &edit,
            Stamp {
                author: &by.author,
                now: chrono::Utc::now(),
            },
            ActorId::random(),
        )
        .expect("create");
        let mut account = Account { id, doc };
        let env = account.envelope(owner);
        (account, env)
    }

    fn edit(&mut self, by: &Author, field: &str, value: &str, owner: RecordId) -> Envelope {
        let mut edit = Edit::new(Kind::Account);
        edit.set(field, value).expect("value");
        self.doc = std::mem::take(&mut self.doc).with_actor(ActorId::random());
        crm_model::doc::apply_edit(
            &mut self.doc,
            &edit,
            Stamp {
                author: by,
                now: chrono::Utc::now(),
            },
        )
        .expect("edit");
        self.envelope(owner)
    }

    fn envelope(&mut self, owner: RecordId) -> Envelope {
        let bytes = self
            .doc
            .get_last_local_change()
            .expect("a change")
            .raw_bytes()
            .to_vec();
        Envelope {
            doc_id: doc_id(self.id),
            kind: "account".into(),
            scope: Scope {
                owner: Some(doc_id(owner)),
                assignee: None,
                teams: Vec::new(),
            },
            bytes,
        }
    }
}

/// Receives until a message `want` accepts arrives, confirming `Changes` on the way; the
/// docs of every `Changes` entry seen are collected.
async fn until(
    client: &mut Client,
    seen: &mut Vec<DocId>,
    want: impl Fn(&Message) -> bool,
) -> Message {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = client
            .recv_within(left)
            .await
            .expect("the awaited message in time");
        if let Message::Changes(c) = &m {
            seen.extend(c.entries.iter().map(|e| e.doc_id));
            client.confirm(c).await;
        }
        if want(&m) {
            return m;
        }
    }
}

/// The documents a bootstrap sends.
async fn bootstrap_docs(relay: &Relay, ws: WorkspaceId, token: &str) -> Vec<DocId> {
    let (mut client, _) = Client::bootstrap(relay, ws, token).await;
    let mut docs = Vec::new();
    loop {
        match client.recv().await {
            Message::Documents(d) => {
                docs.extend(d.docs.iter().map(|s| s.doc_id));
                client
                    .send(&Message::DocumentsReceived(crm_sync::DocumentsReceived {
                        page: d.page,
                    }))
                    .await;
                if d.done.is_some() {
                    return docs;
                }
            }
            other => panic!("expected Documents, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_gets_what_they_may_see_and_records_move_with_their_owner() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    relay.blocking(|| {
        relay.store.add_team(ws, "South", None).expect("team");
        relay.store.add_team(ws, "North", None).expect("team");
    });
    let ann = person(&relay, ws, "ann", Role::Admin, &[]);
    let rui = person(&relay, ws, "rui", Role::SalesRep, &["South"]);
    let sam = person(&relay, ws, "sam", Role::SalesRep, &["South"]);
    let ola = person(&relay, ws, "ola", Role::SalesRep, &["North"]);

    // The admin files one account for each team's rep.
    let (mut south, south_env) = Account::create(&ann, "South Co", sam.id);
    let (mut north, north_env) = Account::create(&ann, "North Co", ola.id);
    let (mut admin, _) = Client::join(&relay, ws, &ann.token, None).await;
    let ack = admin.push(1, vec![south_env, north_env]).await;
    let head = *ack.seqs.iter().max().expect("seqs");

    // Rui (South) gets the directory and South's account; the cursor passes North's.
    let (mut rep, welcome) = Client::join(&relay, ws, &rui.token, None).await;
    assert_eq!(welcome.access.name, "rui");
    assert_eq!(welcome.access.role, "sales_rep");
    assert_eq!(welcome.access.user, doc_id(rui.id));
    let (entries, through, _) = rep.pull_until(head).await;
    assert_eq!(through, head, "the cursor passes what rui may not see");
    let docs: Vec<DocId> = entries.iter().map(|e| e.doc_id).collect();
    assert!(docs.contains(&doc_id(south.id)));
    assert!(
        !docs.contains(&doc_id(north.id)),
        "North's account never reaches rui"
    );
    assert!(
        docs.contains(&doc_id(ola.id)),
        "every user record is readable"
    );
    let (mut other, _) = Client::join(&relay, ws, &ola.token, None).await;
    let (entries, _, _) = other.pull_until(head).await;
    assert!(entries.iter().all(|e| e.doc_id != doc_id(south.id)));

    // North's account is reassigned to sam (South): rui is granted it whole, live; ola's
    // session is told to purge it.
    let moved = north.edit(&ann.author, "owner", &sam.id.to_string(), sam.id);
    admin.push(2, vec![moved]).await;
    let mut seen = Vec::new();
    let grant = until(&mut rep, &mut seen, |m| matches!(m, Message::Grant(_))).await;
    let Message::Grant(grant) = grant else {
        unreachable!()
    };
    assert_eq!(grant.docs.len(), 1);
    let state = &grant.docs[0];
    assert_eq!(state.doc_id, doc_id(north.id));
    let loaded = common::load(state);
    let record = crm_model::doc::read(&loaded, None).expect("the whole record");
    assert_eq!(record.id, north.id);
    assert_eq!(
        loaded.get_changes(&[]).len(),
        2,
        "its creation and the reassignment: the whole history"
    );
    let mut seen = Vec::new();
    let purge = until(&mut other, &mut seen, |m| matches!(m, Message::Purge(_))).await;
    assert_eq!(
        purge,
        Message::Purge(crm_sync::Purge {
            docs: vec![doc_id(north.id)]
        })
    );
    // Later edits of it reach rui as entries, and no longer reach ola.
    let later = north.edit(&ann.author, "industry", "retail", sam.id);
    let ack = admin.push(3, vec![later]).await;
    let mut seen = Vec::new();
    until(
        &mut rep,
        &mut seen,
        |m| matches!(m, Message::Changes(c) if c.through >= ack.seqs[0]),
    )
    .await;
    assert!(seen.contains(&doc_id(north.id)));
    let _ = south.edit(&ann.author, "industry", "retail", sam.id);

    // A bootstrap of rui's carries both accounts now; ola's neither.
    let boot = bootstrap_docs(&relay, ws, &rui.token).await;
    assert!(boot.contains(&doc_id(south.id)) && boot.contains(&doc_id(north.id)));
    let boot = bootstrap_docs(&relay, ws, &ola.token).await;
    assert!(!boot.contains(&doc_id(south.id)) && !boot.contains(&doc_id(north.id)));
    assert!(
        boot.contains(&doc_id(ola.id)),
        "the directory is in every bootstrap"
    );

    // A role change reaches the live session as a new Access.
    relay.blocking(|| {
        relay
            .store
            .edit_user(
                ws,
                "rui",
                &crm_relay::service::UserEdit {
                    role: Some(Role::SupportAgent),
                    ..Default::default()
                },
            )
            .expect("edit")
    });
    let mut seen = Vec::new();
    let access = until(&mut rep, &mut seen, |m| matches!(m, Message::Access(_))).await;
    let Message::Access(access) = access else {
        unreachable!()
    };
    assert_eq!(access.role, "support_agent");
    assert_ne!(access.key, welcome.access.key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_pushes_as_someone_else_or_changes_users_without_being_an_admin() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    let ann = person(&relay, ws, "ann", Role::Admin, &[]);
    let rui = person(&relay, ws, "rui", Role::SalesRep, &[]);
    let (mut rep, _) = Client::join(&relay, ws, &rui.token, None).await;
    // A change that names ann, pushed with rui's token: refused alone, the session goes on.
    let (_, forged) = Account::create(&ann, "Forged", rui.id);
    let ack = rep.push(1, vec![forged]).await;
    let why = refusal(&ack.results[0]);
    assert_eq!(why.code, ErrorCode::WRONG_AUTHOR, "{}", why.reason);
    assert!(why.reason.contains("ann"), "{}", why.reason);
    // Rui's own account goes through; an edit of rui's user record does not.
    let (_, mine) = Account::create(&rui, "Mine", rui.id);
    assert_eq!(rep.push(2, vec![mine]).await.seqs.len(), 1);
    let mut me = Automerge::new();
    relay.blocking(|| {
        relay
            .store
            .store()
            .document_changes(ws, &[(doc_id(rui.id), 0)], None, &mut |c| {
                me.load_incremental(&c.bytes).expect("load");
                true
            })
            .expect("changes")
    });
    let mut me = me.with_actor(ActorId::random());
    let mut promote = Edit::new(Kind::User);
    promote.set("role", "admin").expect("role");
    crm_model::doc::apply_edit(
        &mut me,
        &promote,
        Stamp {
            author: &rui.author,
            now: chrono::Utc::now(),
        },
    )
    .expect("edit");
    let bytes = me
        .get_last_local_change()
        .expect("change")
        .raw_bytes()
        .to_vec();
    let ack = rep
        .push(
            3,
            vec![Envelope {
                doc_id: doc_id(rui.id),
                kind: "user".into(),
                scope: Scope::default(),
                bytes,
            }],
        )
        .await;
    let why = refusal(&ack.results[0]);
    assert_eq!(why.code, ErrorCode::FORBIDDEN, "{}", why.reason);
    assert!(why.reason.contains("only admins"), "{}", why.reason);
    let users = relay.blocking(|| relay.store.users(ws).expect("users"));
    let rui_now = users.iter().find(|u| u.name == "rui").expect("rui");
    assert_eq!(rui_now.role, Role::SalesRep, "nothing of it is stored");

    // A support agent creating a deal: refused with 403, by a hand-made client.
    let sue = person(&relay, ws, "sue", Role::SupportAgent, &[]);
    let (mut agent, _) = Client::join(&relay, ws, &sue.token, None).await;
    let deal = RecordId::new();
    let mut edit = Edit::new(Kind::Opportunity);
    edit.set("name", "Side deal").expect("name");
    edit.set("owner", &sue.id.to_string()).expect("owner");
    let doc = crm_model::doc::create(
        deal,
        &edit,
        Stamp {
            author: &sue.author,
            now: chrono::Utc::now(),
        },
        ActorId::random(),
    )
    .expect("create");
    let creation = doc.get_changes(&[]).remove(0).raw_bytes().to_vec();
    let ack = agent
        .push(
            1,
            vec![Envelope {
                doc_id: doc_id(deal),
                kind: "opportunity".into(),
                scope: Scope::default(),
                bytes: creation,
            }],
        )
        .await;
    let why = refusal(&ack.results[0]);
    assert_eq!(why.code, ErrorCode::FORBIDDEN, "{}", why.reason);
    assert!(why.reason.contains("opportunities"), "{}", why.reason);
    let kept = relay.blocking(|| {
        relay
            .store
            .store()
            .document_scope(ws, doc_id(deal))
            .expect("lookup")
    });
    assert!(kept.is_none(), "a refused creation makes no record");

    // A wiped device is told so at its next connection.
    relay.blocking(|| relay.store.wipe_device(rui.device).expect("wipe"));
    let mut client = Client::connect(&relay).await;
    client.send(&common::hello(ws, &rui.token, None)).await;
    assert_eq!(client.expect_error().await.code, ErrorCode::WIPED);
    // A user made inactive is refused.
    let sam = person(&relay, ws, "sam", Role::SalesRep, &[]);
    relay.blocking(|| {
        relay
            .store
            .edit_user(
                ws,
                "sam",
                &crm_relay::service::UserEdit {
                    active: Some(false),
                    ..Default::default()
                },
            )
            .expect("edit")
    });
    let mut client = Client::connect(&relay).await;
    client.send(&common::hello(ws, &sam.token, None)).await;
    assert_eq!(client.expect_error().await.code, ErrorCode::FORBIDDEN);
}

/// The refusal in an outcome.
fn refusal(outcome: &Outcome) -> &Refusal {
    match outcome {
        Outcome::Refused(why) => why,
        Outcome::Stored(seq) => panic!("expected a refusal, the change was stored at {seq}"),
    }
}

/// Issue 14: one push mixing changes a sales rep may make with ones they may not. The
/// allowed ones are stored and acknowledged; each other one is refused with its code, and a
/// change built on a refused one is refused too; nothing refused reaches anyone; the scope a
/// change's envelope claims is not believed; a manager may reassign what a rep may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_decided_change_by_change_and_nothing_refused_reaches_anyone() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    relay.blocking(|| {
        relay.store.add_team(ws, "South", None).expect("team");
        relay.store.add_team(ws, "North", None).expect("team");
    });
    let ann = person(&relay, ws, "ann", Role::Admin, &[]);
    let rui = person(&relay, ws, "rui", Role::SalesRep, &["South"]);
    let sam = person(&relay, ws, "sam", Role::SalesRep, &["South"]);
    let ola = person(&relay, ws, "ola", Role::SalesRep, &["North"]);
    let max = person(&relay, ws, "max", Role::SalesManager, &[]);
    relay.blocking(|| {
        relay
            .store
            .edit_team(
                ws,
                "South",
                &crm_relay::service::TeamEdit {
                    manager: Some("max".into()),
                    ..Default::default()
                },
            )
            .expect("manager")
    });

    let (mut south, south_env) = Account::create(&ann, "South Co", sam.id);
    let (mut north, north_env) = Account::create(&ann, "North Co", ola.id);
    let (mut admin, _) = Client::join(&relay, ws, &ann.token, None).await;
    admin.push(1, vec![south_env, north_env]).await;

    let (mut rep, _) = Client::join(&relay, ws, &rui.token, None).await;
    let (mut watcher, _) = Client::join(&relay, ws, &ola.token, None).await;
    let before = relay.blocking(|| relay.store.head(ws).expect("head").0);
    let teammate = south.edit(&rui.author, "industry", "retail", sam.id);
    let mut north_as_stored = Account {
        id: north.id,
        doc: north.doc.fork(),
    };
    let not_mine = north.edit(&rui.author, "industry", "mining", ola.id);
    let built_on_it = north.edit(&rui.author, "website", "north.example", ola.id);
    let (mut own_account, own) = Account::create(&rui, "Rui's Co", rui.id);
    // Rui's own record, whose envelope claims it is ola's: the relay reads the owner from
    // the change, so ola never sees it.
    let mut own_lying = own.clone();
    own_lying.scope.owner = Some(doc_id(ola.id));
    // (Made on a copy: the later edits of South Co below do not build on it.)
    let mut copy = Account {
        id: south.id,
        doc: south.doc.fork(),
    };
    let grab = copy.edit(&rui.author, "owner", &rui.id.to_string(), sam.id);
    let ack = rep
        .push(
            1,
            vec![teammate, not_mine, built_on_it, own_lying, grab.clone()],
        )
        .await;
    assert!(matches!(ack.results[0], Outcome::Stored(_)), "{ack:?}");
    let why = refusal(&ack.results[1]);
    assert_eq!(why.code, ErrorCode::FORBIDDEN);
    assert!(why.reason.contains("outside their teams"), "{}", why.reason);
    assert_eq!(refusal(&ack.results[2]).code, ErrorCode::BUILDS_ON_REFUSED);
    assert!(matches!(ack.results[3], Outcome::Stored(_)), "{ack:?}");
    let why = refusal(&ack.results[4]);
    assert_eq!(why.code, ErrorCode::FORBIDDEN);
    assert!(why.reason.contains("reassign"), "{}", why.reason);
    assert_eq!(ack.seqs.len(), 2);

    // The log holds exactly the two allowed changes more.
    let head = relay.blocking(|| relay.store.head(ws).expect("head").0);
    assert_eq!(head, before + 2);
    // Ola (North) got none of rui's changes: not the refused edit of ola's own account,
    // not rui's account whose envelope named ola.
    let (entries, _, _) = watcher.pull_until(head).await;
    let own_doc = own.doc_id;
    assert!(
        entries.iter().all(|e| e.doc_id != own_doc),
        "the envelope's claimed owner is not believed"
    );
    let north_changes: Vec<_> = entries
        .iter()
        .filter(|e| e.doc_id == doc_id(north.id))
        .collect();
    assert_eq!(north_changes.len(), 1, "only its creation: {entries:?}");

    // A hand-made change that replaces the record's fields map (which would drop its owner
    // and teams from every device's view of it): refused, though the record is rui's.
    let mut forged = own_account.doc.fork().with_actor(ActorId::random());
    forged
        .transact_with(
            |_| {
                crm_model::automerge::transaction::CommitOptions::default()
                    .with_message(rui.author.to_message())
            },
            |tx| {
                use crm_model::automerge::transaction::Transactable as _;
                tx.put_object(
                    crm_model::automerge::ROOT,
                    "fields",
                    crm_model::automerge::ObjType::Map,
                )
            },
        )
        .expect("a new fields map");
    own_account.doc = forged;
    let replace = own_account.envelope(rui.id);
    let ack = rep.push(2, vec![replace]).await;
    let why = refusal(&ack.results[0]);
    assert_eq!(why.code, ErrorCode::FORBIDDEN);
    assert!(why.reason.contains("fields map"), "{}", why.reason);

    // The session goes on: a later allowed push is stored.
    let more = south.edit(&rui.author, "short_name", "南方", sam.id);
    let ack = rep.push(3, vec![more]).await;
    assert_eq!(ack.results, [Outcome::Stored(head + 1)]);

    // Max manages South, sam's team: he may reassign sam's account; ola's (North) not.
    let (mut manager, _) = Client::join(&relay, ws, &max.token, None).await;
    let moved = south.edit(&max.author, "owner", &rui.id.to_string(), rui.id);
    let not_his = north_as_stored.edit(&max.author, "owner", &max.id.to_string(), max.id);
    let ack = manager.push(1, vec![moved, not_his]).await;
    assert!(matches!(ack.results[0], Outcome::Stored(_)), "{ack:?}");
    assert_eq!(refusal(&ack.results[1]).code, ErrorCode::FORBIDDEN);
    let scope = relay.blocking(|| {
        relay
            .store
            .store()
            .document_scope(ws, doc_id(south.id))
            .expect("scope")
    });
    assert!(
        scope
            .and_then(|(_, s)| s)
            .is_some_and(|s| s.starts_with(&rui.id.to_string())),
        "the relay's scope follows the owner the change set"
    );
}
