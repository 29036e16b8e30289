//! Account keys (ES256, RS256, EdDSA), their JWKs and RFC 7638 thumbprints.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::Error;

/// base64url without padding, the encoding of every JWS and ACME binary field.
pub fn b64(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// The JWS algorithms an [`AccountKey`] can sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlg {
    /// ECDSA P-256 with SHA-256 (what most ACME clients use).
    Es256,
    /// RSA PKCS#1 v1.5 with SHA-256, 2048-bit keys when generated.
    Rs256,
    /// Ed25519.
    EdDsa,
}

impl KeyAlg {
    /// The JWS `alg` header value.
    pub fn jws_alg(self) -> &'static str {
        match self {
            KeyAlg::Es256 => "ES256",
            KeyAlg::Rs256 => "RS256",
            KeyAlg::EdDsa => "EdDSA",
        }
    }
}

enum Inner {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// An ACME account key (or a certificate key used to sign a revocation).
///
/// Cheap to clone (shared), so a caller can hold it while borrowing the client mutably.
#[derive(Clone)]
pub struct AccountKey(Arc<Inner>);

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key: the algorithm and the thumbprint identify it well enough.
        write!(f, "AccountKey({}, {})", self.alg().jws_alg(), self.thumbprint())
    }
}

fn key_err(what: &str, e: impl fmt::Display) -> Error {
    Error::Key(format!("{what}: {e}"))
}

impl AccountKey {
    /// A fresh random key.
    pub fn generate(alg: KeyAlg) -> Result<Self, Error> {
        let inner = match alg {
            KeyAlg::Es256 => Inner::Es256(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|e| key_err("generate P-256", e))?,
            ),
            KeyAlg::Rs256 => {
                Inner::Rs256(RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| key_err("generate RSA", e))?)
            }
            KeyAlg::EdDsa => Inner::EdDsa(Ed25519KeyPair::generate().map_err(|e| key_err("generate Ed25519", e))?),
        };
        Ok(AccountKey(Arc::new(inner)))
    }

    /// A key from PKCS#8 DER (e.g. rcgen's `KeyPair::serialize_der`, to revoke by certificate key).
    pub fn from_pkcs8(alg: KeyAlg, der: &[u8]) -> Result<Self, Error> {
        let inner = match alg {
            KeyAlg::Es256 => Inner::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| key_err("P-256 PKCS#8", e))?,
            ),
            KeyAlg::Rs256 => Inner::Rs256(RsaKeyPair::from_pkcs8(der).map_err(|e| key_err("RSA PKCS#8", e))?),
            KeyAlg::EdDsa => {
                Inner::EdDsa(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| key_err("Ed25519 PKCS#8", e))?)
            }
        };
        Ok(AccountKey(Arc::new(inner)))
    }

    /// The key as PKCS#8 DER, to keep an account across runs.
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, Error> {
        let der = match &*self.0 {
            Inner::Es256(k) => k.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
            Inner::Rs256(k) => k.as_der().map(|d| d.as_ref().to_vec()),
            Inner::EdDsa(k) => k.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
        };
        der.map_err(|e| key_err("encode PKCS#8", e))
    }

    /// Which algorithm this key signs with.
    pub fn alg(&self) -> KeyAlg {
        match &*self.0 {
            Inner::Es256(_) => KeyAlg::Es256,
            Inner::Rs256(_) => KeyAlg::Rs256,
            Inner::EdDsa(_) => KeyAlg::EdDsa,
        }
    }

    /// The public key as a JWK (only the members RFC 7638 uses, plus none else).
    pub fn jwk(&self) -> Value {
        match &*self.0 {
            Inner::Es256(k) => {
                // Invariant: a P-256 public key is the 65-byte uncompressed SEC1 point
                // 0x04 || x (32) || y (32); aws-lc-rs always returns that form.
                let point = k.public_key().as_ref();
                let (x, y) = point[1..].split_at(32);
                json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)})
            }
            Inner::Rs256(k) => {
                let public = k.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Inner::EdDsa(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        }
    }

    /// The RFC 7638 SHA-256 thumbprint of [`AccountKey::jwk`], base64url.
    pub fn thumbprint(&self) -> String {
        // The JWK built above always has the required members.
        jwk_thumbprint(&self.jwk()).unwrap_or_default()
    }

    /// The RFC 8555 section 8.1 key authorization: `token || '.' || thumbprint`.
    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint())
    }

    /// Signs `msg` as JWS wants it: ECDSA as fixed-width r||s, RSA PKCS#1 v1.5, Ed25519.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        let rng = SystemRandom::new();
        match &*self.0 {
            Inner::Es256(k) => k
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| key_err("ES256 sign", e)),
            Inner::Rs256(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|e| key_err("RS256 sign", e))?;
                Ok(sig)
            }
            Inner::EdDsa(k) => Ok(k.sign(msg).as_ref().to_vec()),
        }
    }
}

