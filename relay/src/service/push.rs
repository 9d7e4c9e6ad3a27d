//! Storing a pushed batch: the push rule (`crate::validate`) applied to what the storing
//! transaction knows, and the positions allocated under the workspace's lock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use crm_model::shape::Shape;
use crm_model::{Kind, RecordId, Scope, Viewer};
use crm_sync::{DocId, Envelope, ErrorCode, Hash, MAX_BATCH_CHANGES, Outcome, Refusal};
use uuid::Uuid;

use super::Relay;
use super::access::AccessState;
use super::log::{ENTRY_OVERHEAD, READ_BUDGET, RawRead, RawRow};
use crate::ids::{DeviceId, WorkspaceId};
use crate::store::{Append, DirectoryWrite, Known, NewChange, NewDocument, PushError};
use crate::validate;

/// Who pushes: the device and its user, as its token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pusher {
    pub device: DeviceId,
    /// The user's record id; `None` for a device added before users existed (an admin's).
    pub user_id: Option<RecordId>,
    /// The user's name. What the user may write is decided per change, from the
    /// workspace's directory as of the storing transaction.
    pub user: String,
}

/// What storing a batch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBatch {
    /// The outcome of each change of the batch, in order: its log position, or why it was
    /// refused.
    pub outcomes: Vec<Outcome>,
    /// The log positions of the changes stored (new or duplicate), in batch order.
    pub seqs: Vec<u64>,
    /// Changes refused (not stored).
    pub refused: usize,
    /// The log's head after the commit.
    pub head: u64,
    /// Changes that were new.
    pub stored: usize,
    /// Changes already in the log (acknowledged with their earlier position).
    pub duplicates: usize,
    /// What [`Relay::read_raw`] after `head − stored` would return, when the batch's new
    /// changes are exactly that range and fit one read: the other sessions of the
    /// workspace take it instead of each reading the same rows back (see `hub.rs`).
    pub tail: Option<RawRead>,
}

/// The push rule asks the storing transaction's lookups (changes earlier in the batch it
/// keeps itself).
impl validate::Known for Known {
    fn document_of_change(&mut self, hash: &Hash) -> Result<Option<DocId>, PushError> {
        Ok(self.changes.get(hash).map(|c| c.doc_id))
    }
}

impl Relay {
    /// Validates a pushed batch and stores it in one transaction, allocating the next
    /// sequence numbers of the workspace's log. Returns only after the commit. A change
    /// already in the log keeps its position; nothing of a refused batch is stored.
    pub fn store_batch(
        &self,
        workspace: WorkspaceId,
        pusher: &Pusher,
        changes: &[Envelope],
    ) -> Result<StoredBatch, PushError> {
        let device = pusher.device;
        // Intact changes only, before touching the database (see `validate`).
        let checked = validate::parse(changes)?;
        let arrived_at = Utc::now();
        let docs: Vec<DocId> = {
            let mut seen = HashSet::new();
            checked
                .iter()
                .map(|c| c.envelope.doc_id)
                .filter(|d| seen.insert(*d))
                .collect()
        };
        let hashes: Vec<Hash> = {
            let mut seen = HashSet::new();
            checked
                .iter()
                .flat_map(|c| std::iter::once(c.hash).chain(c.deps.iter().copied()))
                .filter(|h| seen.insert(*h))
                .collect()
        };
        // The pusher's rights, from the cached directory; the storing transaction checks
        // that the cache is the version it stores under, and a stale cache is reloaded and
        // the batch decided again.
        let mut state = match pusher.user_id {
            Some(_) => Some(self.access.peek(self.store.as_ref(), workspace)?),
            None => None,
        };
        for _ in 0..4 {
            let mut result = None;
            let outcome =
                self.store
                    .append(workspace, device, &docs, &hashes, &mut |known: Known| {
                        if let Some(state) = &state
                            && state.version != known.access_version
                        {
                            return Err(PushError::StaleAccess);
                        }
                        let writer = Writer::of(pusher, state.as_deref());
                        let (append, batch) =
                            plan(workspace, pusher, &writer, &checked, known, arrived_at)?;
                        result = Some(batch);
                        Ok(append)
                    });
            match outcome {
                Err(PushError::StaleAccess) => {
                    state = Some(self.access.reload(self.store.as_ref(), workspace)?);
                }
                Err(e) => return Err(e),
                Ok(()) => {
                    let batch =
                        result.ok_or_else(|| PushError::Store(crate::store::StoreError::Worker))?;
                    // The rows just stored are what every session reads next.
                    if let Some(tail) = &batch.tail {
                        self.decoded.fill(workspace, &tail.rows);
                    }
                    return Ok(batch);
                }
            }
        }
        Err(PushError::StaleAccess)
    }
}

