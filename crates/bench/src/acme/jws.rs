//! Flattened JWS (RFC 7515 / RFC 8555 section 6.2) with every part open to tampering.
//!
//! [`JwsParts`] holds the protected header as a JSON map and the payload already encoded, so a
//! negative test can change, drop or add any field, sign with any key, and then still edit the
//! signed [`FlatJws`] strings before sending.

use aws_lc_rs::hmac;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::key::{AccountKey, b64};
use crate::Error;

/// What a POST carries.
#[derive(Clone, Debug)]
pub enum Payload {
    /// A JSON object (or any JSON value).
    Json(Value),
    /// The empty payload of a POST-as-GET (RFC 8555 section 6.3).
    Empty,
}

impl Payload {
    /// The payload as JWS wants it: base64url of the JSON, or the empty string.
    pub fn encode(&self) -> String {
        match self {
            Payload::Json(v) => b64(v.to_string()),
            Payload::Empty => String::new(),
        }
    }
}

/// How a request names its key: `jwk` (newAccount, revocation by certificate key) or `kid`.
#[derive(Clone, Copy, Debug)]
pub enum Signer<'a> {
    /// The public key goes in the header as `jwk`.
    Jwk(&'a AccountKey),
    /// The account URL goes in the header as `kid`.
    Kid(&'a AccountKey, &'a str),
}

impl Signer<'_> {
    /// The key that signs.
    pub fn key(&self) -> &AccountKey {
        match self {
            Signer::Jwk(k) | Signer::Kid(k, _) => k,
        }
    }
}

/// A JWS before signing; every field public so a test can forge anything.
#[derive(Clone, Debug)]
pub struct JwsParts {
    /// The protected header members (alg, nonce, url, jwk or kid, and whatever a test adds).
    pub protected: Map<String, Value>,
    /// The payload, already base64url-encoded (empty for POST-as-GET).
    pub payload: String,
    /// An unprotected `header` member, which RFC 8555 forbids: for negative tests only.
    pub header: Option<Map<String, Value>>,
}

impl JwsParts {
    /// The header RFC 8555 wants: `alg` from the key, `nonce` (when given), `url`, and `jwk` or
    /// `kid`.
    pub fn new(url: &str, nonce: Option<&str>, payload: &Payload, signer: &Signer<'_>) -> Self {
        let key = signer.key();
        let mut protected = Map::new();
        protected.insert("alg".into(), key.alg().jws_alg().into());
        if let Some(nonce) = nonce {
            protected.insert("nonce".into(), nonce.into());
        }
        protected.insert("url".into(), url.into());
        match signer {
            Signer::Jwk(k) => protected.insert("jwk".into(), k.jwk()),
            Signer::Kid(_, kid) => protected.insert("kid".into(), (*kid).into()),
        };
        JwsParts {
            protected,
            payload: payload.encode(),
            header: None,
        }
    }

    /// Sets (adds or overrides) a protected-header member.
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.protected.insert(name.to_owned(), value.into());
        self
    }

    /// Removes a protected-header member.
    pub fn remove(mut self, name: &str) -> Self {
        self.protected.remove(name);
        self
    }

    /// Adds a `crit` member naming the given extensions.
    pub fn crit(self, names: &[&str]) -> Self {
        self.set("crit", json!(names))
    }

    /// Adds a member to the unprotected `header` object.
    pub fn unprotected(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header
            .get_or_insert_with(Map::new)
            .insert(name.to_owned(), value.into());
        self
    }

    /// Replaces the payload with arbitrary bytes (not necessarily JSON).
    pub fn raw_payload(mut self, bytes: &[u8]) -> Self {
        self.payload = b64(bytes);
        self
    }

    fn encoded_protected(&self) -> String {
        b64(Value::Object(self.protected.clone()).to_string())
    }

    /// Signs `protected || '.' || payload` with `key` (any key, whatever `alg` says).
    pub fn sign(&self, key: &AccountKey) -> Result<FlatJws, Error> {
        let protected = self.encoded_protected();
        let signature = key.sign(format!("{protected}.{}", self.payload).as_bytes())?;
        Ok(FlatJws {
            protected,
            payload: self.payload.clone(),
            signature: b64(signature),
            header: self.header.clone(),
        })
    }

    /// MACs with HMAC-SHA256 (the external account binding's `HS256`).
    pub fn sign_hs256(&self, mac_key: &[u8]) -> FlatJws {
        let protected = self.encoded_protected();
        let key = hmac::Key::new(hmac::HMAC_SHA256, mac_key);
        let tag = hmac::sign(&key, format!("{protected}.{}", self.payload).as_bytes());
        FlatJws {
            protected,
            payload: self.payload.clone(),
            signature: b64(tag.as_ref()),
            header: self.header.clone(),
        }
    }
}

