//! Replay nonces (RFC 8555 6.5): issued without state, checked without the store, redeemed
//! once.
//!
//! A nonce is `expiry || random || tag`, base64url: the expiry as 8 bytes of Unix seconds, 128
//! random bits, and the first 128 bits of HMAC-SHA256 over the two under a key drawn when the
//! server starts and kept only in memory. Issuing one (every answer carries one, the directory
//! and newNonce included) writes nothing. [`Nonces::check`] refuses a forged, malformed or
//! expired nonce from the token alone; [`Nonces::redeem`] records a checked nonce as used in the
//! [`NonceStore`] until it expires and refuses it the second time. The server redeems only
//! after the JWS signature verified, so a request that is not signed by its key writes
//! nothing and leaves its nonce usable.
//!
//! A restart draws a new key: nonces handed out before it are refused with `badNonce`, and
//! clients retry with the fresh nonce of that answer (certbot, lego and the Go and Rust ACME
//! libraries do). For the same reason the used set need not survive a crash.

use std::sync::Arc;

use aws_lc_rs::{constant_time, hmac};
use base64::Engine;
use certgate_core::Clock;
use certgate_store::NonceStore;
use time::{Duration, OffsetDateTime};

use crate::http::AcmeError;
use crate::jws::B64URL;
use crate::problem::{Problem, ProblemType};

/// Bytes of the expiry.
const EXPIRY_BYTES: usize = 8;
/// Random bytes per nonce.
const RANDOM_BYTES: usize = 16;
/// Bytes of the HMAC-SHA256 tag kept (truncated as RFC 2104 section 5 allows).
const TAG_BYTES: usize = 16;
const TOKEN_BYTES: usize = EXPIRY_BYTES + RANDOM_BYTES + TAG_BYTES;
/// Characters of a token in base64url without padding.
pub const NONCE_CHARS: usize = (TOKEN_BYTES * 8).div_ceil(6);

/// Issues, checks and redeems nonces.
pub struct Nonces {
    store: Arc<dyn NonceStore>,
    clock: Arc<dyn Clock>,
    lifetime: Duration,
    key: hmac::Key,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Nonces")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// A nonce that [`Nonces::check`] found authentic and unexpired, not yet redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedNonce {
    random: [u8; RANDOM_BYTES],
    expires_at: OffsetDateTime,
}

impl Nonces {
    /// Nonces valid for `lifetime` after issue, under a key drawn now; used ones are recorded
    /// in `store`.
    pub fn new(store: Arc<dyn NonceStore>, clock: Arc<dyn Clock>, lifetime: Duration) -> Result<Self, AcmeError> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| AcmeError::Random)?;
        Ok(Self {
            store,
            clock,
            lifetime,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        })
    }

    /// A fresh nonce for a `Replay-Nonce` header. Stores nothing.
    pub fn issue(&self) -> Result<String, Problem> {
        let mut token = [0u8; TOKEN_BYTES];
        let expires_at = self.clock.now() + self.lifetime;
        token[..EXPIRY_BYTES].copy_from_slice(&expires_at.unix_timestamp().to_be_bytes());
        aws_lc_rs::rand::fill(&mut token[EXPIRY_BYTES..EXPIRY_BYTES + RANDOM_BYTES]).map_err(|_| {
            tracing::error!("the random number generator failed while making a nonce");
            Problem::new(ProblemType::ServerInternal, "the server could not make a nonce")
        })?;
        let tag = hmac::sign(&self.key, &token[..EXPIRY_BYTES + RANDOM_BYTES]);
        token[EXPIRY_BYTES + RANDOM_BYTES..].copy_from_slice(&tag.as_ref()[..TAG_BYTES]);
        Ok(B64URL.encode(token))
    }

    /// Checks the nonce of a JWS header without the store: `badNonce` unless this process
    /// issued it and it has not expired. Whether it was used already is for
    /// [`Nonces::redeem`] to say.
    pub fn check(&self, nonce: &str) -> Result<CheckedNonce, Problem> {
        let not_ours = || Problem::new(ProblemType::BadNonce, "the JWS nonce was not issued by this server");
        // Length first: nothing longer than a token of ours is decoded.
        if nonce.len() != NONCE_CHARS {
            return Err(not_ours());
        }
        let token: [u8; TOKEN_BYTES] = B64URL
            .decode(nonce)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(not_ours)?;
        let (signed, tag) = token.split_at(EXPIRY_BYTES + RANDOM_BYTES);
        let expected = hmac::sign(&self.key, signed);
        if constant_time::verify_slices_are_equal(&expected.as_ref()[..TAG_BYTES], tag).is_err() {
            return Err(Problem::new(
                ProblemType::BadNonce,
                "the JWS nonce was not issued by this server, or before it restarted",
            ));
        }
        let (expiry, random) = signed.split_at(EXPIRY_BYTES);
        let seconds = i64::from_be_bytes(expiry.try_into().map_err(|_| not_ours())?);
        let expires_at = OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| not_ours())?;
        if expires_at <= self.clock.now() {
            return Err(Problem::new(ProblemType::BadNonce, "the JWS nonce has expired"));
        }
        Ok(CheckedNonce {
            random: random.try_into().map_err(|_| not_ours())?,
            expires_at,
        })
    }

    /// Redeems a checked nonce: records it as used, `badNonce` if it was used before (or
    /// expired meanwhile). Clients retry `badNonce` with the fresh nonce of that answer.
    pub async fn redeem(&self, nonce: &CheckedNonce) -> Result<(), Problem> {
        match self
            .store
            .redeem_nonce(&nonce.random, nonce.expires_at, self.clock.now())
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Problem::new(
                ProblemType::BadNonce,
                "the JWS nonce was used already or has expired",
            )),
            Err(e) => {
                tracing::error!(error = %e, "redeeming a nonce failed");
                Err(Problem::new(
                    ProblemType::ServerInternal,
                    "the server could not redeem the nonce",
                ))
            }
        }
    }

    /// Forgets used nonces that have expired (call periodically); returns how many.
    pub async fn sweep(&self) -> u64 {
        self.store.sweep_nonces(self.clock.now()).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "sweeping used nonces failed");
            0
        })
    }
}
