//! What the relay keeps of a record document to decide writes and read the record's scope
//! from its changes, without loading the document: the record's [`Shape`].
//!
//! An Automerge change names the objects it writes by operation id, not by field name. A
//! record document's fields live in the root `fields` map (see [`crate::doc`]), created by
//! the record's creation; a set field (`teams`) is a map inside it, whose keys are the set's
//! members. The shape remembers the `fields` map's id and, for the fields that decide who
//! may see and change the record (`owner`, `assignee`, `teams`), the operations currently
//! visible in their registers, exactly as Automerge resolves them: an operation hides the
//! operations it names as predecessors, and of concurrent visible values the one with the
//! greatest operation id (counter, then actor) wins. So [`Shape::scope`] equals the scope of
//! the merged document, whatever order concurrent changes arrived in, as long as every change
//! is folded in after its dependencies (the relay's log is causally closed per document).
//!
//! Folding a change costs decoding its operations (~10 µs for a creation) and a few map
//! lookups; the shape of a record is a few hundred bytes of JSON.

use std::collections::{BTreeMap, BTreeSet};

use automerge::legacy::{Key, ObjectId, OpId, OpType};
use automerge::{Change, ExpandedChange, ScalarValue};
use serde::{Deserialize, Serialize};

use crate::access::Scope;
use crate::id::RecordId;

const FIELDS: &str = "fields";
/// Fields held as single values that decide a record's scope.
const REGISTERS: [&str; 2] = ["owner", "assignee"];
/// Set fields that decide a record's scope.
const SETS: [&str; 1] = ["teams"];

/// An operation id, ordered as Automerge orders concurrent operations: counter, then actor
/// (lowercase hex orders as the actor's bytes do).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpRef(pub u64, pub String);

impl OpRef {
    fn of(id: &OpId) -> OpRef {
        OpRef(id.counter(), id.actor().to_hex_string())
    }

    fn key(&self) -> String {
        format!("{}@{}", self.0, self.1)
    }
}

/// A record document's shape (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// The root `fields` map, once the creation made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fields: Option<OpRef>,
    /// The visible operations of each watched field of the `fields` map, with what each
    /// put: a string, or `None` for anything else (an object, another scalar).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    registers: BTreeMap<String, Vec<(OpRef, Option<String>)>>,
    /// Maps made for watched set fields, by object id (`counter@actor`): the visible
    /// operations of each key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    sets: BTreeMap<String, BTreeMap<String, Vec<OpRef>>>,
}

/// What one change writes of a record, as write authorization reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touches {
    /// Keys of the root map the change writes (`archived`, `fields`, …).
    pub root: BTreeSet<String>,
    /// Keys of the `fields` map it writes directly (scalar fields, and set or text fields
    /// whose container it replaces).
    pub fields: BTreeSet<String>,
    /// Watched set fields whose members it adds or removes (`teams`).
    pub sets: BTreeSet<String>,
    /// Whether it writes anything else (text, list and set contents of other fields, tags,
    /// custom fields, history).
    pub other: bool,
}

impl Touches {
    /// Whether the change writes anything but the root `archived` flag.
    pub fn edits(&self) -> bool {
        self.other
            || !self.fields.is_empty()
            || !self.sets.is_empty()
            || self.root.iter().any(|k| k != "archived")
    }

    /// Whether it writes the root `archived` flag.
    pub fn archives(&self) -> bool {
        self.root.contains("archived")
    }
}

/// Decodes a change's operations. Decoding trusts actor indexes that parsing does not check,
/// so a hostile change could make it panic: that is caught, and the change is undecodable.
pub fn decode(change: &Change) -> Option<ExpandedChange> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode())).ok()
}

