//! PKCS#10 parsing and proof-of-possession check.
//!
//! rcgen refuses CSRs that request extensions it does not know (shared/deps.md), and real
//! devices send many; so certgate parses CSRs itself and hands the signer only the facts the
//! authority decided on.

use std::fmt;
use std::net::IpAddr;

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use const_oid::ObjectIdentifier;
use const_oid::db::{rfc4519, rfc5280};
use der::asn1::{Ia5String, OctetString, PrintableString, TeletexString, UintRef, Utf8StringRef};
use der::{Decode, Encode, Reader, Sequence, SliceReader, Tag, Tagged};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::request::CertReq;

use crate::DnsName;
use crate::identifier::{Identifier, IdentifierError};

/// The largest CSR certgate reads; real ones are a few hundred bytes to a few KiB.
pub const MAX_CSR_LEN: usize = 64 * 1024;

const OID_EXTENSION_REQUEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");
// Microsoft's pre-standard name for the same attribute (msCertExtensions); Windows clients send it.
const OID_MS_CERT_EXTENSIONS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.14");
const OID_CHALLENGE_PASSWORD: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_SHA1_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_SHA384_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_SHA512_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// Why a CSR could not be accepted as a well-formed, self-signed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// Larger than [`MAX_CSR_LEN`].
    #[error("CSR is larger than {MAX_CSR_LEN} bytes")]
    TooLarge,
    /// Not a DER-encoded PKCS#10 request (garbage, truncated, trailing bytes).
    #[error("CSR is not valid DER PKCS#10: {0}")]
    Malformed(String),
    /// The public key algorithm is not RSA, ECDSA or Ed25519.
    #[error("unsupported public key algorithm {0}")]
    UnsupportedKeyAlgorithm(String),
    /// An EC key on a curve other than P-256, P-384 or P-521.
    #[error("unsupported elliptic curve {0}")]
    UnsupportedCurve(String),
    /// The signature algorithm is unknown or does not fit the key.
    #[error("unsupported signature algorithm {0} for this key")]
    UnsupportedSignatureAlgorithm(String),
    /// The signature does not verify: the requester did not prove possession of the key.
    #[error("CSR signature does not verify")]
    BadSignature,
    /// A subjectAltName that is not a valid name of its kind.
    #[error("invalid subjectAltName: {0}")]
    BadSan(IdentifierError),
}

/// The public key in a CSR, as policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    /// RSA with this modulus size in bits.
    Rsa(u32),
    /// ECDSA on NIST P-256.
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// ECDSA on NIST P-521.
    EcP521,
    /// Ed25519.
    Ed25519,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa(bits) => write!(f, "RSA-{bits}"),
            Self::EcP256 => f.write_str("P-256"),
            Self::EcP384 => f.write_str("P-384"),
            Self::EcP521 => f.write_str("P-521"),
            Self::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

/// One attribute of the CSR's subject, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectAttribute {
    /// The attribute type (e.g. 2.5.4.3 for commonName).
    pub oid: ObjectIdentifier,
    /// The ASN.1 string type it was encoded with.
    pub tag: Tag,
    /// The value, decoded to text (lossy for BMP and universal strings).
    pub value: String,
}

/// A PKCS#10 request whose structure was parsed and whose signature verified.
#[derive(Clone)]
pub struct ParsedCsr {
    der: Vec<u8>,
    spki_der: Vec<u8>,
    key: KeyKind,
    signature_uses_sha1: bool,
    subject: Vec<SubjectAttribute>,
    subject_text: String,
    sans: Vec<Identifier>,
    unsupported_sans: Vec<&'static str>,
    requested_extensions: Vec<ObjectIdentifier>,
    challenge_password: Option<String>,
}

