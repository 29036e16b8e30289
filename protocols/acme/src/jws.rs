//! ACME's JWS profile (RFC 8555 6.2): flattened JSON serialization only, a protected header
//! with `alg`, `nonce`, `url` and exactly one of `jwk` and `kid`; no unprotected header, no
//! `crit`, no `b64`. Signatures are verified with aws-lc-rs (josekit checks `"critical"` instead
//! of `"crit"`, merges unprotected headers, and costs ~0.3 ms per key import: shared/deps.md).

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

/// base64url without padding, strictly (RFC 7515 2): padding is an error.
pub(crate) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// The largest JWS body accepted (a CSR of 64 KiB, base64-encoded, with room to spare).
pub const MAX_JWS_LEN: usize = 128 * 1024;

/// Why a JWS was refused, in RFC 8555 terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Not a flattened JWS ACME accepts (syntax, members, header fields).
    #[error("{0}")]
    Malformed(String),
    /// `alg` is missing, `none`, an HMAC, unknown, or does not fit the key.
    #[error("{0}")]
    BadSignatureAlgorithm(String),
    /// The key is not usable (unsupported type or curve, RSA under 2048 bits, bad encoding).
    #[error("{0}")]
    BadPublicKey(String),
    /// The signature does not verify with the key.
    #[error("JWS signature does not verify")]
    BadSignature,
}

/// The signature algorithms ACME clients may use here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA P-256 SHA-256.
    Es256,
    /// ECDSA P-384 SHA-384.
    Es384,
    /// ECDSA P-521 SHA-512.
    Es512,
    /// RSASSA-PKCS1-v1_5 SHA-256.
    Rs256,
    /// RSASSA-PSS SHA-256.
    Ps256,
    /// Ed25519.
    EdDsa,
}

impl Algorithm {
    /// The names, as the directory and badSignatureAlgorithm problems list them.
    pub const NAMES: [&'static str; 6] = ["ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"];

    fn parse(name: &str) -> Result<Self, JwsError> {
        Ok(match name {
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "ES512" => Self::Es512,
            "RS256" => Self::Rs256,
            "PS256" => Self::Ps256,
            "EdDSA" => Self::EdDsa,
            other => {
                return Err(JwsError::BadSignatureAlgorithm(format!(
                    "JWS algorithm {other:?} is not accepted; use one of {}",
                    Self::NAMES.join(", ")
                )));
            }
        })
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// An account public key from a JWK, checked and ready to verify with (cache it per account).
#[derive(Clone, PartialEq, Eq)]
pub enum AccountKey {
    /// An EC key on P-256, P-384 or P-521: the uncompressed point.
    Ec {
        /// `crv`.
        curve: Curve,
        /// x coordinate, big-endian, full length.
        x: Vec<u8>,
        /// y coordinate, big-endian, full length.
        y: Vec<u8>,
    },
    /// An RSA key of at least 2048 bits.
    Rsa {
        /// Modulus, big-endian, no leading zeros.
        n: Vec<u8>,
        /// Public exponent, big-endian.
        e: Vec<u8>,
    },
    /// An Ed25519 key.
    Ed25519 {
        /// The 32-byte public key.
        x: Vec<u8>,
    },
}

/// The NIST curves ACME account keys may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// P-256.
    P256,
    /// P-384.
    P384,
    /// P-521.
    P521,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }

    fn verification_algorithm(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            Self::P521 => &signature::ECDSA_P521_SHA512_FIXED,
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountKey({})", self.thumbprint())
    }
}

fn member<'a>(object: &'a Map<String, Value>, name: &str) -> Result<&'a str, JwsError> {
    object
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| JwsError::BadPublicKey(format!("JWK member {name:?} is missing or not a string")))
}

