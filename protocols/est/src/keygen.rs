//! `/serverkeygen` (RFC 7030 4.4): a key generated here for the client, and the client's CSR
//! re-signed with it so the authority sees an ordinary, verified request.
//!
//! This is a client key, not a CA key: generating it here does not break the rule that only
//! the signer touches CA private keys. RSA generation takes up to seconds, so callers run
//! [`generate`] on a blocking thread.

use certgate_core::{KeyKind, ParsedCsr};
use const_oid::ObjectIdentifier;
use der::asn1::{BitString, Null};
use der::{Any, Decode, Encode};
use rcgen::{KeyPair, PublicKeyData, SigningKey};
use x509_cert::request::CertReq;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use zeroize::Zeroizing;

use crate::EstError;

const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A generated key and the CSR re-signed with it.
pub struct GeneratedKey {
    /// The private key, PKCS#8 DER; zeroed on drop.
    pub pkcs8: Zeroizing<Vec<u8>>,
    /// The client's CSR with the new public key, signed by the new key, parsed and verified.
    pub csr: ParsedCsr,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("pkcs8", &"<redacted>")
            .field("csr", &self.csr)
            .finish()
    }
}

fn generate_key(kind: KeyKind) -> Result<KeyPair, EstError> {
    let failed = |e: rcgen::Error| EstError::KeyGeneration(e.to_string());
    match kind {
        KeyKind::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed),
        KeyKind::EcP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(failed),
        KeyKind::EcP521 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).map_err(failed),
        KeyKind::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(failed),
        KeyKind::Rsa(bits) => {
            let size = match bits {
                2048 => rcgen::RsaKeySize::_2048,
                3072 => rcgen::RsaKeySize::_3072,
                4096 => rcgen::RsaKeySize::_4096,
                _ => return Err(EstError::KeyGeneration(format!("RSA-{bits} keys cannot be generated"))),
            };
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size).map_err(failed)
        }
    }
}

fn signature_algorithm(kind: KeyKind) -> Result<AlgorithmIdentifierOwned, EstError> {
    let (oid, parameters) = match kind {
        KeyKind::EcP256 => (ECDSA_SHA256, None),
        KeyKind::EcP384 => (ECDSA_SHA384, None),
        KeyKind::EcP521 => (ECDSA_SHA512, None),
        KeyKind::Ed25519 => (ED25519, None),
        KeyKind::Rsa(_) => (
            SHA256_RSA,
            Some(Any::encode_from(&Null).map_err(|e| EstError::KeyGeneration(e.to_string()))?),
        ),
    };
    Ok(AlgorithmIdentifierOwned { oid, parameters })
}

/// Whether keys of `kind` can be generated.
pub fn supported(kind: KeyKind) -> bool {
    !matches!(kind, KeyKind::Rsa(bits) if ![2048, 3072, 4096].contains(&bits))
}

/// Generates a key of `kind` and re-signs `client_csr` (DER) with it: the subject, attributes
/// and requested extensions stay the client's; only the public key and signature change.
pub fn generate(kind: KeyKind, client_csr: &[u8]) -> Result<GeneratedKey, EstError> {
    let failed = |e: der::Error| EstError::KeyGeneration(e.to_string());
    let key = generate_key(kind)?;
    let mut request =
        CertReq::from_der(client_csr).map_err(|e| EstError::Csr(certgate_core::CsrError::Malformed(e.to_string())))?;
    request.info.public_key = SubjectPublicKeyInfoOwned::from_der(&key.subject_public_key_info()).map_err(failed)?;
    let info = request.info.to_der().map_err(failed)?;
    let signature = key.sign(&info).map_err(|e| EstError::KeyGeneration(e.to_string()))?;
    request.algorithm = signature_algorithm(kind)?;
    request.signature = BitString::from_bytes(&signature).map_err(failed)?;
    let der = request.to_der().map_err(failed)?;
    let csr = ParsedCsr::from_der(&der).map_err(|e| EstError::KeyGeneration(format!("re-signed CSR: {e}")))?;
    Ok(GeneratedKey {
        pkcs8: Zeroizing::new(key.serialize_der()),
        csr,
    })
}