/// A signed flattened JWS; the strings stay editable (swap a payload, break a signature).
#[derive(Clone, Debug, Serialize)]
pub struct FlatJws {
    /// base64url protected header.
    pub protected: String,
    /// base64url payload.
    pub payload: String,
    /// base64url signature.
    pub signature: String,
    /// The unprotected header, when a test asked for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<Map<String, Value>>,
}

impl FlatJws {
    /// As a JSON value (to nest it, as keyChange and externalAccountBinding do).
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("protected".into(), self.protected.clone().into());
        map.insert("payload".into(), self.payload.clone().into());
        map.insert("signature".into(), self.signature.clone().into());
        if let Some(header) = &self.header {
            map.insert("header".into(), Value::Object(header.clone()));
        }
        Value::Object(map)
    }

    /// The request body (`application/jose+json`).
    pub fn to_body(&self) -> Vec<u8> {
        self.to_value().to_string().into_bytes()
    }
}

/// The RFC 8555 section 7.3.4 external account binding: an HS256 JWS over the account's JWK,
/// with `kid` the EAB key identifier and `url` the newAccount URL, and no nonce.
pub fn eab_jws(account_key: &AccountKey, eab_kid: &str, hmac_key: &[u8], new_account_url: &str) -> FlatJws {
    let mut protected = Map::new();
    protected.insert("alg".into(), "HS256".into());
    protected.insert("kid".into(), eab_kid.into());
    protected.insert("url".into(), new_account_url.into());
    JwsParts {
        protected,
        payload: Payload::Json(account_key.jwk()).encode(),
        header: None,
    }
    .sign_hs256(hmac_key)
}

