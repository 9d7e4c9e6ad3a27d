//! An activity: a call, email, meeting, task or note, linked to any records.
use crate::kind::Kind;
use crate::schema::*;

pub const TYPES: &[&str] = &["call", "email", "meeting", "task", "note"];
pub const DIRECTIONS: &[&str] = &["inbound", "outbound"];
pub const CHANNELS: &[&str] = &["phone", "email", "wechat", "meeting", "video", "other"];
pub const PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];
pub const STATUSES: &[&str] = &[
    "not_started",
    "in_progress",
    "completed",
    "cancelled",
    "deferred",
    "planned",
    "held",
    "not_held",
];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Activity,
    fields: &[
        f("type", one_of(TYPES)).required().immutable().filter(),
        f("subject", TEXT).required().title().filter(),
        f("body", PROSE),
        f("targets", FieldType::Set(SetOf::Ref(&[]))),
        f("participants", FieldType::Set(SetOf::Text)),
        f("direction", one_of(DIRECTIONS)),
        f("channel", one_of(CHANNELS)),
        f("start", DATETIME).filter(),
        f("end", DATETIME),
        f("due", DATETIME).filter(),
        f("duration_minutes", COUNT),
        f("priority", one_of(PRIORITIES)).filter().default("normal"),
        f("status", one_of(STATUSES)).filter(),
        f("assignee", to(&[Kind::User])).filter(),
        f("reminder_minutes", COUNT),
        f("reminder_channel", one_of(&["popup", "email", "sms"])),
        f("outcome", TEXT),
        f("completed_at", DATETIME),
    ],
    number_prefix: None,
};