impl fmt::Debug for ParsedCsr {
    // The challenge password is a secret: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedCsr")
            .field("subject", &self.subject_text)
            .field("key", &self.key)
            .field("sans", &self.sans)
            .field("unsupported_sans", &self.unsupported_sans)
            .field(
                "challenge_password",
                &self.challenge_password.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// RFC 8017 RSAPublicKey, to read the modulus size.
#[derive(Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    #[allow(dead_code)] // decoded for structure, not read
    public_exponent: UintRef<'a>,
}

impl ParsedCsr {
    /// Parses a DER PKCS#10 request and verifies its self-signature.
    pub fn from_der(der: &[u8]) -> Result<Self, CsrError> {
        if der.len() > MAX_CSR_LEN {
            return Err(CsrError::TooLarge);
        }
        let malformed = |e: der::Error| CsrError::Malformed(e.to_string());
        let request = CertReq::from_der(der).map_err(malformed)?;

        // The signed bytes are the original encoding of CertificationRequestInfo: the first
        // element inside the outer SEQUENCE.
        let mut reader = SliceReader::new(der).map_err(malformed)?;
        der::Header::decode(&mut reader).map_err(malformed)?;
        let header_len = usize::try_from(reader.position()).map_err(malformed)?;
        let info_len = usize::try_from(request.info.encoded_len().map_err(malformed)?).map_err(malformed)?;
        let tbs = der
            .get(header_len..header_len + info_len)
            .ok_or_else(|| CsrError::Malformed("truncated request info".into()))?;

        let spki = &request.info.public_key;
        let spki_der = spki.to_der().map_err(malformed)?;
        let key_bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| CsrError::Malformed("public key BIT STRING has unused bits".into()))?;
        let key = key_kind(&spki.algorithm.oid, spki.algorithm.parameters.as_ref(), key_bits)?;

        let signature = request
            .signature
            .as_bytes()
            .ok_or_else(|| CsrError::Malformed("signature BIT STRING has unused bits".into()))?;
        let (algorithm, signature_uses_sha1) =
            verification_algorithm(key, &request.algorithm.oid, request.algorithm.parameters.as_ref())?;
        UnparsedPublicKey::new(algorithm, key_bits)
            .verify(tbs, signature)
            .map_err(|_| CsrError::BadSignature)?;

        let subject = request
            .info
            .subject
            .iter()
            .map(|atv| SubjectAttribute {
                oid: atv.oid,
                tag: atv.value.tag(),
                value: directory_string_text(&atv.value),
            })
            .collect();
        let subject_text = request.info.subject.to_string();

        let mut parsed = Self {
            der: der.to_vec(),
            spki_der,
            key,
            signature_uses_sha1,
            subject,
            subject_text,
            sans: Vec::new(),
            unsupported_sans: Vec::new(),
            requested_extensions: Vec::new(),
            challenge_password: None,
        };
        for attribute in request.info.attributes.iter() {
            if attribute.oid == OID_EXTENSION_REQUEST || attribute.oid == OID_MS_CERT_EXTENSIONS {
                for value in attribute.values.iter() {
                    let extensions: Vec<x509_cert::ext::Extension> = value.decode_as().map_err(malformed)?;
                    for extension in extensions {
                        parsed.take_extension(&extension)?;
                    }
                }
            } else if attribute.oid == OID_CHALLENGE_PASSWORD {
                parsed.challenge_password = attribute.values.iter().next().map(directory_string_text);
            }
        }
        Ok(parsed)
    }