impl Shape {
    /// Reads a stored shape; `None` for text that is not one.
    pub fn from_json(text: &str) -> Option<Shape> {
        serde_json::from_str(text).ok()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// Folds a decoded change in (after every change it depends on) and says what it wrote.
    pub fn apply(&mut self, change: &ExpandedChange) -> Touches {
        let mut touches = Touches::default();
        let start = change.start_op.get();
        for (i, op) in change.operations.iter().enumerate() {
            let id = OpRef(start + i as u64, change.actor_id.to_hex_string());
            let preds: Vec<OpRef> = op.pred.iter().map(OpRef::of).collect();
            let obj = match &op.obj {
                ObjectId::Root => None,
                ObjectId::Id(o) => Some(OpRef::of(o)),
            };
            let key = match &op.key {
                Key::Map(k) => Some(k.to_string()),
                Key::Seq(_) => None,
            };
            match (obj, key) {
                (None, Some(key)) => {
                    if key == FIELDS
                        && self.fields.is_none()
                        && matches!(op.action, OpType::Make(_))
                    {
                        self.fields = Some(id.clone());
                    }
                    touches.root.insert(key);
                }
                (Some(obj), Some(key)) if Some(&obj) == self.fields.as_ref() => {
                    let watched = REGISTERS.contains(&key.as_str()) || SETS.contains(&key.as_str());
                    if watched {
                        let visible = self.registers.entry(key.clone()).or_default();
                        visible.retain(|(op, _)| !preds.contains(op));
                        match &op.action {
                            OpType::Put(ScalarValue::Str(s)) => {
                                visible.push((id.clone(), Some(s.to_string())));
                            }
                            OpType::Delete => {}
                            OpType::Make(_) => {
                                visible.push((id.clone(), None));
                                if SETS.contains(&key.as_str()) {
                                    self.sets.insert(id.key(), BTreeMap::new());
                                }
                            }
                            _ => visible.push((id.clone(), None)),
                        }
                    }
                    touches.fields.insert(key);
                }
                (Some(obj), key) => match (self.set_field(&obj), key) {
                    (Some(field), Some(key)) => {
                        if let Some(members) = self.sets.get_mut(&obj.key()) {
                            let visible = members.entry(key).or_default();
                            visible.retain(|op| !preds.contains(op));
                            if !matches!(op.action, OpType::Delete) {
                                visible.push(id.clone());
                            }
                            members.retain(|_, ops| !ops.is_empty());
                        }
                        touches.sets.insert(field);
                    }
                    _ => touches.other = true,
                },
                (None, None) => touches.other = true,
            }
        }
        self.registers.retain(|_, ops| !ops.is_empty());
        // A set's map that no register shows any more (replaced, or the field cleared) can
        // never be shown again: an operation an operation replaced stays replaced.
        let shown: std::collections::HashSet<String> = self
            .registers
            .values()
            .flatten()
            .map(|(op, _)| op.key())
            .collect();
        self.sets.retain(|obj, _| shown.contains(obj));
        touches
    }

    /// The watched set field whose map is `obj`, if it is one.
    fn set_field(&self, obj: &OpRef) -> Option<String> {
        if !self.sets.contains_key(&obj.key()) {
            return None;
        }
        self.registers
            .iter()
            .find_map(|(field, ops)| ops.iter().any(|(op, _)| op == obj).then(|| field.clone()))
            .or_else(|| Some(String::new()))
    }

    /// The winning value of a register: the visible operation with the greatest id.
    fn winner(&self, field: &str) -> Option<&(OpRef, Option<String>)> {
        self.registers
            .get(field)?
            .iter()
            .max_by(|a, b| a.0.cmp(&b.0))
    }

    /// The record's scope as the merged document has it.
    pub fn scope(&self) -> Scope {
        let id = |field: &str| -> Option<RecordId> {
            self.winner(field)
                .and_then(|(_, v)| v.as_deref())
                .and_then(|s| s.parse().ok())
        };
        let teams = match self.winner("teams") {
            Some((obj, None)) => self
                .sets
                .get(&obj.key())
                .map(|members| members.keys().filter_map(|k| k.parse().ok()).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Scope {
            owner: id("owner"),
            assignee: id("assignee"),
            teams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Author, Edit, Kind, Stamp, doc};
    use automerge::{ActorId, Automerge};

    fn stamp(author: &Author) -> Stamp<'_> {
        Stamp {
            author,
            now: chrono::Utc::now(),
        }
    }

    fn fold(shape: &mut Shape, document: &Automerge, from: &[automerge::ChangeHash]) -> Touches {
        let mut all = Touches::default();
        for change in document.get_changes(from) {
            let t = shape.apply(&decode(&change).expect("decodes"));
            all.root.extend(t.root);
            all.fields.extend(t.fields);
            all.sets.extend(t.sets);
            all.other |= t.other;
        }
        all
    }

    fn scope_of(document: &Automerge) -> Scope {
        let record = doc::read(document, None).expect("read");
        let id = |f: &str| match record.fields.get(f) {
            Some(crate::FieldValue::Ref(r)) => Some(*r),
            _ => None,
        };
        let mut teams: Vec<RecordId> = match record.fields.get("teams") {
            Some(crate::FieldValue::Set(s)) => s.iter().filter_map(|t| t.parse().ok()).collect(),
            _ => Vec::new(),
        };
        teams.sort();
        Scope {
            owner: id("owner"),
            assignee: id("assignee"),
            teams,
        }
    }

    fn sorted(mut s: Scope) -> Scope {
        s.teams.sort();
        s
    }

    #[test]
    fn the_shape_reads_owner_and_teams_and_what_each_change_touches() {
        let alice = Author::new("alice", "laptop");
        let (owner, team_a, team_b) = (RecordId::new(), RecordId::new(), RecordId::new());
        let mut edit = Edit::new(Kind::Opportunity);
        edit.set("name", "Big deal").expect("valid");
        edit.set("owner", &owner.to_string()).expect("valid");
        edit.set("teams", &team_a.to_string()).expect("valid");
        let mut document =
            doc::create(RecordId::new(), &edit, stamp(&alice), ActorId::random()).expect("doc");
        let mut shape = Shape::default();
        let created = fold(&mut shape, &document, &[]);
        assert!(created.root.contains("fields") && created.fields.contains("owner"));
        assert_eq!(sorted(shape.scope()), scope_of(&document));
        assert_eq!(shape.scope().owner, Some(owner));

        // An edit of the amount touches `amount` only.
        let heads = document.get_heads();
        let mut edit = Edit::new(Kind::Opportunity);
        edit.set("amount", "1000").expect("valid");
        doc::apply_edit(&mut document, &edit, stamp(&alice)).expect("edit");
        let touched = fold(&mut shape, &document, &heads);
        assert!(touched.fields.contains("amount"), "{touched:?}");
        assert!(!touched.fields.contains("owner") && !touched.archives());
        assert!(touched.edits());

        // Moving teams and owner.
        let heads = document.get_heads();
        let other = RecordId::new();
        let mut edit = Edit::new(Kind::Opportunity);
        edit.set("owner", &other.to_string()).expect("valid");
        edit.set("teams", &team_b.to_string()).expect("valid");
        doc::apply_edit(&mut document, &edit, stamp(&alice)).expect("edit");
        let touched = fold(&mut shape, &document, &heads);
        assert!(touched.fields.contains("owner") && touched.sets.contains("teams"));
        assert_eq!(sorted(shape.scope()), scope_of(&document));
        assert_eq!(shape.scope().teams, vec![team_b]);

        // Archiving touches `archived` and nothing else.
        let heads = document.get_heads();
        let mut edit = Edit::new(Kind::Opportunity);
        edit.archive(true);
        doc::apply_edit(&mut document, &edit, stamp(&alice)).expect("edit");
        let touched = fold(&mut shape, &document, &heads);
        assert!(touched.archives() && !touched.edits(), "{touched:?}");

        // The shape survives JSON.
        assert_eq!(Shape::from_json(&shape.to_json()), Some(shape));
    }

    /// Clearing a set field and setting it again makes a new map: the shape follows it and
    /// forgets the old one.
    #[test]
    fn a_cleared_and_set_again_team_list_is_read_from_its_new_map() {
        let alice = Author::new("alice", "laptop");
        let (a, b) = (RecordId::new(), RecordId::new());
        let mut edit = Edit::new(Kind::Account);
        edit.set("name", "ACME").expect("valid");
        edit.set("teams", &a.to_string()).expect("valid");
        let mut document =
            doc::create(RecordId::new(), &edit, stamp(&alice), ActorId::random()).expect("doc");
        let mut shape = Shape::default();
        fold(&mut shape, &document, &[]);
        for step in 0..2 {
            let heads = document.get_heads();
            let mut edit = Edit::new(Kind::Account);
            if step == 0 {
                edit.unset("teams").expect("valid");
            } else {
                edit.set("teams", &b.to_string()).expect("valid");
            }
            doc::apply_edit(&mut document, &edit, stamp(&alice)).expect("edit");
            fold(&mut shape, &document, &heads);
            assert_eq!(sorted(shape.scope()), scope_of(&document), "step {step}");
        }
        assert_eq!(shape.scope().teams, vec![b]);
        assert!(shape.sets.len() <= 1, "{:?}", shape.sets);
    }

    /// Concurrent owners resolve as Automerge resolves them, whatever order the relay
    /// stores them in.
    #[test]
    fn concurrent_owners_resolve_as_the_document_does() {
        let alice = Author::new("alice", "laptop");
        let mut edit = Edit::new(Kind::Account);
        edit.set("name", "ACME").expect("valid");
        let base =
            doc::create(RecordId::new(), &edit, stamp(&alice), ActorId::random()).expect("doc");
        let creation = base.get_changes(&[]);
        for _ in 0..8 {
            let mut a = base.fork();
            let mut b = base.fork();
            let (x, y) = (RecordId::new(), RecordId::new());
            let mut ea = Edit::new(Kind::Account);
            ea.set("owner", &x.to_string()).expect("valid");
            doc::apply_edit(&mut a, &ea, stamp(&alice)).expect("edit");
            let mut eb = Edit::new(Kind::Account);
            eb.set("owner", &y.to_string()).expect("valid");
            eb.set("teams", &RecordId::new().to_string())
                .expect("valid");
            doc::apply_edit(&mut b, &eb, stamp(&alice)).expect("edit");
            let ca = a.get_last_local_change().expect("change").clone();
            let cb = b.get_last_local_change().expect("change").clone();
            let mut merged = base.fork();
            merged
                .apply_changes([ca.clone(), cb.clone()])
                .expect("merge");
            for order in [[&ca, &cb], [&cb, &ca]] {
                let mut shape = Shape::default();
                for c in &creation {
                    shape.apply(&decode(c).expect("decodes"));
                }
                for c in order {
                    shape.apply(&decode(c).expect("decodes"));
                }
                assert_eq!(sorted(shape.scope()), scope_of(&merged));
            }
        }
    }
}