fn b64_member(object: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JwsError> {
    B64URL
        .decode(member(object, name)?)
        .map_err(|_| JwsError::BadPublicKey(format!("JWK member {name:?} is not base64url")))
}

impl AccountKey {
    /// Parses a public JWK (RFC 7517/7518/8037). Private members are refused: a client that
    /// sends its private key has leaked it.
    pub fn from_jwk(jwk: &Value) -> Result<Self, JwsError> {
        let object = jwk
            .as_object()
            .ok_or_else(|| JwsError::BadPublicKey("JWK is not a JSON object".into()))?;
        if ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .any(|m| object.contains_key(*m))
        {
            return Err(JwsError::BadPublicKey("JWK contains private key material".into()));
        }
        match member(object, "kty")? {
            "EC" => {
                let curve = match member(object, "crv")? {
                    "P-256" => Curve::P256,
                    "P-384" => Curve::P384,
                    "P-521" => Curve::P521,
                    other => return Err(JwsError::BadPublicKey(format!("EC curve {other:?} is not accepted"))),
                };
                let (x, y) = (b64_member(object, "x")?, b64_member(object, "y")?);
                if x.len() != curve.coordinate_len() || y.len() != curve.coordinate_len() {
                    return Err(JwsError::BadPublicKey(format!(
                        "{} coordinates have the wrong length",
                        curve.name()
                    )));
                }
                // A point off the curve is a bad key (RFC 8555 badPublicKey), not a bad
                // signature: say so before any signature is checked with it.
                signature::ParsedPublicKey::new(curve.verification_algorithm(), uncompressed_point(&x, &y))
                    .map_err(|_| JwsError::BadPublicKey(format!("the point is not on {}", curve.name())))?;
                Ok(Self::Ec { curve, x, y })
            }
            "RSA" => {
                let n = b64_member(object, "n")?;
                let e = b64_member(object, "e")?;
                if n.first() == Some(&0) || e.is_empty() || e.first() == Some(&0) || e.len() > 4 {
                    return Err(JwsError::BadPublicKey(
                        "RSA n or e is not a minimal positive integer".into(),
                    ));
                }
                let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
                if !(2048..=8192).contains(&bits) {
                    return Err(JwsError::BadPublicKey(format!(
                        "RSA keys must have 2048 to 8192 bits, not {bits}"
                    )));
                }
                Ok(Self::Rsa { n, e })
            }
            "OKP" => match member(object, "crv")? {
                "Ed25519" => {
                    let x = b64_member(object, "x")?;
                    if x.len() != 32 {
                        return Err(JwsError::BadPublicKey("Ed25519 keys are 32 bytes".into()));
                    }
                    Ok(Self::Ed25519 { x })
                }
                other => Err(JwsError::BadPublicKey(format!("OKP curve {other:?} is not accepted"))),
            },
            other => Err(JwsError::BadPublicKey(format!(
                "JWK key type {other:?} is not accepted"
            ))),
        }
    }

    /// The key of a DER SubjectPublicKeyInfo (a CSR's or certificate's key), to compare with
    /// account keys; `None` for key types ACME accounts cannot have.
    pub fn from_spki_der(spki_der: &[u8]) -> Option<Self> {
        use der::Decode;
        let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der).ok()?;
        let key = spki.subject_public_key.as_bytes()?;
        match spki.algorithm.oid.to_string().as_str() {
            "1.2.840.10045.2.1" => {
                let curve_oid = spki
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())?;
                let curve = match curve_oid.to_string().as_str() {
                    "1.2.840.10045.3.1.7" => Curve::P256,
                    "1.3.132.0.34" => Curve::P384,
                    "1.3.132.0.35" => Curve::P521,
                    _ => return None,
                };
                let len = curve.coordinate_len();
                if key.len() != 1 + 2 * len || key[0] != 4 {
                    return None;
                }
                Some(Self::Ec {
                    curve,
                    x: key[1..=len].to_vec(),
                    y: key[1 + len..].to_vec(),
                })
            }
            "1.2.840.113549.1.1.1" => {
                let rsa = RsaPublicKey::from_der(key).ok()?;
                Some(Self::Rsa {
                    n: rsa.modulus.as_bytes().to_vec(),
                    e: rsa.public_exponent.as_bytes().to_vec(),
                })
            }
            "1.3.101.112" if key.len() == 32 => Some(Self::Ed25519 { x: key.to_vec() }),
            _ => None,
        }
    }

    /// The public JWK with only the required members, in RFC 7638's lexicographic order.
    pub fn canonical_jwk(&self) -> String {
        let b = |bytes: &[u8]| B64URL.encode(bytes);
        match self {
            Self::Ec { curve, x, y } => {
                format!(
                    r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                    curve.name(),
                    b(x),
                    b(y)
                )
            }
            Self::Rsa { n, e } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b(e), b(n)),
            Self::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b(x)),
        }
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url: the key's identity (key authorizations,
    /// account lookup by key).
    pub fn thumbprint(&self) -> String {
        B64URL.encode(digest::digest(&digest::SHA256, self.canonical_jwk().as_bytes()))
    }

    fn accepts(&self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Self::Ec { curve: Curve::P256, .. }, Algorithm::Es256)
                | (Self::Ec { curve: Curve::P384, .. }, Algorithm::Es384)
                | (Self::Ec { curve: Curve::P521, .. }, Algorithm::Es512)
                | (Self::Rsa { .. }, Algorithm::Rs256 | Algorithm::Ps256)
                | (Self::Ed25519 { .. }, Algorithm::EdDsa)
        )
    }

    /// Verifies `signature` over `message` with `alg`.
    pub fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> Result<(), JwsError> {
        if !self.accepts(alg) {
            return Err(JwsError::BadSignatureAlgorithm(format!(
                "algorithm {} does not fit this {} key",
                alg.name(),
                self.kind()
            )));
        }
        let result = match self {
            Self::Ec { curve, x, y } => {
                UnparsedPublicKey::new(curve.verification_algorithm(), uncompressed_point(x, y)).verify(message, sig)
            }
            Self::Rsa { n, e } => {
                let parameters = if alg == Algorithm::Ps256 {
                    &signature::RSA_PSS_2048_8192_SHA256
                } else {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                };
                RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .verify(parameters, message, sig)
            }
            Self::Ed25519 { x } => UnparsedPublicKey::new(&signature::ED25519, x).verify(message, sig),
        };
        result.map_err(|_| JwsError::BadSignature)
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Ec { curve, .. } => curve.name(),
            Self::Rsa { .. } => "RSA",
            Self::Ed25519 { .. } => "Ed25519",
        }
    }
}