    fn take_extension(&mut self, extension: &x509_cert::ext::Extension) -> Result<(), CsrError> {
        self.requested_extensions.push(extension.extn_id);
        if extension.extn_id != rfc5280::ID_CE_SUBJECT_ALT_NAME {
            return Ok(());
        }
        let names = SubjectAltName::from_der(extension.extn_value.as_bytes())
            .map_err(|e| CsrError::Malformed(format!("subjectAltName: {e}")))?;
        for name in names.0 {
            match name {
                GeneralName::DnsName(dns) => {
                    let dns = DnsName::new(dns.as_str()).map_err(CsrError::BadSan)?;
                    self.sans.push(Identifier::Dns(dns));
                }
                GeneralName::IpAddress(octets) => self.sans.push(Identifier::Ip(ip_from_octets(&octets)?)),
                GeneralName::Rfc822Name(email) => self
                    .sans
                    .push(Identifier::email(email.as_str()).map_err(CsrError::BadSan)?),
                GeneralName::UniformResourceIdentifier(uri) => {
                    self.sans.push(Identifier::uri(uri.as_str()).map_err(CsrError::BadSan)?)
                }
                GeneralName::OtherName(_) => self.unsupported_sans.push("otherName"),
                GeneralName::DirectoryName(_) => self.unsupported_sans.push("directoryName"),
                GeneralName::EdiPartyName(_) => self.unsupported_sans.push("ediPartyName"),
                GeneralName::RegisteredId(_) => self.unsupported_sans.push("registeredID"),
            }
        }
        Ok(())
    }

    /// The request exactly as received (DER).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key type and size.
    pub fn key(&self) -> KeyKind {
        self.key
    }

    /// Whether the request was signed with a SHA-1 based algorithm.
    pub fn signature_uses_sha1(&self) -> bool {
        self.signature_uses_sha1
    }

    /// The subject's attributes in order.
    pub fn subject(&self) -> &[SubjectAttribute] {
        &self.subject
    }

    /// The subject as RFC 4514 text.
    pub fn subject_text(&self) -> &str {
        &self.subject_text
    }

    /// The subject's (last) commonName, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name_attribute().map(|a| a.value.as_str())
    }

    /// The subject's (last) commonName attribute, with its encoding.
    pub fn common_name_attribute(&self) -> Option<&SubjectAttribute> {
        self.subject.iter().rev().find(|a| a.oid == rfc4519::COMMON_NAME)
    }

    /// The names requested in subjectAltName, in order, duplicates kept.
    pub fn sans(&self) -> &[Identifier] {
        &self.sans
    }

    /// The kinds of requested subjectAltNames certgate cannot issue (otherName, …).
    pub fn unsupported_sans(&self) -> &[&'static str] {
        &self.unsupported_sans
    }

    /// The OIDs of every extension requested.
    pub fn requested_extensions(&self) -> &[ObjectIdentifier] {
        &self.requested_extensions
    }

    /// The challengePassword attribute (SCEP challenge, EST channel binding), if present.
    pub fn challenge_password(&self) -> Option<&str> {
        self.challenge_password.as_deref()
    }
}

fn ip_from_octets(octets: &OctetString) -> Result<IpAddr, CsrError> {
    let bytes = octets.as_bytes();
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::from(v6))
    } else {
        Err(CsrError::Malformed(format!("iPAddress SAN of {} bytes", bytes.len())))
    }
}

