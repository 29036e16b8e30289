//! HTTP Basic users: Argon2id password hashes (PHC strings) and their verification.
//!
//! Verification never reveals whether a user exists: an unknown user is verified against a
//! dummy hash with the same parameters, so both paths cost one Argon2 evaluation. Each
//! verification is admitted by the client address's limits ([`crate::AuthLimitConfig`]) and
//! settled with its outcome ([`verify_attempt`]), an unknown user counting as a failure.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::EstError;
use crate::auth_limit::Attempt;

/// The longest user name accepted.
pub const MAX_USERNAME_LEN: usize = 128;
/// The longest password accepted (Argon2 takes any length; this bounds the work per request).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Credentials from an `Authorization: Basic …` header. The password is zeroed on drop and
/// never printed.
pub struct BasicCredentials {
    /// The user name.
    pub username: String,
    password: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl BasicCredentials {
    /// The password bytes.
    pub fn password(&self) -> &[u8] {
        &self.password
    }
}

/// Whether `username` is acceptable: 1 to [`MAX_USERNAME_LEN`] bytes, no ':' (Basic splits
/// on the first colon) and no control characters.
pub fn valid_username(username: &str) -> bool {
    !username.is_empty()
        && username.len() <= MAX_USERNAME_LEN
        && !username.contains(':')
        && !username.chars().any(char::is_control)
}

/// Parses an `Authorization` header value of scheme Basic (RFC 7617); `None` for another
/// scheme or a malformed value.
pub fn parse_basic(header: &str) -> Option<BasicCredentials> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(STANDARD.decode(value.trim()).ok()?);
    let colon = decoded.iter().position(|b| *b == b':')?;
    let username = std::str::from_utf8(decoded.get(..colon)?).ok()?;
    let password = decoded.get(colon + 1..)?;
    if !valid_username(username) || password.len() > MAX_PASSWORD_LEN {
        return None;
    }
    Some(BasicCredentials {
        username: username.to_owned(),
        password: Zeroizing::new(password.to_vec()),
    })
}