/// The SEC1 uncompressed encoding of an EC point, as the verifiers take it.
fn uncompressed_point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    point
}

/// An account key parsed once for verification: accounts keep one in their cache entry, so
/// a request pays for the signature check only, not for decoding and validating the point.
#[derive(Debug)]
pub struct AccountVerifier {
    key: AccountKey,
    /// EC and Ed25519 keys; RSA verifies from its components (PKCS#1 or PSS per request).
    parsed: Option<signature::ParsedPublicKey>,
}

impl AccountVerifier {
    /// Parses `key` for verification.
    pub fn new(key: AccountKey) -> Self {
        let parsed = match &key {
            AccountKey::Ec { curve, x, y } => {
                signature::ParsedPublicKey::new(curve.verification_algorithm(), uncompressed_point(x, y)).ok()
            }
            AccountKey::Ed25519 { x } => signature::ParsedPublicKey::new(&signature::ED25519, x).ok(),
            AccountKey::Rsa { .. } => None,
        };
        Self { key, parsed }
    }

    /// The key.
    pub fn key(&self) -> &AccountKey {
        &self.key
    }

    /// Verifies like [`AccountKey::verify`].
    pub fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> Result<(), JwsError> {
        match &self.parsed {
            Some(parsed) if self.key.accepts(alg) => {
                parsed.verify_sig(message, sig).map_err(|_| JwsError::BadSignature)
            }
            _ => self.key.verify(alg, message, sig),
        }
    }
}

/// PKCS#1 RSAPublicKey.
#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: der::asn1::UintRef<'a>,
    public_exponent: der::asn1::UintRef<'a>,
}

/// Who signed: a new key (newAccount, revokeCert by certificate key) or an account URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// `jwk`: the key itself.
    Jwk(AccountKey),
    /// `kid`: the account URL.
    Kid(String),
}

/// The protected header, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedHeader {
    /// `alg`.
    pub alg: Algorithm,
    /// `nonce`, as sent.
    pub nonce: String,
    /// `url`, as sent.
    pub url: String,
    /// `jwk` or `kid`.
    pub signer: Signer,
}

/// A flattened JWS whose structure and header were checked, not yet its signature.
#[derive(Debug, Clone)]
pub struct ParsedJws {
    header: ProtectedHeader,
    signing_input: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

fn malformed(message: impl Into<String>) -> JwsError {
    JwsError::Malformed(message.into())
}

impl ParsedJws {
    /// Parses a request body: a JSON object with exactly `protected`, `payload` and
    /// `signature` (all base64url strings), and a protected header ACME allows.
    pub fn parse(body: &[u8]) -> Result<Self, JwsError> {
        Self::parse_with(body, NonceRule::Required)
    }

    /// Parses the inner JWS of a keyChange request (RFC 8555 7.3.5): signed by the new key
    /// with `jwk`, and without a nonce.
    pub fn parse_key_change_inner(body: &[u8]) -> Result<Self, JwsError> {
        Self::parse_with(body, NonceRule::Forbidden)
    }

