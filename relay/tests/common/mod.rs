//! Helpers for the relay tests: a relay on 127.0.0.1:0 over a real SQLite file, a WebSocket
//! client speaking crm_sync frames, and Automerge changes to push.

#![allow(
    dead_code,
    reason = "each test file uses a different part of these helpers"
)]

mod backend;

/// Runs each named async test function (taking a [`Backend`]) once per backend, as
/// `NAME::sqlite` and `NAME::postgres` (on the multi-threaded runtime, where the PostgreSQL
/// client may block).
#[macro_export]
macro_rules! on_every_backend_async {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

#[allow(
    unused_imports,
    reason = "each test file uses a different part of these helpers"
)]
pub(crate) use backend::{Backend, TestDatabase, TestStore};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use automerge::transaction::Transactable as _;
use automerge::{AutoCommit, Automerge, ROOT};
use crm_relay::{AppState, Config, DeviceId, SqliteStore, WorkspaceId};
use crm_sync::{
    Changes, Cursor, DocState, Entry, Envelope, ErrorFrame, Hello, MIN_PROTOCOL_VERSION, Message,
    Outcome, PROTOCOL_VERSION, Push, Received, Welcome,
};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take before the test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// A relay serving on a free port of 127.0.0.1, over a SQLite store in a temporary directory
/// (or, with [`Relay::start_on`], a fresh PostgreSQL database).
pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    pub(crate) state: AppState,
    /// The relay's operations over its store, as the server calls them.
    pub(crate) store: crm_relay::Relay,
    pub(crate) dir: tempfile::TempDir,
    /// The PostgreSQL database, for a relay started on it.
    pg: Option<TestStore>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Relay {
    pub(crate) async fn start() -> Relay {
        Self::start_with(Config::default()).await
    }

    /// A relay on `backend`. PostgreSQL's client blocks, so a test on it runs on the
    /// multi-threaded runtime (`on_every_backend_async!`) and its store calls leave the
    /// async threads ([`Relay::blocking`]).
    pub(crate) async fn start_on(backend: Backend) -> Relay {
        if backend == Backend::Sqlite {
            return Self::start().await;
        }
        let place = tokio::task::block_in_place(|| TestStore::new(Backend::Postgres));
        let store = tokio::task::block_in_place(|| place.open());
        let mut relay = Self::serve(store, Config::default()).await;
        relay.pg = Some(place);
        relay
    }

    /// Runs `f` (store work) where blocking is allowed.
    pub(crate) fn blocking<T>(&self, f: impl FnOnce() -> T) -> T {
        if self.pg.is_some() {
            tokio::task::block_in_place(f)
        } else {
            f()
        }
    }

    pub(crate) async fn start_with(config: Config) -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = Arc::new(SqliteStore::open_or_create(dir.path()).expect("store"));
        let mut relay = Self::serve(backend, config).await;
        relay.dir = dir;
        relay
    }

    async fn serve(backend: Arc<dyn crm_relay::RelayStore>, config: Config) -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = AppState::new(backend, config);
        let store = state.relay().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crm_relay::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Relay {
            addr,
            state,
            store,
            dir,
            pg: None,
            stop: Some(stop),
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/v1/sync", self.addr)
    }

    pub(crate) fn bootstrap_url(&self) -> String {
        format!("ws://{}/v1/bootstrap", self.addr)
    }

    pub(crate) fn workspace(&self, name: &str) -> WorkspaceId {
        self.blocking(|| self.store.create_workspace(name).expect("workspace").id)
    }

    /// A device of `workspace` and its token.
    pub(crate) fn device(
        &self,
        workspace: WorkspaceId,
        user: &str,
    ) -> (crm_relay::DeviceId, String) {
        let added = self.blocking(|| {
            self.store
                .add_unbound_device(workspace, user)
                .expect("device")
        });
        (added.device.id, added.token.expose().to_string())
    }

    /// Triggers a graceful shutdown and waits for `serve` to return.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("serve returns in time")
            .expect("serve task")
            .expect("serve");
    }

    /// Every change of a workspace's log, read straight from the store.
    pub(crate) fn log(&self, workspace: WorkspaceId) -> Vec<Entry> {
        self.blocking(|| {
            self.store
                .read_raw(workspace, 0, 1000)
                .expect("read")
                .rows
                .into_iter()
                .map(|r| Entry {
                    seq: r.seq,
                    doc_id: r.doc_id,
                    bytes: r.bytes,
                })
                .collect()
        })
    }
}

