//! External account binding (RFC 8555 7.3.4): an HS256 JWS over the new account's key, made
//! with a MAC key the operator handed out (`certgate acme eab create`).

use aws_lc_rs::hmac;
use base64::Engine;
use serde_json::Value;

use crate::jws::{AccountKey, B64URL};
use crate::problem::{Problem, ProblemType};

/// Bytes of a generated EAB MAC key.
pub const EAB_KEY_BYTES: usize = 32;

/// An EAB object whose structure was checked, before its MAC is.
#[derive(Debug)]
pub struct ParsedEab {
    /// The EAB key id (`kid`).
    pub key_id: String,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

fn malformed(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemType::Malformed, detail)
}

impl ParsedEab {
    /// Checks the binding's form: HS256, a `kid`, `url` equal to the newAccount URL, no
    /// nonce, and a payload that is exactly the account's key.
    pub fn parse(eab: &Value, account_key: &AccountKey, new_account_url: &str) -> Result<Self, Problem> {
        let object = eab
            .as_object()
            .ok_or_else(|| malformed("externalAccountBinding is not a JWS object"))?;
        let part = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(format!("externalAccountBinding has no {name:?}")))
        };
        let (protected_b64, payload_b64, signature_b64) = (part("protected")?, part("payload")?, part("signature")?);
        let decode = |name: &str, text: &str| {
            B64URL
                .decode(text)
                .map_err(|_| malformed(format!("externalAccountBinding {name} is not base64url")))
        };
        let protected: Value = serde_json::from_slice(&decode("protected header", protected_b64)?)
            .map_err(|_| malformed("externalAccountBinding protected header is not JSON"))?;
        if protected.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(Problem::new(
                ProblemType::BadSignatureAlgorithm,
                "externalAccountBinding must use HS256",
            ));
        }
        if protected.get("nonce").is_some() {
            return Err(malformed("externalAccountBinding must not carry a nonce"));
        }
        if protected.get("url").and_then(Value::as_str) != Some(new_account_url) {
            return Err(malformed("externalAccountBinding url is not the newAccount URL"));
        }
        let key_id = protected
            .get("kid")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| malformed("externalAccountBinding has no kid"))?
            .to_owned();
        let payload: Value = serde_json::from_slice(&decode("payload", payload_b64)?)
            .map_err(|_| malformed("externalAccountBinding payload is not a JWK"))?;
        let bound_key =
            AccountKey::from_jwk(&payload).map_err(|e| malformed(format!("externalAccountBinding: {e}")))?;
        if bound_key != *account_key {
            return Err(malformed(
                "externalAccountBinding binds a different key than the one signing the request",
            ));
        }
        let mut signing_input = protected_b64.as_bytes().to_vec();
        signing_input.push(b'.');
        signing_input.extend_from_slice(payload_b64.as_bytes());
        Ok(Self {
            key_id,
            signing_input,
            signature: decode("signature", signature_b64)?,
        })
    }

    /// Verifies the MAC in constant time.
    pub fn verify(&self, mac_key: &[u8]) -> Result<(), Problem> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, mac_key);
        hmac::verify(&key, &self.signing_input, &self.signature).map_err(|_| {
            Problem::new(
                ProblemType::Unauthorized,
                "the externalAccountBinding MAC does not verify with that EAB key",
            )
        })
    }
}

/// A new random EAB MAC key.
pub fn generate_mac_key() -> Result<[u8; EAB_KEY_BYTES], Problem> {
    let mut key = [0u8; EAB_KEY_BYTES];
    aws_lc_rs::rand::fill(&mut key)
        .map_err(|_| Problem::new(ProblemType::ServerInternal, "random number generator failed"))?;
    Ok(key)
}
