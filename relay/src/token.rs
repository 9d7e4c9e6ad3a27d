//! Device tokens: `crm1.<workspace uuid>.<secret>`, the secret being 32 random bytes in
//! unpadded base64url (43 characters).
//!
//! A token names its workspace, so a device needs nothing but the token and the relay's URL.
//! The relay stores only the SHA-256 of the whole token text and shows the token once, when it
//! is made; a stolen database therefore holds no usable credential. The secret carries 256
//! bits of entropy, so a plain hash (not a slow password hash) is the right tool.

use std::fmt;

use data_encoding::BASE64URL_NOPAD;
use rand::TryRng as _;
use sha2::{Digest, Sha256};

use crate::ids::WorkspaceId;

const PREFIX: &str = "crm1";
const SECRET_BYTES: usize = 32;
/// Length of the secret's text: 32 bytes in unpadded base64.
pub const SECRET_CHARS: usize = 43;

/// The SHA-256 of a token's text: all the relay keeps of it.
pub type TokenHash = [u8; 32];

/// A device's bearer token. Its `Debug` hides the secret, so it never lands in a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

/// The operating system gave no randomness.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

impl Token {
    /// A new token for a device of `workspace`, with a secret from the OS generator.
    pub fn generate(workspace: WorkspaceId) -> Result<Token, RandomError> {
        let mut secret = [0u8; SECRET_BYTES];
        rand::rngs::SysRng
            .try_fill_bytes(&mut secret)
            .map_err(|e| RandomError(e.to_string()))?;
        Ok(Token(format!(
            "{PREFIX}.{workspace}.{}",
            BASE64URL_NOPAD.encode(&secret)
        )))
    }

    /// The workspace a token's text names, if it is shaped like a token at all.
    pub fn workspace_of(text: &str) -> Option<WorkspaceId> {
        let mut parts = text.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(PREFIX), Some(workspace), Some(secret), None)
                if secret.len() == SECRET_CHARS
                    && BASE64URL_NOPAD
                        .decode(secret.as_bytes())
                        .is_ok_and(|s| s.len() == SECRET_BYTES) =>
            {
                workspace.parse().ok()
            }
            _ => None,
        }
    }

    /// The hash stored for a token's text.
    pub fn hash_of(text: &str) -> TokenHash {
        Sha256::digest(text.as_bytes()).into()
    }

    pub fn hash(&self) -> TokenHash {
        Self::hash_of(&self.0)
    }

    /// The token's text, to show once to the admin who made it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_workspace_and_hides_in_debug() {
        let ws = WorkspaceId::new();
        let token = Token::generate(ws).expect("random");
        let text = token.expose();
        assert_eq!(text.len(), PREFIX.len() + 1 + 36 + 1 + SECRET_CHARS);
        assert_eq!(Token::workspace_of(text), Some(ws));
        assert!(!format!("{token:?}").contains(&ws.to_string()));
        assert_ne!(Token::generate(ws).expect("random"), token);
    }

    #[test]
    fn malformed_tokens_name_no_workspace() {
        let ws = WorkspaceId::new();
        let secret = "A".repeat(SECRET_CHARS);
        assert!(Token::workspace_of(&format!("crm1.{ws}.{secret}")).is_some());
        for bad in [
            String::new(),
            format!("crm2.{ws}.{secret}"),
            format!("crm1.acme.{secret}"),
            format!("crm1.{ws}.{}", &secret[1..]),
            format!("crm1.{ws}.{secret}.x"),
            format!("crm1.{ws}.{}!", &secret[1..]),
        ] {
            assert_eq!(Token::workspace_of(&bad), None, "{bad}");
        }
    }
}