/// A device's WebSocket connection, speaking crm_sync frames.
pub(crate) struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub(crate) async fn connect(relay: &Relay) -> Client {
        Self::connect_to(relay.url()).await
    }

    /// Connects to the relay's `/v1/bootstrap`.
    pub(crate) async fn connect_bootstrap(relay: &Relay) -> Client {
        Self::connect_to(relay.bootstrap_url()).await
    }

    /// Connects to a relay's URL (`ws://ADDR/v1/sync`), e.g. of a `crm-relay serve` process.
    pub(crate) async fn connect_to(url: String) -> Client {
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("connect");
        Client { ws }
    }

    /// Connects to `/v1/bootstrap` and completes the handshake.
    pub(crate) async fn bootstrap(
        relay: &Relay,
        workspace: WorkspaceId,
        token: &str,
    ) -> (Client, Welcome) {
        let mut client = Client::connect_bootstrap(relay).await;
        client.send(&hello(workspace, token, None)).await;
        match client.recv().await {
            Message::Welcome(w) => (client, w),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// The next protocol message if one arrives within `wait`.
    pub(crate) async fn recv_within(&mut self, wait: Duration) -> Option<Message> {
        tokio::time::timeout(wait, self.recv()).await.ok()
    }

    /// Connects to a relay's URL and completes the handshake for a device of `workspace`.
    pub(crate) async fn join_at(
        url: String,
        workspace: WorkspaceId,
        token: &str,
        cursor: Option<Cursor>,
    ) -> (Client, Welcome) {
        let mut client = Client::connect_to(url).await;
        client.send(&hello(workspace, token, cursor)).await;
        match client.recv().await {
            Message::Welcome(w) => (client, w),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Connects and completes the handshake for a device of `workspace`.
    pub(crate) async fn join(
        relay: &Relay,
        workspace: WorkspaceId,
        token: &str,
        cursor: Option<Cursor>,
    ) -> (Client, Welcome) {
        let mut client = Client::connect(relay).await;
        client.send(&hello(workspace, token, cursor)).await;
        match client.recv().await {
            Message::Welcome(w) => (client, w),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    pub(crate) async fn send(&mut self, message: &Message) {
        self.send_raw(WsMessage::Binary(message.encode().into()))
            .await;
    }

    pub(crate) async fn send_raw(&mut self, message: WsMessage) {
        self.ws.send(message).await.expect("send");
    }

    /// Sends a frame the relay may cut off halfway; returns whether it was sent whole.
    pub(crate) async fn send_lossy(&mut self, message: WsMessage) -> bool {
        self.ws.send(message).await.is_ok()
    }

    /// Sends a WebSocket ping and waits for its pong.
    pub(crate) async fn ping(&mut self) {
        self.send_raw(WsMessage::Ping(b"are you there".to_vec().into()))
            .await;
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a pong in time");
            match next {
                Some(Ok(WsMessage::Pong(payload))) => {
                    assert_eq!(&payload[..], b"are you there");
                    return;
                }
                Some(Ok(WsMessage::Binary(_))) => {}
                other => panic!("expected a pong, got {other:?}"),
            }
        }
    }

    /// The next protocol message; fails the test after `PATIENCE`.
    pub(crate) async fn recv(&mut self) -> Message {
        self.try_recv()
            .await
            .unwrap_or_else(|| panic!("the relay closed the connection"))
    }

    /// The next protocol message, or `None` once the relay closed the connection.
    pub(crate) async fn try_recv(&mut self) -> Option<Message> {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame in time");
            match next {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    return Some(Message::decode(&bytes).expect("a valid frame"));
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Expects an `Error` frame, then the end of the connection.
    pub(crate) async fn expect_error(&mut self) -> ErrorFrame {
        let error = loop {
            match self.recv().await {
                Message::Error(e) => break e,
                // Changes may precede the error; they are not what the test is about.
                Message::Changes(_) | Message::Ack(_) | Message::Documents(_) => {}
                other => panic!("expected Error, got {other:?}"),
            }
        };
        self.expect_closed().await;
        error
    }

    /// Expects the connection to end with no further protocol message.
    pub(crate) async fn expect_closed(&mut self) {
        if let Some(m) = self.try_recv().await {
            panic!("expected the connection to close, got {m:?}");
        }
    }

    /// Pushes a batch and returns its `Ack`, skipping any `Changes` that arrive first (they
    /// are confirmed so the relay's window stays open).
    pub(crate) async fn push(&mut self, batch: u64, changes: Vec<Envelope>) -> Acked {
        self.send(&Message::Push(Push { batch, changes })).await;
        loop {
            match self.recv().await {
                Message::Ack(ack) => {
                    assert_eq!(ack.batch, batch);
                    return Acked {
                        seqs: ack.results.iter().filter_map(Outcome::seq).collect(),
                        results: ack.results,
                    };
                }
                Message::Changes(c) => self.confirm(&c).await,
                other => panic!("expected Ack, got {other:?}"),
            }
        }
    }

    pub(crate) async fn confirm(&mut self, changes: &Changes) {
        self.send(&Message::Received(Received {
            seq: changes.through,
        }))
        .await;
    }

    /// Receives and confirms `Changes` until the log is applied through `head`; returns the
    /// entries and the last frame's cursor position and hash.
    pub(crate) async fn pull_until(&mut self, head: u64) -> (Vec<Entry>, u64, [u8; 32]) {
        let mut entries = Vec::new();
        let mut through = (0, [0; 32]);
        while through.0 < head {
            match self.recv().await {
                Message::Changes(c) => {
                    self.confirm(&c).await;
                    through = (c.through, c.through_hash);
                    entries.extend(c.entries);
                }
                other => panic!("expected Changes, got {other:?}"),
            }
        }
        (entries, through.0, through.1)
    }
}

pub(crate) fn hello(workspace: WorkspaceId, token: &str, cursor: Option<Cursor>) -> Message {
    Message::Hello(Hello {
        min_protocol: MIN_PROTOCOL_VERSION,
        max_protocol: PROTOCOL_VERSION,
        workspace: workspace.to_string(),
        token: token.to_string(),
        cursor,
    })
}

/// A record's document, to make real Automerge changes with.
pub(crate) struct Doc {
    pub(crate) id: [u8; 16],
    doc: AutoCommit,
}

impl Doc {
    pub(crate) fn new() -> Doc {
        Doc {
            id: *uuid::Uuid::now_v7().as_bytes(),
            doc: AutoCommit::new(),
        }
    }

    /// A document whose changes are made by `actor`: two such documents with the same id
    /// make different changes with the same actor and sequence number, which no Automerge
    /// document can hold together.
    pub(crate) fn with_actor(id: [u8; 16], actor: &[u8]) -> Doc {
        Doc {
            id,
            doc: AutoCommit::new().with_actor(automerge::ActorId::from(actor)),
        }
    }

    /// The heads of the document after every change made so far.
    pub(crate) fn heads(&mut self) -> Vec<automerge::ChangeHash> {
        let mut heads = self.doc.get_heads();
        heads.sort();
        heads
    }

    /// One change setting `field` to `value`, in an envelope of kind "account". The
    /// document's first change is its creation: it also puts the record's `id` and `kind`,
    /// as the relay requires of a record's first change.
    pub(crate) fn change(&mut self, field: &str, value: &str) -> Envelope {
        if self.doc.get_heads().is_empty() {
            self.doc
                .put(ROOT, "id", uuid::Uuid::from_bytes(self.id).to_string())
                .expect("put");
            self.doc.put(ROOT, "kind", "account").expect("put");
        }
        self.doc.put(ROOT, field, value).expect("put");
        self.doc.commit();
        let change = self.doc.get_last_local_change().expect("a change");
        Envelope {
            doc_id: self.id,
            kind: "account".into(),
            scope: Default::default(),
            bytes: change.raw_bytes().to_vec(),
        }
    }
}

impl Doc {
    /// [`Doc::change`], which also gives the record `scope`: the owner and teams in its
    /// `fields` map, as a record document holds them (the relay reads the scope from
    /// there). The record's first change made this way makes the `fields` map.
    pub(crate) fn scoped(&mut self, field: &str, value: &str, scope: crm_sync::Scope) -> Envelope {
        use automerge::ObjType;
        use automerge::ReadDoc as _;
        let new = self.doc.get_heads().is_empty();
        if new {
            self.doc
                .put(ROOT, "id", uuid::Uuid::from_bytes(self.id).to_string())
                .expect("put");
            self.doc.put(ROOT, "kind", "account").expect("put");
            self.doc
                .put_object(ROOT, "fields", ObjType::Map)
                .expect("fields");
        }
        let fields = match self.doc.get(ROOT, "fields").expect("get") {
            Some((_, id)) => id,
            None => panic!("a record made by Doc::change has no fields map; start with scoped"),
        };
        self.doc.put(ROOT, field, value).expect("put");
        match scope.owner {
            Some(o) => self
                .doc
                .put(&fields, "owner", uuid::Uuid::from_bytes(o).to_string())
                .expect("owner"),
            None => {
                let _ = self.doc.delete(&fields, "owner");
            }
        }
        let teams = self
            .doc
            .put_object(&fields, "teams", ObjType::Map)
            .expect("teams");
        for t in &scope.teams {
            self.doc
                .put(&teams, uuid::Uuid::from_bytes(*t).to_string(), true)
                .expect("team");
        }
        self.doc.commit();
        let change = self.doc.get_last_local_change().expect("a change");
        Envelope {
            doc_id: self.id,
            kind: "account".into(),
            scope,
            bytes: change.raw_bytes().to_vec(),
        }
    }
}

/// A bootstrap document as a device loads it: its snapshot, checked to hold exactly the
/// changes it lists, then its other changes.
pub(crate) fn load(state: &DocState) -> Automerge {
    let mut doc = if state.snapshot.is_empty() {
        Automerge::new()
    } else {
        Automerge::load(&state.snapshot).expect("the snapshot loads")
    };
    let mut held: Vec<[u8; 32]> = doc.get_changes_meta(&[]).iter().map(|m| m.hash.0).collect();
    held.sort();
    let mut listed = state.hashes.clone();
    listed.sort();
    assert_eq!(
        held, listed,
        "the snapshot holds exactly the changes it lists"
    );
    let changes: Vec<automerge::Change> = state
        .changes
        .iter()
        .map(|c| automerge::Change::try_from(c.as_slice()).expect("a change"))
        .collect();
    for c in &changes {
        assert!(
            !listed.contains(&c.hash().0),
            "a change the snapshot holds is sent again"
        );
    }
    doc.apply_changes(changes).expect("the changes apply");
    doc
}

/// A document's heads, sorted.
pub(crate) fn heads_of(doc: &Automerge) -> Vec<automerge::ChangeHash> {
    let mut heads = doc.get_heads();
    heads.sort();
    heads
}

/// The hash an Automerge change has.
pub(crate) fn hash_of(envelope: &Envelope) -> [u8; 32] {
    automerge::Change::try_from(envelope.bytes.as_slice())
        .expect("a change")
        .hash()
        .0
}

/// A plain HTTP GET; returns the status code and the body.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A store of `backend` with the workspace "acme" and one admin device of alice's, for the
/// tests that call the relay's operations directly.
pub(crate) fn store_with_device(
    backend: Backend,
) -> (TestStore, crm_relay::Relay, WorkspaceId, DeviceId) {
    let place = TestStore::new(backend);
    let store = place.relay();
    let ws = store.create_workspace("acme").expect("workspace").id;
    let device = store
        .add_unbound_device(ws, "alice")
        .expect("device")
        .device
        .id;
    (place, store, ws, device)
}

/// A real `crm-relay serve` on 127.0.0.1:0, stopped with SIGTERM (killed if dropped running).
pub(crate) struct Serving {
    child: std::process::Child,
    pub(crate) addr: String,
    pub(crate) url: String,
}

impl Serving {
    /// `crm-relay DATABASE_ARGS… serve --listen 127.0.0.1:0 SERVE_ARGS…`, once it listens.
    pub(crate) fn start(database_args: &[&str], serve_args: &[&str]) -> Serving {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_crm-relay"))
            .env_remove("CRM_RELAY_DATA")
            .env_remove("CRM_RELAY_DATABASE")
            .args(database_args)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(serve_args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Serving {
            child,
            url: format!("ws://{addr}/v1/sync"),
            addr,
        }
    }

    /// SIGTERM; the relay must exit with code 0.
    pub(crate) fn stop(mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        assert_eq!(
            self.child.wait().expect("wait").code(),
            Some(0),
            "a clean exit on SIGTERM"
        );
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An `Ack` as the tests read it.
#[derive(Debug)]
pub(crate) struct Acked {
    /// The positions of the changes stored (new or duplicates), in batch order.
    pub(crate) seqs: Vec<u64>,
    /// Every change's outcome.
    pub(crate) results: Vec<Outcome>,
}
