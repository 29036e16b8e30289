//! Replay nonces (RFC 8555 6.5): 128 random bits in a store token, base64url, single use,
//! expiring, swept.

use std::sync::Arc;

use base64::Engine;
use certgate_core::Clock;
use certgate_store::NonceStore;
use time::Duration;

use crate::jws::B64URL;
use crate::problem::{Problem, ProblemType};

/// Random bytes per nonce.
const NONCE_BYTES: usize = 16;
/// Longest token a store may wrap those bytes in; anything longer is not ours, and is refused
/// before it is decoded.
const MAX_TOKEN_CHARS: usize = 64;

/// Issues and redeems nonces over a [`NonceStore`].
#[derive(Debug, Clone)]
pub struct Nonces {
    store: Arc<dyn NonceStore>,
    clock: Arc<dyn Clock>,
    lifetime: Duration,
}

impl Nonces {
    /// Nonces valid for `lifetime` after issue.
    pub fn new(store: Arc<dyn NonceStore>, clock: Arc<dyn Clock>, lifetime: Duration) -> Self {
        Self { store, clock, lifetime }
    }

    /// A fresh nonce for a `Replay-Nonce` header.
    pub async fn issue(&self) -> Result<String, Problem> {
        let mut bytes = [0u8; NONCE_BYTES];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| internal())?;
        let token = self
            .store
            .issue_nonce(&bytes, self.clock.now() + self.lifetime)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "storing a nonce failed");
                internal()
            })?;
        Ok(B64URL.encode(token))
    }

    /// Redeems the nonce of a JWS header; `badNonce` unless it was issued here, is unexpired
    /// and unused. Clients retry `badNonce` with the fresh nonce of that answer.
    pub async fn redeem(&self, nonce: &str) -> Result<(), Problem> {
        let decoded = (nonce.len() <= MAX_TOKEN_CHARS)
            .then(|| B64URL.decode(nonce).ok())
            .flatten();
        let bytes = match decoded {
            Some(bytes) if bytes.len() >= NONCE_BYTES => bytes,
            _ => {
                return Err(Problem::new(
                    ProblemType::BadNonce,
                    "the JWS nonce was not issued by this server",
                ));
            }
        };
        match self.store.redeem_nonce(&bytes, self.clock.now()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Problem::new(
                ProblemType::BadNonce,
                "the JWS nonce is unknown, used or expired",
            )),
            Err(e) => {
                tracing::error!(error = %e, "redeeming a nonce failed");
                Err(internal())
            }
        }
    }

    /// Forgets expired nonces (call periodically); returns how many.
    pub async fn sweep(&self) -> u64 {
        self.store.sweep_nonces(self.clock.now()).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "sweeping nonces failed");
            0
        })
    }
}

fn internal() -> Problem {
    Problem::new(ProblemType::ServerInternal, "the server could not handle nonces")
}
