//! Who made a change: every commit names its user and device and carries a time.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The author of a local change. Serialised as the Automerge commit message, so the document
/// history is the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub user: String,
    pub device: String,
}

impl Author {
    pub fn new(user: impl Into<String>, device: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            device: device.into(),
        }
    }

    /// The commit message that carries this author.
    pub fn to_message(&self) -> String {
        serde_json::json!({ "user": self.user, "device": self.device }).to_string()
    }

    /// Reads an author back from a commit message; changes made by other tools have none.
    pub fn from_message(message: Option<&str>) -> Option<Self> {
        message.and_then(|m| serde_json::from_str(m).ok())
    }
}

/// A commit time in milliseconds since the epoch, as Automerge stores it.
pub fn millis_to_time(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        let a = Author::new("李雷", "laptop");
        assert_eq!(Author::from_message(Some(&a.to_message())), Some(a));
        assert_eq!(Author::from_message(Some("free text")), None);
        assert_eq!(Author::from_message(None), None);
    }
}