/// RFC 7638 thumbprint of any JWK (EC, RSA, OKP): SHA-256 over the required members in
/// lexicographic order without whitespace, base64url.
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, Error> {
    let kty = jwk.get("kty").and_then(Value::as_str).ok_or(Error::Jwk("no kty"))?;
    let members: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return Err(Error::Jwk("unknown kty")),
    };
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk
            .get(*name)
            .and_then(Value::as_str)
            .ok_or(Error::Jwk("a required member is missing or not a string"))?;
        if i > 0 {
            canonical.push(',');
        }
        // serde_json escapes exactly as JSON requires; the names need no escaping.
        canonical.push_str(&format!("\"{name}\":{}", Value::from(value)));
    }
    canonical.push('}');
    Ok(b64(digest(&SHA256, canonical.as_bytes())))
}

/// The dns-01 TXT record value: base64url(SHA-256(key authorization)).
pub fn dns01_txt_value(key_authorization: &str) -> String {
    b64(digest(&SHA256, key_authorization.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::testutil::verify_with_jwk;

    #[test]
    fn signatures_verify_with_the_jwk() {
        for alg in [KeyAlg::Es256, KeyAlg::Rs256, KeyAlg::EdDsa] {
            let key = AccountKey::generate(alg).expect("generate");
            let sig = key.sign(b"message").expect("sign");
            assert!(verify_with_jwk(&key.jwk(), b"message", &sig), "good_{alg:?}");
            assert!(!verify_with_jwk(&key.jwk(), b"massage", &sig), "bad_msg_{alg:?}");
            if alg == KeyAlg::Es256 {
                assert_eq!(sig.len(), 64, "ES256 is fixed-width r||s");
            }
        }
    }

    #[test]
    fn pkcs8_round_trip_keeps_the_key() {
        for alg in [KeyAlg::Es256, KeyAlg::Rs256, KeyAlg::EdDsa] {
            let key = AccountKey::generate(alg).expect("generate");
            let der = key.to_pkcs8().expect("encode");
            let again = AccountKey::from_pkcs8(alg, &der).expect("decode");
            assert_eq!(key.thumbprint(), again.thumbprint(), "{alg:?}");
        }
        assert!(AccountKey::from_pkcs8(KeyAlg::Es256, b"junk").is_err());
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 section 3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            jwk_thumbprint(&jwk).expect("thumbprint"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn thumbprint_refuses_incomplete_jwks() {
        let cases = [
            ("bad_no_kty", json!({"n": "x", "e": "y"})),
            ("bad_unknown_kty", json!({"kty": "oct", "k": "x"})),
            ("bad_ec_without_y", json!({"kty": "EC", "crv": "P-256", "x": "x"})),
            ("bad_number_member", json!({"kty": "RSA", "n": 1, "e": "AQAB"})),
        ];
        for (name, jwk) in cases {
            assert!(jwk_thumbprint(&jwk).is_err(), "{name}");
        }
    }

    #[test]
    fn key_authorization_and_dns01_value() {
        let key = AccountKey::generate(KeyAlg::Es256).expect("generate");
        let ka = key.key_authorization("tok");
        assert_eq!(ka, format!("tok.{}", key.thumbprint()));
        // RFC 8555 section 8.4: 43 characters of base64url SHA-256.
        assert_eq!(dns01_txt_value(&ka).len(), 43);
        assert!(!format!("{key:?}").contains("private"));
    }
}