fn directory_string_text(value: &der::Any) -> String {
    let bytes = value.value();
    match value.tag() {
        Tag::Utf8String => Utf8StringRef::new(bytes).map(|s| s.as_str().to_owned()).ok(),
        Tag::PrintableString => PrintableString::new(bytes).map(|s| s.to_string()).ok(),
        Tag::Ia5String => Ia5String::new(bytes).map(|s| s.to_string()).ok(),
        Tag::TeletexString => TeletexString::new(bytes).map(|s| s.to_string()).ok(),
        Tag::BmpString => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
    .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

fn key_kind(algorithm: &ObjectIdentifier, parameters: Option<&der::Any>, key_bits: &[u8]) -> Result<KeyKind, CsrError> {
    if *algorithm == OID_RSA_ENCRYPTION {
        let key = RsaPublicKey::from_der(key_bits).map_err(|e| CsrError::Malformed(format!("RSA key: {e}")))?;
        let modulus = key.modulus.as_bytes();
        let leading = modulus.first().map_or(8, |b| b.leading_zeros());
        let bits = u32::try_from(modulus.len() * 8)
            .unwrap_or(u32::MAX)
            .saturating_sub(leading);
        Ok(KeyKind::Rsa(bits))
    } else if *algorithm == OID_EC_PUBLIC_KEY {
        let curve: ObjectIdentifier = parameters
            .ok_or_else(|| CsrError::Malformed("EC key without curve".into()))?
            .decode_as()
            .map_err(|_| CsrError::UnsupportedCurve("explicit parameters".into()))?;
        match curve {
            c if c == OID_P256 => Ok(KeyKind::EcP256),
            c if c == OID_P384 => Ok(KeyKind::EcP384),
            c if c == OID_P521 => Ok(KeyKind::EcP521),
            other => Err(CsrError::UnsupportedCurve(other.to_string())),
        }
    } else if *algorithm == OID_ED25519 {
        Ok(KeyKind::Ed25519)
    } else {
        Err(CsrError::UnsupportedKeyAlgorithm(algorithm.to_string()))
    }
}

/// RSASSA-PSS-params, RFC 4055: only the hash is read; aws-lc-rs checks the rest.
#[derive(Sequence)]
struct PssParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    hash: Option<spki::AlgorithmIdentifierOwned>,
}

fn verification_algorithm(
    key: KeyKind,
    signature_algorithm: &ObjectIdentifier,
    parameters: Option<&der::Any>,
) -> Result<(&'static dyn VerificationAlgorithm, bool), CsrError> {
    let unsupported = || CsrError::UnsupportedSignatureAlgorithm(signature_algorithm.to_string());
    let oid = *signature_algorithm;
    let chosen: &'static dyn VerificationAlgorithm = match key {
        // Keys under 2048 bits still get their proof of possession checked, so that policy can
        // refuse them with a precise "key too small" rather than "bad signature".
        KeyKind::Rsa(bits) if bits < 2048 => match oid {
            o if o == OID_SHA256_RSA => &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            o if o == OID_SHA512_RSA => &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
            o if o == OID_SHA1_RSA => &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            _ => return Err(unsupported()),
        },
        KeyKind::Rsa(_) => match oid {
            o if o == OID_SHA256_RSA => &signature::RSA_PKCS1_2048_8192_SHA256,
            o if o == OID_SHA384_RSA => &signature::RSA_PKCS1_2048_8192_SHA384,
            o if o == OID_SHA512_RSA => &signature::RSA_PKCS1_2048_8192_SHA512,
            o if o == OID_SHA1_RSA => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            o if o == OID_RSASSA_PSS => {
                let params: PssParams = parameters
                    .ok_or_else(unsupported)?
                    .decode_as()
                    .map_err(|_| unsupported())?;
                match params.hash.map(|h| h.oid) {
                    Some(h) if h == OID_SHA256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Some(h) if h == OID_SHA384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Some(h) if h == OID_SHA512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(unsupported()),
                }
            }
            _ => return Err(unsupported()),
        },
        KeyKind::EcP256 => match oid {
            o if o == OID_ECDSA_SHA256 => &signature::ECDSA_P256_SHA256_ASN1,
            o if o == OID_ECDSA_SHA384 => &signature::ECDSA_P256_SHA384_ASN1,
            o if o == OID_ECDSA_SHA512 => &signature::ECDSA_P256_SHA512_ASN1,
            _ => return Err(unsupported()),
        },
        KeyKind::EcP384 => match oid {
            o if o == OID_ECDSA_SHA256 => &signature::ECDSA_P384_SHA256_ASN1,
            o if o == OID_ECDSA_SHA384 => &signature::ECDSA_P384_SHA384_ASN1,
            o if o == OID_ECDSA_SHA512 => &signature::ECDSA_P384_SHA512_ASN1,
            _ => return Err(unsupported()),
        },
        KeyKind::EcP521 => match oid {
            o if o == OID_ECDSA_SHA256 => &signature::ECDSA_P521_SHA256_ASN1,
            o if o == OID_ECDSA_SHA384 => &signature::ECDSA_P521_SHA384_ASN1,
            o if o == OID_ECDSA_SHA512 => &signature::ECDSA_P521_SHA512_ASN1,
            _ => return Err(unsupported()),
        },
        KeyKind::Ed25519 if oid == OID_ED25519 => &signature::ED25519,
        KeyKind::Ed25519 => return Err(unsupported()),
    };
    Ok((chosen, oid == OID_SHA1_RSA))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_der(alg: &'static rcgen::SignatureAlgorithm, sans: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, "dev1");
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    #[test]
    fn good_csrs_parse_for_every_key_type() {
        let cases: [(&str, &'static rcgen::SignatureAlgorithm, KeyKind); 4] = [
            ("p256", &rcgen::PKCS_ECDSA_P256_SHA256, KeyKind::EcP256),
            ("p384", &rcgen::PKCS_ECDSA_P384_SHA384, KeyKind::EcP384),
            ("ed25519", &rcgen::PKCS_ED25519, KeyKind::Ed25519),
            ("p521", &rcgen::PKCS_ECDSA_P521_SHA512, KeyKind::EcP521),
        ];
        for (case, alg, want) in cases {
            let der = csr_der(alg, &["a.example.com", "10.0.0.1"]);
            let csr = ParsedCsr::from_der(&der).unwrap_or_else(|e| panic!("case {case}: {e}"));
            assert_eq!(csr.key(), want, "case {case}");
            assert_eq!(csr.common_name(), Some("dev1"), "case {case}");
            assert_eq!(csr.sans().len(), 2, "case {case}");
            assert_eq!(csr.subject_text(), "CN=dev1", "case {case}");
        }
    }

    #[test]
    fn bad_csrs_are_refused() {
        let good = csr_der(&rcgen::PKCS_ECDSA_P256_SHA256, &["a.example.com"]);
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        let mut tampered_name = good.clone();
        let at = tampered_name.windows(4).position(|w| w == b"dev1").unwrap();
        tampered_name[at] = b'x';
        type Check = fn(&CsrError) -> bool;
        let cases: Vec<(&str, Vec<u8>, Check)> = vec![
            ("empty", vec![], |e| matches!(e, CsrError::Malformed(_))),
            ("garbage", b"hello world".to_vec(), |e| {
                matches!(e, CsrError::Malformed(_))
            }),
            ("truncated", good[..good.len() / 2].to_vec(), |e| {
                matches!(e, CsrError::Malformed(_))
            }),
            ("trailing_bytes", [good.as_slice(), &[0, 0]].concat(), |e| {
                matches!(e, CsrError::Malformed(_))
            }),
            ("bad_signature", flipped, |e| {
                matches!(e, CsrError::BadSignature | CsrError::Malformed(_))
            }),
            ("tampered_subject", tampered_name, |e| {
                matches!(e, CsrError::BadSignature)
            }),
            ("too_large", vec![0x30; MAX_CSR_LEN + 1], |e| {
                matches!(e, CsrError::TooLarge)
            }),
        ];
        for (case, der, want) in cases {
            let err = ParsedCsr::from_der(&der).expect_err(case);
            assert!(want(&err), "case {case}: got {err:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = ParsedCsr::from_der(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_csrs(position in 0usize..400, value in proptest::num::u8::ANY, cut in 0usize..400) {
            static GOOD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            let good = GOOD.get_or_init(|| csr_der(&rcgen::PKCS_ECDSA_P256_SHA256, &["a.example.com", "192.0.2.1"]));
            let mut mutated = good.clone();
            let at = position % mutated.len();
            mutated[at] = value;
            mutated.truncate(mutated.len() - cut % mutated.len());
            let _ = ParsedCsr::from_der(&mutated);
        }
    }
}
