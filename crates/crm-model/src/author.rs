//! Who made a change: every commit names its user and device and carries a time.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The author of a local change. Serialised as the Automerge commit message, so the document
/// history is the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub user: String,
    pub device: String,
    /// The relay's id of the user (their user record's id), once the replica has joined a
    /// relay: the relay refuses a change whose author is not its token's user and device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The relay's id of the device, once the replica has joined a relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

impl Author {
    pub fn new(user: impl Into<String>, device: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            device: device.into(),
            user_id: None,
            device_id: None,
        }
    }

    /// The author as the relay knows them: with the user's and the device's relay ids.
    pub fn with_ids(mut self, user_id: impl Into<String>, device_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self.device_id = Some(device_id.into());
        self
    }

    /// The commit message that carries this author.
    pub fn to_message(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
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
        let bound = Author::new("carol", "phone").with_ids("u-1", "d-2");
        assert_eq!(Author::from_message(Some(&bound.to_message())), Some(bound));
        // Messages written before ids existed still read.
        assert_eq!(
            Author::from_message(Some(r#"{"user":"bob","device":"laptop"}"#)),
            Some(Author::new("bob", "laptop"))
        );
        assert_eq!(
            Author::new("a", "d").to_message(),
            r#"{"user":"a","device":"d"}"#
        );
    }
}