/// The RFC 8555 section 7.3.5 inner keyChange JWS: signed by the new key, `jwk` of the new key,
/// `url` the keyChange URL, no nonce, payload `{account, oldKey}`.
pub fn key_change_inner(
    new_key: &AccountKey,
    old_key: &AccountKey,
    account_url: &str,
    key_change_url: &str,
) -> Result<FlatJws, Error> {
    let payload = Payload::Json(json!({"account": account_url, "oldKey": old_key.jwk()}));
    JwsParts::new(key_change_url, None, &payload, &Signer::Jwk(new_key)).sign(new_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::key::KeyAlg;
    use crate::acme::testutil::{unb64, unb64_json, verify_with_jwk};

    fn verifies(jws: &FlatJws, jwk: &Value) -> bool {
        let input = format!("{}.{}", jws.protected, jws.payload);
        verify_with_jwk(jwk, input.as_bytes(), &unb64(&jws.signature))
    }

    #[test]
    fn signed_requests_verify_and_carry_rfc8555_headers() {
        for alg in [KeyAlg::Es256, KeyAlg::Rs256, KeyAlg::EdDsa] {
            let key = AccountKey::generate(alg).expect("generate");
            let payload = Payload::Json(json!({"identifiers": []}));
            let cases = [
                ("good_jwk", Signer::Jwk(&key)),
                ("good_kid", Signer::Kid(&key, "https://ca.test/acct/1")),
            ];
            for (name, signer) in cases {
                let jws = JwsParts::new("https://ca.test/new-order", Some("n0nce"), &payload, &signer)
                    .sign(&key)
                    .expect("sign");
                assert!(verifies(&jws, &key.jwk()), "{name} {alg:?}");
                let header = unb64_json(&jws.protected);
                assert_eq!(header["alg"], alg.jws_alg(), "{name}");
                assert_eq!(header["nonce"], "n0nce", "{name}");
                assert_eq!(header["url"], "https://ca.test/new-order", "{name}");
                match signer {
                    Signer::Jwk(_) => {
                        assert_eq!(header["jwk"], key.jwk());
                        assert!(header.get("kid").is_none());
                    }
                    Signer::Kid(..) => {
                        assert_eq!(header["kid"], "https://ca.test/acct/1");
                        assert!(header.get("jwk").is_none());
                    }
                }
                assert_eq!(unb64_json(&jws.payload), json!({"identifiers": []}));
                let body: Value = serde_json::from_slice(&jws.to_body()).expect("JSON body");
                assert!(body.get("header").is_none(), "{name}: no unprotected header");
            }
        }
    }

    #[test]
    fn post_as_get_has_an_empty_payload() {
        let key = AccountKey::generate(KeyAlg::Es256).expect("generate");
        let jws = JwsParts::new("u", Some("n"), &Payload::Empty, &Signer::Kid(&key, "k"))
            .sign(&key)
            .expect("sign");
        assert_eq!(jws.payload, "");
        assert!(verifies(&jws, &key.jwk()));
    }

    #[test]
    fn forged_parts_are_signed_as_given() {
        let key = AccountKey::generate(KeyAlg::Es256).expect("generate");
        let other = AccountKey::generate(KeyAlg::Es256).expect("generate");
        let parts = JwsParts::new("u", Some("n"), &Payload::Empty, &Signer::Jwk(&key))
            .set("alg", "none")
            .remove("nonce")
            .set("kid", "https://ca.test/acct/9")
            .crit(&["b64"])
            .unprotected("nonce", "outside")
            .raw_payload(b"not json");
        let jws = parts.sign(&other).expect("sign");
        let header = unb64_json(&jws.protected);
        assert_eq!(header["alg"], "none");
        assert!(header.get("nonce").is_none());
        assert_eq!(header["kid"], "https://ca.test/acct/9");
        assert_eq!(header["jwk"], key.jwk(), "jwk stays unless removed");
        assert_eq!(header["crit"], json!(["b64"]));
        assert_eq!(unb64(&jws.payload), b"not json");
        assert_eq!(jws.to_value()["header"], json!({"nonce": "outside"}));
        assert!(verifies(&jws, &other.jwk()), "signed by the key given to sign()");
        assert!(!verifies(&jws, &key.jwk()));
    }

    #[test]
    fn eab_is_hs256_over_the_account_jwk() {
        let key = AccountKey::generate(KeyAlg::Es256).expect("generate");
        let mac_key = b"0123456789abcdef0123456789abcdef";
        let eab = eab_jws(&key, "kid-1", mac_key, "https://ca.test/new-acct");
        let header = unb64_json(&eab.protected);
        assert_eq!(
            header,
            json!({"alg": "HS256", "kid": "kid-1", "url": "https://ca.test/new-acct"}),
            "no nonce, no jwk (RFC 8555 section 7.3.4)"
        );
        assert_eq!(unb64_json(&eab.payload), key.jwk());
        let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, mac_key);
        let input = format!("{}.{}", eab.protected, eab.payload);
        assert!(hmac::verify(&hmac_key, input.as_bytes(), &unb64(&eab.signature)).is_ok());
        let wrong = hmac::Key::new(hmac::HMAC_SHA256, b"another key");
        assert!(hmac::verify(&wrong, input.as_bytes(), &unb64(&eab.signature)).is_err());
        let as_value = eab.to_value();
        let mut members: Vec<&str> = as_value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(members, ["payload", "protected", "signature"]);
    }

    #[test]
    fn key_change_inner_is_signed_by_the_new_key() {
        let old = AccountKey::generate(KeyAlg::Es256).expect("generate");
        let new = AccountKey::generate(KeyAlg::EdDsa).expect("generate");
        let inner = key_change_inner(&new, &old, "https://ca.test/acct/1", "https://ca.test/key-change").expect("sign");
        let header = unb64_json(&inner.protected);
        assert_eq!(header["jwk"], new.jwk());
        assert_eq!(header["url"], "https://ca.test/key-change");
        assert!(header.get("nonce").is_none());
        assert_eq!(
            unb64_json(&inner.payload),
            json!({"account": "https://ca.test/acct/1", "oldKey": old.jwk()})
        );
        assert!(verifies(&inner, &new.jwk()));
    }
}
