//! Printing: JSON for scripts, aligned tables for people (CJK-aware widths).

use chrono::{DateTime, Utc};

pub(crate) use crm_cli_support::output::{json, table};

pub(crate) fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}
