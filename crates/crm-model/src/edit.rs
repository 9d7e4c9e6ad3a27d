//! Edits: the validated operations that `add`, `edit` and `resolve` apply to a record.
//!
//! The field syntax is the same everywhere (CLI, import, web forms): `FIELD=VALUE` sets a
//! schema field (or `custom.NAME=VALUE` a custom one), `FIELD` alone unsets it; tags are
//! added and removed one by one; notes are replaced or appended to.

use crate::error::ValidationError;
use crate::kind::Kind;
use crate::schema::FieldDef;
use crate::value::{FieldValue, check_prose};

/// One validated operation on a record.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Set(&'static FieldDef, FieldValue),
    Unset(&'static FieldDef),
    SetCustom(String, String),
    UnsetCustom(String),
    Tag(String),
    Untag(String),
    ReplaceNotes(String),
    AppendNotes(String),
    Archive(bool),
}

/// A list of operations on one kind of record, validated against its schema as it is built.
#[derive(Clone, Debug, PartialEq)]
pub struct Edit {
    kind: Kind,
    ops: Vec<Op>,
}

impl Edit {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            ops: Vec::new(),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Looks up a schema field of this kind by name.
    pub fn field(&self, name: &str) -> Result<&'static FieldDef, ValidationError> {
        let schema = self.kind.schema();
        schema
            .field(name)
            .ok_or_else(|| ValidationError::UnknownField {
                kind: self.kind,
                field: name.to_string(),
                known: schema
                    .all_fields()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// `--set FIELD=VALUE`.
    pub fn set_assignment(&mut self, assignment: &str) -> Result<&mut Self, ValidationError> {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| ValidationError::MissingEquals(assignment.to_string()))?;
        self.set(name.trim(), value)
    }

    /// Sets `name` (a schema field, or `custom.NAME`) to the parsed `value`.
    pub fn set(&mut self, name: &str, value: &str) -> Result<&mut Self, ValidationError> {
        if let Some(custom) = name.strip_prefix("custom.") {
            check_custom_name(custom)?;
            let value = crate::value::parse_line(value.trim()).map_err(|expected| {
                ValidationError::InvalidValue {
                    field: name.to_string(),
                    value: value.to_string(),
                    expected,
                }
            })?;
            self.ops.push(Op::SetCustom(custom.to_string(), value));
            return Ok(self);
        }
        let field = self.field(name)?;
        let value = FieldValue::parse(field, value)?;
        self.ops.push(Op::Set(field, value));
        Ok(self)
    }

    /// Sets a field to an already typed value, validated and normalised like [`Edit::set`].
    pub fn set_value(
        &mut self,
        name: &str,
        value: FieldValue,
    ) -> Result<&mut Self, ValidationError> {
        let field = self.field(name)?;
        let value = FieldValue::validate(field, value)?;
        self.ops.push(Op::Set(field, value));
        Ok(self)
    }

    /// `--unset FIELD`.
    pub fn unset(&mut self, name: &str) -> Result<&mut Self, ValidationError> {
        let name = name.trim();
        if let Some(custom) = name.strip_prefix("custom.") {
            check_custom_name(custom)?;
            self.ops.push(Op::UnsetCustom(custom.to_string()));
            return Ok(self);
        }
        let field = self.field(name)?;
        if field.required {
            return Err(ValidationError::Required {
                kind: self.kind,
                field: field.name.to_string(),
            });
        }
        self.ops.push(Op::Unset(field));
        Ok(self)
    }

    pub fn tag(&mut self, tag: &str) -> Result<&mut Self, ValidationError> {
        self.ops.push(Op::Tag(check_tag(tag)?));
        Ok(self)
    }

    pub fn untag(&mut self, tag: &str) -> Result<&mut Self, ValidationError> {
        self.ops.push(Op::Untag(check_tag(tag)?));
        Ok(self)
    }

    pub fn replace_notes(&mut self, text: &str) -> Result<&mut Self, ValidationError> {
        check_prose("notes", text)?;
        self.ops.push(Op::ReplaceNotes(text.to_string()));
        Ok(self)
    }

    pub fn append_notes(&mut self, text: &str) -> Result<&mut Self, ValidationError> {
        check_prose("notes", text)?;
        self.ops.push(Op::AppendNotes(text.to_string()));
        Ok(self)
    }

    pub fn archive(&mut self, archived: bool) -> &mut Self {
        self.ops.push(Op::Archive(archived));
        self
    }

    /// Every record id the edit points at, with the field and the kinds it accepts, so the
    /// store can check that each names an existing record of the right kind.
    pub fn references(&self) -> Vec<(&'static FieldDef, crate::id::RecordId)> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Set(field, value) => Some((*field, value.referenced_ids())),
                _ => None,
            })
            .flat_map(|(field, ids)| ids.into_iter().map(move |id| (field, id)))
            .collect()
    }
}

fn check_custom_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_alphanumeric() || c == '_')
    {
        return Err(ValidationError::InvalidCustomName {
            name: name.to_string(),
        });
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<String, ValidationError> {
    let t = tag.trim();
    if t.is_empty()
        || t.chars().count() > 100
        || t.contains([',', '，'])
        || t.chars().any(char::is_control)
    {
        return Err(ValidationError::InvalidTag {
            tag: tag.to_string(),
        });
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_typed_ops() {
        let mut e = Edit::new(Kind::Account);
        e.set_assignment("name=ACME").expect("valid");
        e.set("custom.region", "华南").expect("valid");
        e.tag(" vip ").expect("valid");
        assert_eq!(e.ops().len(), 3);
        assert_eq!(e.ops()[2], Op::Tag("vip".into()));
    }

    #[test]
    fn rejects_bad_input_with_the_field_named() {
        let mut e = Edit::new(Kind::Account);
        let err = e
            .set_assignment("colour=red")
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("colour") && err.contains("industry"), "{err}");
        assert!(matches!(
            e.set_assignment("name"),
            Err(ValidationError::MissingEquals(_))
        ));
        assert!(matches!(
            e.unset("name"),
            Err(ValidationError::Required { .. })
        ));
        assert!(e.tag("a,b").is_err());
        assert!(e.set("custom.bad name", "x").is_err());
        assert!(e.is_empty(), "failed ops must not be recorded");
    }

    #[test]
    fn collects_references() {
        let mut e = Edit::new(Kind::Opportunity);
        let id = crate::id::RecordId::new();
        e.set("account", &id.to_string()).expect("valid");
        let refs = e.references();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].0.name, "account");
        assert_eq!(refs[0].1, id);
    }
}