    fn parse_with(body: &[u8], nonce_rule: NonceRule) -> Result<Self, JwsError> {
        if body.len() > MAX_JWS_LEN {
            return Err(malformed(format!("JWS larger than {MAX_JWS_LEN} bytes")));
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| malformed(format!("request body is not JSON: {e}")))?;
        let object = value.as_object().ok_or_else(|| malformed("JWS is not a JSON object"))?;
        if object.contains_key("signatures") {
            return Err(malformed(
                "JWS general serialization is not accepted; use the flattened form",
            ));
        }
        if object.contains_key("header") {
            return Err(malformed("JWS unprotected headers are not accepted"));
        }
        if let Some(unknown) = object
            .keys()
            .find(|k| !["protected", "payload", "signature"].contains(&k.as_str()))
        {
            return Err(malformed(format!("unexpected JWS member {unknown:?}")));
        }
        let part = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(format!("JWS member {name:?} is missing")))
        };
        let (protected_b64, payload_b64, signature_b64) = (part("protected")?, part("payload")?, part("signature")?);
        let decode = |name: &str, text: &str| {
            B64URL
                .decode(text)
                .map_err(|_| malformed(format!("JWS {name} is not base64url without padding")))
        };
        let protected = decode("protected header", protected_b64)?;
        let payload = decode("payload", payload_b64)?;
        let signature = decode("signature", signature_b64)?;
        if signature.is_empty() {
            return Err(malformed("JWS signature is empty"));
        }
        let header = parse_protected(&protected, nonce_rule)?;
        let mut signing_input = Vec::with_capacity(protected_b64.len() + 1 + payload_b64.len());
        signing_input.extend_from_slice(protected_b64.as_bytes());
        signing_input.push(b'.');
        signing_input.extend_from_slice(payload_b64.as_bytes());
        Ok(Self {
            header,
            signing_input,
            payload,
            signature,
        })
    }

    /// The protected header.
    pub fn header(&self) -> &ProtectedHeader {
        &self.header
    }

    /// Verifies the signature with `key` (the embedded `jwk`, or the account's key for a
    /// `kid`) and returns the payload (empty for POST-as-GET).
    pub fn verify(self, key: &AccountKey) -> Result<Vec<u8>, JwsError> {
        key.verify(self.header.alg, &self.signing_input, &self.signature)?;
        Ok(self.payload)
    }

    /// The same with an account's cached verifier.
    pub fn verify_with(self, verifier: &AccountVerifier) -> Result<Vec<u8>, JwsError> {
        verifier.verify(self.header.alg, &self.signing_input, &self.signature)?;
        Ok(self.payload)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonceRule {
    Required,
    Forbidden,
}

fn parse_protected(bytes: &[u8], nonce_rule: NonceRule) -> Result<ProtectedHeader, JwsError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| malformed("JWS protected header is not JSON"))?;
    let header = value
        .as_object()
        .ok_or_else(|| malformed("JWS protected header is not a JSON object"))?;
    if header.contains_key("crit") {
        return Err(malformed("JWS \"crit\" header parameters are not supported"));
    }
    if header.contains_key("b64") {
        return Err(malformed("JWS \"b64\" is not accepted"));
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Algorithm::parse(name)?,
        _ => {
            return Err(JwsError::BadSignatureAlgorithm(
                "JWS protected header has no \"alg\"".into(),
            ));
        }
    };
    let text = |name: &str| match header.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(malformed(format!("JWS protected header has no {name:?}"))),
    };
    let nonce = match nonce_rule {
        NonceRule::Required => text("nonce")?,
        NonceRule::Forbidden if header.contains_key("nonce") => {
            return Err(malformed("the inner keyChange JWS must not carry a nonce"));
        }
        NonceRule::Forbidden => String::new(),
    };
    let url = text("url")?;
    let signer = match (header.get("jwk"), header.get("kid")) {
        (Some(jwk), None) => Signer::Jwk(AccountKey::from_jwk(jwk)?),
        (None, Some(Value::String(kid))) if !kid.is_empty() => Signer::Kid(kid.clone()),
        (None, Some(_)) => return Err(malformed("JWS \"kid\" must be the account URL")),
        (Some(_), Some(_)) => return Err(malformed("JWS protected header has both \"jwk\" and \"kid\"")),
        (None, None) => return Err(malformed("JWS protected header has neither \"jwk\" nor \"kid\"")),
    };
    Ok(ProtectedHeader {
        alg,
        nonce,
        url,
        signer,
    })
}