/// What the pusher may write.
enum Writer<'a> {
    /// A device with every right: an admin, or a device added before users existed.
    Unrestricted,
    /// A user the directory holds, and the directory (for the owner rule).
    User {
        viewer: Arc<Viewer>,
        state: &'a AccessState,
    },
    /// A user the directory does not hold (any more): every new change is refused.
    Unknown,
}

impl<'a> Writer<'a> {
    fn of(pusher: &Pusher, state: Option<&'a AccessState>) -> Writer<'a> {
        match (pusher.user_id, state) {
            (Some(user), Some(state)) => match state.viewer_cached(user) {
                Some(viewer) if viewer.role == crm_model::Role::Admin && viewer.active => {
                    Writer::Unrestricted
                }
                Some(viewer) => Writer::User { viewer, state },
                None => Writer::Unknown,
            },
            _ => Writer::Unrestricted,
        }
    }

    /// Whether this writer may make a change that does `touches` to a record.
    fn decide(
        &self,
        kind: &str,
        created: bool,
        before: &Scope,
        after: &Scope,
        touches: &crm_model::shape::Touches,
        name: &str,
    ) -> Result<(), String> {
        match self {
            Writer::Unrestricted => Ok(()),
            Writer::Unknown => Err(format!(
                "{name} is not a user of this workspace's directory any more"
            )),
            Writer::User { viewer, state } => match kind.parse::<Kind>() {
                Ok(kind) => crm_model::authorize_write(
                    viewer,
                    &state.directory,
                    kind,
                    created,
                    before,
                    after,
                    touches,
                ),
                Err(_) => Err(format!(
                    "a {} record is a kind this relay does not know; only admins write it",
                    kind
                )),
            },
        }
    }
}

/// The shape of a document from its changes in log order (changes that do not decode are
/// skipped, as a document skips changes it cannot apply).
pub(crate) fn shape_of(changes: &[Vec<u8>]) -> Shape {
    let mut shape = Shape::default();
    for bytes in changes {
        if let Ok(change) = crm_model::automerge::Change::try_from(bytes.as_slice())
            && let Some(ops) = crm_model::shape::decode(&change)
        {
            shape.apply(&ops);
        }
    }
    shape
}

/// Decides a batch against what the store knows: which changes are new, their positions,
/// and the documents they create.
fn plan(
    workspace: WorkspaceId,
    pusher: &Pusher,
    writer: &Writer<'_>,
    checked: &[validate::Parsed<'_>],
    mut known: Known,
    arrived_at: chrono::DateTime<Utc>,
) -> Result<(Append, StoredBatch), PushError> {
    let device = pusher.device;
    if !known.device_active {
        return Err(PushError::Revoked);
    }
    // The latest shape of each document touched, as the batch goes.
    let mut shapes: HashMap<DocId, Shape> = HashMap::new();
    // Changes refused so far: a change that builds on one is refused too.
    let mut refused_hashes: HashSet<Hash> = HashSet::new();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(checked.len());
    let mut refused = 0;
    // The latest scope of each document touched, as the batch goes.
    let mut scopes: HashMap<DocId, Option<String>> = HashMap::new();
    // The changes of `user` and `team` records, to project them into the directory.
    let mut directory: HashMap<DocId, (String, Vec<Vec<u8>>)> = HashMap::new();
    let mut head = known.head;
    let mut rule = validate::Batch::default();
    // Documents of this batch already checked or created, and their kinds.
    let mut kinds: HashMap<DocId, String> = HashMap::new();
    // Changes appended by this batch, and their positions.
    let mut appended_at: HashMap<Hash, u64> = HashMap::new();
    let mut append = Append::default();
    let mut seqs = Vec::with_capacity(checked.len());
    let mut duplicates = 0;
    // The new entries, as a read of them would return them (see `StoredBatch::tail`).
    let mut entries: Vec<RawRow> = Vec::new();
    let mut entries_bytes = 0;
    let mut last_hash = [0; 32];
    for (index, c) in checked.iter().enumerate() {
        let doc = c.envelope.doc_id;
        let kind = c.envelope.kind.as_str();
        let known_kind = match kinds.get(&doc) {
            Some(k) => Some(k.clone()),
            None => match known.docs.get(&doc) {
                Some(d) if d.workspace != workspace => {
                    return Err(PushError::WrongWorkspace {
                        index,
                        doc: Uuid::from_bytes(doc),
                    });
                }
                Some(d) => Some(d.kind.clone()),
                None => None,
            },
        };
        if let Some(known) = &known_kind
            && known != kind
        {
            return Err(PushError::KindMismatch {
                index,
                doc: Uuid::from_bytes(doc),
                known: known.clone(),
                sent: kind.to_string(),
            });
        }
        let existing = known
            .changes
            .get(&c.hash)
            .map(|k| k.seq)
            .or_else(|| appended_at.get(&c.hash).copied());
        if let Some(existing) = existing {
            seqs.push(existing);
            outcomes.push(Outcome::Stored(existing));
            duplicates += 1;
            continue;
        }
        let decided = decide(
            index,
            c,
            pusher,
            writer,
            &refused_hashes,
            &shapes,
            known_kind.is_none(),
            &rule,
            &mut known,
        )?;
        let (after, scope_after) = match decided {
            Ok(found) => found,
            Err((code, reason)) => {
                refused_hashes.insert(c.hash);
                refused += 1;
                outcomes.push(Outcome::Refused(Refusal {
                    code,
                    reason: truncate(reason),
                }));
                continue;
            }
        };
        rule.accept(c);
        shapes.insert(doc, after.clone());
        head += 1;
        if known_kind.is_none() {
            append.documents.push(NewDocument {
                doc_id: doc,
                kind: kind.to_string(),
                first_seq: head,
                created_by: device,
            });
            kinds.insert(doc, kind.to_string());
        }
        // The latest pushed scope of a document is the one a later filter reads; a change
        // that moves it keeps the scope before, so a device that could see the record
        // before and not after purges it (and the other way round, is granted it).
        // The scope is the document's, read from its shape: what the envelope says is a
        // device's claim and is not trusted.
        let mut scope = scope_after;
        scope.teams.sort();
        scope.teams.truncate(crm_sync::MAX_SCOPE_TEAMS);
        let encoded = crate::store::encode_scope(&scope);
        let current = match scopes.get(&doc) {
            Some(s) => Some(s.clone()),
            None => known.docs.get(&doc).map(|d| d.scope.clone()),
        };
        let prev_scope = match current {
            Some(before) if before != encoded => Some(before.unwrap_or_default()),
            _ => None,
        };
        scopes.insert(doc, encoded.clone());
        if kind == "user" || kind == "team" {
            directory
                .entry(doc)
                .or_insert_with(|| {
                    (
                        kind.to_string(),
                        known.directory.remove(&doc).unwrap_or_default(),
                    )
                })
                .1
                .push(c.envelope.bytes.clone());
        }
        let teams = (!scope.teams.is_empty()).then(|| {
            let ids: Vec<String> = scope.teams.iter().map(|t| t.to_string()).collect();
            ids.join(",")
        });
        append.changes.push(NewChange {
            seq: head,
            hash: c.hash,
            doc_id: doc,
            kind: kind.to_string(),
            deps: c.deps_bytes(),
            author: device,
            arrived_at,
            bytes: c.envelope.bytes.clone(),
            owner: scope.owner.map(|o| o.to_string()),
            teams,
            scope: encoded.clone(),
            prev_scope: prev_scope.clone(),
            shape: after.to_json(),
        });
        appended_at.insert(c.hash, head);
        seqs.push(head);
        outcomes.push(Outcome::Stored(head));
        entries_bytes += c.envelope.bytes.len() + ENTRY_OVERHEAD;
        entries.push(RawRow {
            seq: head,
            doc_id: doc,
            hash: c.hash,
            bytes: c.envelope.bytes.clone(),
            kind: kind.to_string(),
            scope: encoded,
            decoded: super::log::DecodedRow::with(Arc::new(super::log::Decoded::new(
                kind.parse().ok(),
                scope.clone(),
                prev_scope.as_deref(),
            ))),
            prev_scope,
        });
        last_hash = c.hash;
    }
    append.head = head;
    for (doc_id, (kind, changes)) in directory {
        if let Some(attrs) = project(&kind, doc_id, &changes) {
            append.directory.push(DirectoryWrite { doc_id, attrs });
        }
    }
    // `read` would stop at its frame budget or its limit; such a batch has no tail.
    let tail =
        (!entries.is_empty() && entries.len() <= MAX_BATCH_CHANGES && entries_bytes <= READ_BUDGET)
            .then_some(RawRead {
                rows: entries,
                through: head,
                through_hash: last_hash,
                head,
            });
    let batch = StoredBatch {
        stored: checked.len() - duplicates - refused,
        duplicates,
        refused,
        outcomes,
        seqs,
        head,
        tail,
    };
    Ok((append, batch))
}

/// A change's fate: the document's shape and scope after it, or why it is refused.
type Decision = Result<(Shape, Scope), (ErrorCode, String)>;

/// Decides one new change of a batch (see `plan`): the push rule (a violation refuses the
/// whole batch), then whether it builds on a refused change, names the right author, and
/// writes only what its user may (each refuses this change alone).
#[allow(clippy::too_many_arguments)]
fn decide(
    index: usize,
    c: &validate::Parsed<'_>,
    pusher: &Pusher,
    writer: &Writer<'_>,
    refused: &HashSet<Hash>,
    shapes: &HashMap<DocId, Shape>,
    created: bool,
    rule: &validate::Batch,
    known: &mut Known,
) -> Result<Decision, PushError> {
    let doc = c.envelope.doc_id;
    if c.deps.iter().any(|d| refused.contains(d)) {
        return Ok(Err((
            ErrorCode::BUILDS_ON_REFUSED,
            "it builds on a change of this push that the relay refused".into(),
        )));
    }
    if let Err(reason) = check_author(c, pusher) {
        return Ok(Err((ErrorCode::WRONG_AUTHOR, reason)));
    }
    rule.check(index, c, !created, known)?;
    // What the change writes, read from its operations and the document's shape.
    let before = match shapes.get(&doc) {
        Some(shape) => shape.clone(),
        None => match known.docs.get(&doc).map(|d| d.shape.as_deref()) {
            None => Shape::default(),
            Some(Some(json)) => Shape::from_json(json).ok_or_else(|| {
                PushError::Store(crate::store::StoreError::Corrupt(format!(
                    "the stored shape of record {} does not parse",
                    Uuid::from_bytes(doc)
                )))
            })?,
            // Written by something other than this build's append: from its changes.
            Some(None) => shape_of(known.unshaped.get(&doc).map_or(&[][..], Vec::as_slice)),
        },
    };
    let mut after = before.clone();
    let touches = after.apply(&c.ops);
    if !created && touches.root.contains("fields") {
        return Ok(Err((
            ErrorCode::FORBIDDEN,
            "it replaces the record's fields map, which only its creation makes".into(),
        )));
    }
    let scope_after = after.scope();
    if let Err(reason) = writer.decide(
        &c.envelope.kind,
        created,
        &before.scope(),
        &scope_after,
        &touches,
        &pusher.user,
    ) {
        return Ok(Err((ErrorCode::FORBIDDEN, reason)));
    }
    Ok(Ok((after, scope_after)))
}

impl Pusher {
    /// A device pushing with every right and no user (tests and tools that write a store
    /// directly; a change naming an author is then refused).
    pub fn admin(device: DeviceId) -> Pusher {
        Pusher {
            device,
            user_id: None,
            user: String::new(),
        }
    }
}

/// The author rule: a change names its author in its commit message, and that must be the
/// token's user (by id once the device knows it, else by name) and device. `Err` says why
/// not.
fn check_author(c: &validate::Parsed<'_>, pusher: &Pusher) -> Result<(), String> {
    // A change that names no author (made by another tool) claims nobody: the relay files
    // it under the token's device like every change. One that names an author must name
    // the token's user.
    let Some(author) = &c.author else {
        return Ok(());
    };
    let user_ok = match (&author.user_id, pusher.user_id) {
        (Some(claimed), Some(user)) => *claimed == user.to_string(),
        (Some(_), None) => author.user == pusher.user,
        (None, _) => author.user == pusher.user,
    };
    let device_ok = author
        .device_id
        .as_ref()
        .is_none_or(|d| *d == pusher.device.to_string());
    if user_ok && device_ok {
        return Ok(());
    }
    let mut claimed = format!("{:?}", author.user);
    if let Some(d) = &author.device_id {
        claimed.push_str(&format!(" on device {d}"));
    }
    Err(format!(
        "it names {claimed} as its author, but this device's token belongs to {} (device {}); \
         a device pushes only its own user's changes",
        pusher.user, pusher.device
    ))
}

/// A refusal's reason, within the protocol's text limit.
fn truncate(mut reason: String) -> String {
    if reason.len() > crm_sync::MAX_TEXT_BYTES {
        let mut end = crm_sync::MAX_TEXT_BYTES - 3;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    reason
}

/// The directory fields of a `user` or `team` record, from its changes (JSON of
/// `DirectoryUser` or `DirectoryTeam`); `None` when the changes do not make a record.
pub(crate) fn project(kind: &str, doc: DocId, changes: &[Vec<u8>]) -> Option<String> {
    use crm_model::FieldValue;
    use crm_model::access::{DirectoryTeam, DirectoryUser};
    let mut am = crm_model::automerge::Automerge::new();
    for bytes in changes {
        // A change this document refuses stays out of it, as on every device.
        let _ = am.load_incremental(bytes);
    }
    let record = crm_model::doc::read(&am, None).ok()?;
    let id = super::access::record(doc);
    let text = |name: &str| match record.fields.get(name) {
        Some(FieldValue::Text(t)) => Some(t.clone()),
        _ => None,
    };
    let ids = |name: &str| -> Vec<RecordId> {
        match record.fields.get(name) {
            Some(FieldValue::Set(set)) => set.iter().filter_map(|s| s.parse().ok()).collect(),
            _ => Vec::new(),
        }
    };
    let json = match kind {
        "user" => serde_json::to_string(&DirectoryUser {
            id,
            name: text("name").unwrap_or_default(),
            email: text("email"),
            role: text("role")
                .and_then(|r| r.parse().ok())
                .unwrap_or(crm_model::Role::SalesRep),
            teams: ids("teams"),
            active: !matches!(record.fields.get("active"), Some(FieldValue::Bool(false)))
                && !record.archived,
        }),
        "team" => serde_json::to_string(&DirectoryTeam {
            id,
            name: text("name").unwrap_or_default(),
            manager: match record.fields.get("manager") {
                Some(FieldValue::Ref(r)) => Some(*r),
                _ => None,
            },
            members: ids("members"),
        }),
        _ => return None,
    };
    json.ok()
}