/// Hashes a password for storage: Argon2id with the crate's default parameters and a random
/// salt, as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`). Slow by design (tens of
/// milliseconds): call it off the async reactor.
pub fn hash_password(password: &[u8]) -> Result<String, EstError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(EstError::Config(format!(
            "a password must be 1 to {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Argon2::default()
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|e| EstError::KeyGeneration(format!("password hashing: {e}")))
}

/// Whether `password` matches the PHC string `hash`; false for a malformed hash too.
/// Slow by design: call it off the async reactor.
pub fn verify_password(hash: &str, password: &[u8]) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Verifies `password` against `hash` (the user's, or [`dummy_hash`] for an unknown user, with
/// `known` false) and settles the client's `attempt`: only a known user's matching password
/// gives the client its failure token back. The Argon2 evaluation runs whether or not the user
/// is known. Slow by design: call it off the async reactor.
pub(crate) fn verify_attempt(attempt: Attempt, hash: &str, password: &[u8], known: bool) -> bool {
    let matched = verify_password(hash, password) && known;
    attempt.finish(matched);
    matched
}

/// A hash of a random password with the same parameters as [`hash_password`]'s, computed
/// once, to verify against when the user does not exist. `Config` if it cannot be computed
/// (then nothing is cached and the next call tries again): without it an unknown user would
/// answer faster than a known one.
pub(crate) fn dummy_hash() -> Result<&'static str, EstError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = make_dummy_hash(hash_password)?;
    Ok(DUMMY.get_or_init(|| hash))
}

/// Hashes a random password with `hash`, and checks that the result is a PHC string a
/// verification will actually evaluate.
fn make_dummy_hash(hash: impl FnOnce(&[u8]) -> Result<String, EstError>) -> Result<String, EstError> {
    let failed = |why: String| EstError::Config(format!("cannot compute the dummy password hash: {why}"));
    let mut random = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(random.as_mut_slice()).map_err(|_| failed("no randomness".into()))?;
    let hashed = hash(random.as_slice()).map_err(|e| failed(e.to_string()))?;
    if PasswordHash::new(&hashed).is_err() {
        return Err(failed("not a PHC string".into()));
    }
    Ok(hashed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    #[test]
    fn basic_headers() {
        let cases = [
            ("good_plain", basic("alice:secret"), Some(("alice", "secret"))),
            (
                "good_scheme_case",
                basic("alice:secret").replace("Basic", "bAsIc"),
                Some(("alice", "secret")),
            ),
            ("good_colon_in_password", basic("alice:a:b"), Some(("alice", "a:b"))),
            ("good_empty_password", basic("alice:"), Some(("alice", ""))),
            ("bad_bearer", "Bearer abc".to_owned(), None),
            ("bad_no_colon", basic("alice"), None),
            ("bad_empty_user", basic(":secret"), None),
            ("bad_not_base64", "Basic !!!".to_owned(), None),
            ("bad_no_value", "Basic".to_owned(), None),
            ("bad_control_in_user", basic("al\nice:secret"), None),
        ];
        for (case, header, want) in cases {
            let got = parse_basic(&header);
            let got = got
                .as_ref()
                .map(|c| (c.username.as_str(), std::str::from_utf8(c.password()).unwrap()));
            assert_eq!(got, want, "case {case}");
        }
        let debug = format!("{:?}", parse_basic(&basic("alice:secret")).unwrap());
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn hash_and_verify() {
        let hash = hash_password(b"correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let cases = [
            ("good_password", hash.as_str(), b"correct horse".as_slice(), true),
            ("bad_password", hash.as_str(), b"correct horsE".as_slice(), false),
            ("bad_empty", hash.as_str(), b"".as_slice(), false),
            (
                "bad_malformed_hash",
                "$argon2id$nonsense",
                b"correct horse".as_slice(),
                false,
            ),
            ("bad_dummy", dummy_hash().unwrap(), b"correct horse".as_slice(), false),
        ];
        for (case, hash, password, ok) in cases {
            assert_eq!(verify_password(hash, password), ok, "case {case}");
        }
        assert!(dummy_hash().unwrap().starts_with("$argon2id$"));
        assert!(hash_password(b"").is_err());
    }

    #[test]
    fn attempts_are_settled_by_outcome() {
        use std::sync::Arc;

        use certgate_core::SystemClock;

        use crate::AuthLimitConfig;
        use crate::auth_limit::AuthLimiter;

        let hash = hash_password(b"correct horse").unwrap();
        let (right, wrong) = (b"correct horse".as_slice(), b"correct horsE".as_slice());
        let dummy = dummy_hash().unwrap();
        let cases = [
            ("good_known_user", hash.as_str(), true, right, true),
            ("bad_wrong_password", hash.as_str(), true, wrong, false),
            ("bad_unknown_user", dummy, false, right, false),
            ("bad_unknown_user_with_its_hash", hash.as_str(), false, right, false),
        ];
        for (case, hash, known, password, ok) in cases {
            // A budget of one failure: whether a second check is admitted tells what the
            // first one spent.
            let config = AuthLimitConfig {
                failure_burst: 1,
                ..AuthLimitConfig::default()
            };
            let limiter = Arc::new(AuthLimiter::new(&config, Arc::new(SystemClock)));
            let peer = "192.0.2.1".parse().unwrap();
            let attempt = limiter.admit(peer).unwrap();
            assert_eq!(verify_attempt(attempt, hash, password, known), ok, "case {case}");
            assert_eq!(limiter.admit(peer).is_ok(), ok, "case {case}: only a match refunds");
        }
    }

    #[test]
    fn dummy_hash_failures_are_errors_not_an_empty_hash() {
        type Hasher = fn(&[u8]) -> Result<String, EstError>;
        let cases: [(&str, Hasher, bool); 4] = [
            ("good_argon2", hash_password, true),
            (
                "bad_hasher_fails",
                |_| Err(EstError::KeyGeneration("out of memory".into())),
                false,
            ),
            ("bad_empty_hash", |_| Ok(String::new()), false),
            ("bad_not_phc", |_| Ok("plain".into()), false),
        ];
        for (case, hasher, ok) in cases {
            match make_dummy_hash(hasher) {
                Ok(hash) => {
                    assert!(ok, "case {case}: got {hash:?}");
                    assert!(hash.starts_with("$argon2id$"), "case {case}: {hash}");
                }
                Err(e) => {
                    assert!(!ok, "case {case}: {e}");
                    assert!(matches!(e, EstError::Config(_)), "case {case}: {e:?}");
                }
            }
        }
    }
}
