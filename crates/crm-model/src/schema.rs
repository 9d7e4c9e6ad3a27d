//! Field schemas: for every record kind, its fields, their types, validation and merge rule.
//!
//! Records are described by data rather than by one hand-written struct per kind, because
//! every consumer (the document mapping, the projections, the CLI's `--set FIELD=VALUE`,
//! import, the web forms) is generic over the fields, and the merge rule of each field is a
//! property the code must be able to inspect.

use crate::kind::Kind;

/// How concurrent edits of a field merge (DATA-MODEL.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeRule {
    /// L: last writer wins per field; losing concurrent values stay visible as a conflict.
    LastWriterWins,
    /// T: Automerge Text, merged character by character.
    Text,
    /// S: a set stored as a map of key → true; concurrent adds both survive.
    Set,
    /// A: append-only list of immutable entries.
    Append,
    /// R: a reference to another record (an L field).
    Reference,
    /// I: set once at creation.
    Immutable,
}

impl MergeRule {
    pub fn code(self) -> &'static str {
        match self {
            MergeRule::LastWriterWins => "L",
            MergeRule::Text => "T",
            MergeRule::Set => "S",
            MergeRule::Append => "A",
            MergeRule::Reference => "R",
            MergeRule::Immutable => "I",
        }
    }
}

/// The element type of a set field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOf {
    Text,
    Email,
    Phone,
    /// Record ids; an empty slice accepts any kind.
    Ref(&'static [Kind]),
    Enum(&'static [&'static str]),
}

/// The value type of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A single-line string.
    Text,
    /// Long prose stored as Automerge Text.
    Prose,
    Email,
    Phone,
    /// A website or domain; normalised to a lowercase host for dedup.
    Domain,
    /// One of a fixed list of lowercase names.
    Enum(&'static [&'static str]),
    Int {
        min: i64,
        max: i64,
    },
    /// A decimal amount with two fraction digits, stored as integer minor units.
    Money,
    Bool,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An instant, RFC 3339, stored in UTC.
    DateTime,
    /// A record id; an empty slice accepts any kind.
    Ref(&'static [Kind]),
    Set(SetOf),
    /// Quote and order line items: a list of maps, replaced as a whole.
    LineItems,
    /// An append-only list of strings (survey questions).
    List,
    /// A string → string map written once (survey answers).
    Answers,
}

impl FieldType {
    /// The merge rule a field of this type gets unless the schema says otherwise.
    pub const fn default_rule(self) -> MergeRule {
        match self {
            FieldType::Prose => MergeRule::Text,
            FieldType::Set(_) => MergeRule::Set,
            FieldType::Ref(_) => MergeRule::Reference,
            FieldType::List => MergeRule::Append,
            FieldType::Answers => MergeRule::Immutable,
            _ => MergeRule::LastWriterWins,
        }
    }

    /// A short name for help texts and error messages.
    pub fn describe(self) -> String {
        match self {
            FieldType::Text => "text".into(),
            FieldType::Prose => "long text".into(),
            FieldType::Email => "email address".into(),
            FieldType::Phone => "phone number".into(),
            FieldType::Domain => "website or domain".into(),
            FieldType::Enum(values) => format!("one of {}", values.join(", ")),
            FieldType::Int { min, max } => format!("integer {min}..={max}"),
            FieldType::Money => "amount like 12000.50".into(),
            FieldType::Bool => "true or false".into(),
            FieldType::Date => "date YYYY-MM-DD".into(),
            FieldType::DateTime => "time like 2026-05-01T09:30:00Z".into(),
            FieldType::Ref(kinds) => describe_ref(kinds),
            FieldType::Set(elem) => match elem {
                SetOf::Text => "comma-separated list".into(),
                SetOf::Email => "comma-separated email addresses".into(),
                SetOf::Phone => "comma-separated phone numbers".into(),
                SetOf::Ref(kinds) => format!("comma-separated {}", describe_ref(kinds)),
                SetOf::Enum(values) => {
                    format!("comma-separated, each one of {}", values.join(", "))
                }
            },
            FieldType::LineItems => {
                "JSON array of {product, description, qty, unit_price, discount}".into()
            }
            FieldType::List => "JSON array of strings".into(),
            FieldType::Answers => "JSON object of question → answer".into(),
        }
    }
}

