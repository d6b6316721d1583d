//! Authentication and room permissions: verifies JWTs and turns their claims into what a connection
//! may do.
//!
//! Owns: the verification key, the validation rules, and the room policy of a token. Must not: know
//! HTTP or sockets. The HTTP side asks it about a token; the shard asks a connection's
//! [`Permissions`] about a join.
//!
//! The accepted algorithm is fixed by the key: HS256 for `--jwt-secret`, RS256 or ES256 for the PEM
//! in `--jwt-public-key`. A token naming any other algorithm (`none`, or HS256 signed with the public
//! key) is refused. `exp` is required; `nbf`, `iss` and `aud` are checked when configured.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::Config;
use crate::protocol::{self, UserId};

/// Why a token was refused (logged to the audit target, never sent to the client in detail).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// What a connection may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// `None`: any room. `Some`: only rooms matching one of the patterns (`*` suffix wildcard).
    rooms: Option<Box<[String]>>,
    /// `role: admin`: any room, and the HTTP publish endpoints.
    pub admin: bool,
}

impl Permissions {
    /// Everything (authentication off).
    pub fn unrestricted() -> Self {
        Self { rooms: None, admin: false }
    }

    pub fn may_join(&self, room: &str) -> bool {
        let matches = |pattern: &String| match pattern.strip_suffix('*') {
            Some(prefix) => room.starts_with(prefix),
            None => room == pattern,
        };
        self.admin || self.rooms.as_ref().is_none_or(|patterns| patterns.iter().any(matches))
    }
}

/// Who a valid token says the bearer is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserId,
    pub permissions: Permissions,
    pub expires_at: SystemTime,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    rooms: Option<Vec<String>>,
    role: Option<String>,
}

/// Verifies tokens against the configured key.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("algorithms", &self.validation.algorithms).finish()
    }
}

impl Authenticator {
    /// The authenticator the flags ask for: `None` with `--auth-enabled` off.
    pub fn from_config(config: &Config) -> Result<Option<Self>, String> {
        if !config.auth_enabled {
            return Ok(None);
        }
        let (key, algorithm) = match (&config.jwt_secret, &config.jwt_public_key) {
            (Some(secret), None) => (DecodingKey::from_secret(secret.as_bytes()), Algorithm::HS256),
            (None, Some(path)) => {
                let pem = std::fs::read(path)
                    .map_err(|err| format!("--jwt-public-key {}: {err}", path.display()))?;
                public_key(&pem)
                    .map_err(|err| format!("--jwt-public-key {}: {err}", path.display()))?
            }
            _ => {
                return Err(
                    "--auth-enabled needs exactly one of --jwt-secret and --jwt-public-key".into()
                )
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.jwt_leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &config.jwt_issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &config.jwt_audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(Some(Self { key, validation }))
    }

    /// Checks a token's signature, algorithm and claims; the identity it carries.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|err| AuthError::Invalid(err.to_string()))?;
        let claims = data.claims;
        let user = protocol::validate_user(&claims.sub)
            .map_err(|err| AuthError::Invalid(format!("sub: {err}")))?;
        let admin = claims.role.as_deref() == Some("admin");
        let expires_at = UNIX_EPOCH + Duration::from_secs(claims.exp);
        Ok(Identity {
            user,
            permissions: Permissions { rooms: claims.rooms.map(Vec::into_boxed_slice), admin },
            expires_at,
        })
    }
}

/// An RSA key means RS256, an EC (P-256) key ES256.
fn public_key(pem: &[u8]) -> Result<(DecodingKey, Algorithm), String> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok((key, Algorithm::RS256));
    }
    DecodingKey::from_ec_pem(pem)
        .map(|key| (key, Algorithm::ES256))
        .map_err(|err| format!("not an RSA or EC public key: {err}"))
}

/// The token of a request: `Authorization: Bearer ...`, else `?token=` (browsers cannot set headers
/// on a WebSocket).
pub fn request_token(authorization: Option<&str>, query: Option<&str>) -> Option<String> {
    let bearer =
        authorization.and_then(|value| value.strip_prefix("Bearer ")).map(|t| t.trim().to_owned());
    bearer.or_else(|| {
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(patterns: &[&str]) -> Permissions {
        Permissions { rooms: Some(patterns.iter().map(|p| p.to_string()).collect()), admin: false }
    }

    #[test]
    fn room_patterns_match_exactly_or_by_prefix() {
        let permissions = limited(&["lobby", "team-*"]);
        assert!(permissions.may_join("lobby"));
        assert!(permissions.may_join("team-a") && permissions.may_join("team-"));
        assert!(!permissions.may_join("lobby2") && !permissions.may_join("teams"));
        assert!(Permissions::unrestricted().may_join("anything"));
        assert!(Permissions { admin: true, ..limited(&[]) }.may_join("anything"));
        assert!(!limited(&[]).may_join("lobby"), "an empty list allows nothing");
    }

    #[test]
    fn the_header_wins_over_the_query() {
        assert_eq!(request_token(Some("Bearer abc"), Some("token=xyz")).as_deref(), Some("abc"));
        assert_eq!(request_token(None, Some("user=u&token=x%2By")).as_deref(), Some("x+y"));
        assert_eq!(request_token(Some("Basic abc"), None), None);
    }
}