fn describe_ref(kinds: &[Kind]) -> String {
    if kinds.is_empty() {
        "id of any record".into()
    } else {
        let names: Vec<_> = kinds.iter().map(|k| k.as_str()).collect();
        format!("id of a {}", names.join(" or "))
    }
}

/// One field of a record kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDef {
    pub name: &'static str,
    pub ty: FieldType,
    pub rule: MergeRule,
    /// Must be present when the record is created, and can't be unset.
    pub required: bool,
    /// Indexed in the projection table and offered as a `list` filter.
    pub filter: bool,
    /// Part of the record's display title and full-text index.
    pub title: bool,
    /// Changes are also appended to the field's history (`L+A` stage/status fields).
    pub history: bool,
    /// Set at creation when the user gives no value.
    pub default: Option<&'static str>,
}

impl FieldDef {
    pub const fn new(name: &'static str, ty: FieldType) -> Self {
        Self {
            name,
            ty,
            rule: ty.default_rule(),
            required: false,
            filter: false,
            title: false,
            history: false,
            default: None,
        }
    }
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub const fn filter(mut self) -> Self {
        self.filter = true;
        self
    }
    pub const fn title(mut self) -> Self {
        self.title = true;
        self
    }
    /// A stage or status: L plus an append-only history of its values.
    pub const fn history(mut self) -> Self {
        self.history = true;
        self
    }
    pub const fn immutable(mut self) -> Self {
        self.rule = MergeRule::Immutable;
        self
    }
    pub const fn default(mut self, value: &'static str) -> Self {
        self.default = Some(value);
        self
    }

    /// The merge rule as DATA-MODEL.md writes it, e.g. `L+A`.
    pub fn rule_code(&self) -> String {
        if self.history {
            format!("{}+A", self.rule.code())
        } else {
            self.rule.code().to_string()
        }
    }

    /// Whether the field is stored in the document as Automerge Text.
    pub fn is_prose(&self) -> bool {
        matches!(self.ty, FieldType::Prose)
    }
}

/// Shorthand used by the per-kind schema files.
pub(crate) const fn f(name: &'static str, ty: FieldType) -> FieldDef {
    FieldDef::new(name, ty)
}

pub(crate) const TEXT: FieldType = FieldType::Text;
pub(crate) const PROSE: FieldType = FieldType::Prose;
pub(crate) const EMAIL: FieldType = FieldType::Email;
pub(crate) const PHONE: FieldType = FieldType::Phone;
pub(crate) const MONEY: FieldType = FieldType::Money;
pub(crate) const BOOL: FieldType = FieldType::Bool;
pub(crate) const DATE: FieldType = FieldType::Date;
pub(crate) const DATETIME: FieldType = FieldType::DateTime;
pub(crate) const COUNT: FieldType = FieldType::Int {
    min: 0,
    max: i64::MAX,
};
pub(crate) const EMAILS: FieldType = FieldType::Set(SetOf::Email);
pub(crate) const PHONES: FieldType = FieldType::Set(SetOf::Phone);
pub(crate) const fn one_of(values: &'static [&'static str]) -> FieldType {
    FieldType::Enum(values)
}
pub(crate) const fn to(kinds: &'static [Kind]) -> FieldType {
    FieldType::Ref(kinds)
}

/// The fields every record has besides its kind's own.
pub const COMMON_FIELDS: &[FieldDef] = &[
    f("owner", to(&[Kind::User])).filter(),
    f("teams", FieldType::Set(SetOf::Ref(&[Kind::Team]))),
    f("merged_into", to(&[])),
];

/// The schema of one record kind.
#[derive(Debug)]
pub struct Schema {
    pub kind: Kind,
    /// The kind's own fields, in display order.
    pub fields: &'static [FieldDef],
    /// Prefix of the provisional number a device gives new records (`T` → `T-laptop-7`).
    pub number_prefix: Option<&'static str>,
}

impl Schema {
    /// Every field of the kind: its own, then the common ones.
    pub fn all_fields(&self) -> impl Iterator<Item = &'static FieldDef> + '_ {
        self.fields.iter().chain(COMMON_FIELDS.iter())
    }

    pub fn field(&self, name: &str) -> Option<&'static FieldDef> {
        self.all_fields().find(|f| f.name == name)
    }

    /// The fields that make up the record's display title, in order.
    pub fn title_fields(&self) -> impl Iterator<Item = &'static FieldDef> + '_ {
        self.fields.iter().filter(|f| f.title)
    }
}
