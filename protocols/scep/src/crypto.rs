//! The algorithms SCEP messages use: content encryption (DES, 3DES, AES-CBC), digests and
//! RSA key transport, with their object identifiers.

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use certgate_authority::{KeyTransport, RaDigest};
use const_oid::ObjectIdentifier;
use const_oid::db::{rfc5911, rfc5912};
use der::asn1::{Null, OctetString};
use der::{Any, Decode, Encode, Reader, SliceReader, Tag, TagNumber, Tagged};
use x509_cert::spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

/// DES-CBC (OIW).
pub const OID_DES_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.7");
/// DES-EDE3-CBC.
pub const OID_DES_EDE3_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.3.7");
/// AES-128-CBC.
pub const OID_AES128_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.2");
/// AES-192-CBC.
pub const OID_AES192_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.22");
/// AES-256-CBC.
pub const OID_AES256_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");
/// rsaEncryption: RSA keys, PKCS#1 v1.5 key transport, and OpenSSL's signatureAlgorithm.
pub const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-RSAES-OAEP.
pub const OID_RSAES_OAEP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");
/// id-mgf1.
pub const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
/// sha1WithRSAEncryption.
pub const OID_SHA1_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
/// sha256WithRSAEncryption.
pub const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
/// sha384WithRSAEncryption.
pub const OID_SHA384_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
/// sha512WithRSAEncryption.
pub const OID_SHA512_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// A content-encryption algorithm of an EnvelopedData.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentCipher {
    /// Single DES-CBC (legacy; replies only where the endpoint allows it).
    Des,
    /// DES-EDE3-CBC.
    Des3,
    /// AES-128-CBC.
    Aes128,
    /// AES-192-CBC.
    Aes192,
    /// AES-256-CBC.
    Aes256,
}

/// Why symmetric decryption failed. Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecryptFailed;

impl ContentCipher {
    /// Every cipher, weakest first.
    pub const ALL: [Self; 5] = [Self::Des, Self::Des3, Self::Aes128, Self::Aes192, Self::Aes256];

    /// The algorithm's OID.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Des => OID_DES_CBC,
            Self::Des3 => OID_DES_EDE3_CBC,
            Self::Aes128 => OID_AES128_CBC,
            Self::Aes192 => OID_AES192_CBC,
            Self::Aes256 => OID_AES256_CBC,
        }
    }

    /// The cipher with this OID.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.oid() == *oid)
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Self::Des => 8,
            Self::Des3 => 24,
            Self::Aes128 => 16,
            Self::Aes192 => 24,
            Self::Aes256 => 32,
        }
    }

    /// Block (and IV) length in bytes.
    pub fn block_len(self) -> usize {
        match self {
            Self::Des | Self::Des3 => 8,
            _ => 16,
        }
    }

    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Des => "des-cbc",
            Self::Des3 => "des-ede3-cbc",
            Self::Aes128 => "aes-128-cbc",
            Self::Aes192 => "aes-192-cbc",
            Self::Aes256 => "aes-256-cbc",
        }
    }

    /// CBC-encrypts `plaintext` with PKCS#7 padding.
    pub fn encrypt(self, key: &[u8], iv: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, DecryptFailed> {
        fn run<C: KeyIvInit + BlockModeEncrypt>(key: &[u8], iv: &[u8], data: &[u8]) -> Result<Vec<u8>, DecryptFailed> {
            Ok(C::new_from_slices(key, iv)
                .map_err(|_| DecryptFailed)?
                .encrypt_padded_vec::<Pkcs7>(data))
        }
        match self {
            Self::Des => run::<cbc::Encryptor<des::Des>>(key, iv, plaintext),
            Self::Des3 => run::<cbc::Encryptor<des::TdesEde3>>(key, iv, plaintext),
            Self::Aes128 => run::<cbc::Encryptor<aes::Aes128>>(key, iv, plaintext),
            Self::Aes192 => run::<cbc::Encryptor<aes::Aes192>>(key, iv, plaintext),
            Self::Aes256 => run::<cbc::Encryptor<aes::Aes256>>(key, iv, plaintext),
        }
    }

    /// CBC-decrypts and unpads; any failure (key or IV length, length, padding) is the same
    /// [`DecryptFailed`].
    pub fn decrypt(self, key: &[u8], iv: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptFailed> {
        fn run<C: KeyIvInit + BlockModeDecrypt>(
            key: &[u8],
            iv: &[u8],
            data: &[u8],
        ) -> Result<Zeroizing<Vec<u8>>, DecryptFailed> {
            C::new_from_slices(key, iv)
                .map_err(|_| DecryptFailed)?
                .decrypt_padded_vec::<Pkcs7>(data)
                .map(Zeroizing::new)
                .map_err(|_| DecryptFailed)
        }
        match self {
            Self::Des => run::<cbc::Decryptor<des::Des>>(key, iv, ciphertext),
            Self::Des3 => run::<cbc::Decryptor<des::TdesEde3>>(key, iv, ciphertext),
            Self::Aes128 => run::<cbc::Decryptor<aes::Aes128>>(key, iv, ciphertext),
            Self::Aes192 => run::<cbc::Decryptor<aes::Aes192>>(key, iv, ciphertext),
            Self::Aes256 => run::<cbc::Decryptor<aes::Aes256>>(key, iv, ciphertext),
        }
    }

    /// The AlgorithmIdentifier with `iv` as its OCTET STRING parameter.
    pub fn algorithm_identifier(self, iv: &[u8]) -> Result<AlgorithmIdentifierOwned, der::Error> {
        Ok(AlgorithmIdentifierOwned {
            oid: self.oid(),
            parameters: Some(Any::encode_from(&OctetString::new(iv)?)?),
        })
    }
}

/// A message digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlg {
    /// SHA-1 (only where an endpoint allows it).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl DigestAlg {
    /// The digest's OID.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha1 => rfc5912::ID_SHA_1,
            Self::Sha256 => rfc5912::ID_SHA_256,
            Self::Sha384 => rfc5912::ID_SHA_384,
            Self::Sha512 => rfc5912::ID_SHA_512,
        }
    }

    /// The digest with this OID.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|d| d.oid() == *oid)
    }

    /// The `sha*WithRSAEncryption` OID.
    pub fn rsa_signature_oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha1 => OID_SHA1_RSA,
            Self::Sha256 => OID_SHA256_RSA,
            Self::Sha384 => OID_SHA384_RSA,
            Self::Sha512 => OID_SHA512_RSA,
        }
    }

    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Self::Sha1 => &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &aws_lc_rs::digest::SHA256,
            Self::Sha384 => &aws_lc_rs::digest::SHA384,
            Self::Sha512 => &aws_lc_rs::digest::SHA512,
        };
        aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
    }

    /// The RSA PKCS#1 v1.5 verification algorithm for this digest.
    pub fn rsa_verification(self) -> &'static aws_lc_rs::signature::RsaParameters {
        match self {
            Self::Sha1 => &aws_lc_rs::signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &aws_lc_rs::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            Self::Sha384 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA384,
            Self::Sha512 => &aws_lc_rs::signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
        }
    }

    /// The digest the RA signs with for a request that used this one: the same, except that
    /// SHA-1 is answered with SHA-256 (the RA never makes SHA-1 signatures).
    pub fn reply_digest(self) -> RaDigest {
        match self {
            Self::Sha1 | Self::Sha256 => RaDigest::Sha256,
            Self::Sha384 => RaDigest::Sha384,
            Self::Sha512 => RaDigest::Sha512,
        }
    }

    /// The algorithm for an [`RaDigest`].
    pub fn from_ra(digest: RaDigest) -> Self {
        match digest {
            RaDigest::Sha1 => Self::Sha1,
            RaDigest::Sha256 => Self::Sha256,
            RaDigest::Sha384 => Self::Sha384,
            RaDigest::Sha512 => Self::Sha512,
        }
    }

    /// As an [`RaDigest`].
    pub fn to_ra(self) -> RaDigest {
        match self {
            Self::Sha1 => RaDigest::Sha1,
            Self::Sha256 => RaDigest::Sha256,
            Self::Sha384 => RaDigest::Sha384,
            Self::Sha512 => RaDigest::Sha512,
        }
    }

    /// The AlgorithmIdentifier (parameters absent, as OpenSSL writes SHA-2).
    pub fn algorithm_identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: self.oid(),
            parameters: None,
        }
    }
}

/// The key transport of a KeyTransRecipientInfo's keyEncryptionAlgorithm: rsaEncryption
/// (PKCS#1 v1.5) or RSAES-OAEP whose hash and MGF1 hash agree (SHA-1 by default).
pub fn key_transport_from(alg: &AlgorithmIdentifierOwned) -> Option<KeyTransport> {
    if alg.oid == OID_RSA_ENCRYPTION {
        return Some(KeyTransport::Pkcs1v15);
    }
    if alg.oid != OID_RSAES_OAEP {
        return None;
    }
    let Some(params) = &alg.parameters else {
        return Some(KeyTransport::Oaep(RaDigest::Sha1));
    };
    if params.tag() == Tag::Null {
        return Some(KeyTransport::Oaep(RaDigest::Sha1));
    }
    // RSAES-OAEP-params ::= SEQUENCE { hashAlgorithm [0], maskGenAlgorithm [1], pSourceAlgorithm [2] }
    let mut reader = SliceReader::new(params.value()).ok()?;
    let mut hash = DigestAlg::Sha1;
    let mut mgf_hash = DigestAlg::Sha1;
    while !reader.is_finished() {
        let field = Any::decode(&mut reader).ok()?;
        let number = match field.tag() {
            Tag::ContextSpecific { number, .. } => number,
            _ => return None,
        };
        let inner: AlgorithmIdentifierOwned = AlgorithmIdentifierOwned::from_der(field.value()).ok()?;
        if number == TagNumber(0) {
            hash = DigestAlg::from_oid(&inner.oid)?;
        } else if number == TagNumber(1) {
            if inner.oid != OID_MGF1 {
                return None;
            }
            let mgf: AlgorithmIdentifierOwned = inner.parameters.as_ref()?.decode_as().ok()?;
            mgf_hash = DigestAlg::from_oid(&mgf.oid)?;
        } else {
            // pSourceAlgorithm: only the default (empty label) is supported.
            return None;
        }
    }
    (hash == mgf_hash).then_some(KeyTransport::Oaep(hash.to_ra()))
}

/// The keyEncryptionAlgorithm for `transport`.
pub fn key_transport_identifier(transport: KeyTransport) -> Result<AlgorithmIdentifierOwned, der::Error> {
    match transport {
        KeyTransport::Pkcs1v15 => Ok(AlgorithmIdentifierOwned {
            oid: OID_RSA_ENCRYPTION,
            parameters: Some(Any::encode_from(&Null)?),
        }),
        KeyTransport::Oaep(RaDigest::Sha1) => Ok(AlgorithmIdentifierOwned {
            oid: OID_RSAES_OAEP,
            parameters: Some(Any::new(Tag::Sequence, Vec::new())?),
        }),
        KeyTransport::Oaep(digest) => {
            let hash = DigestAlg::from_ra(digest).algorithm_identifier();
            let mgf = AlgorithmIdentifierOwned {
                oid: OID_MGF1,
                parameters: Some(Any::encode_from(&hash)?),
            };
            let explicit = |number: u8, inner: &AlgorithmIdentifierOwned| -> Result<Vec<u8>, der::Error> {
                let body = inner.to_der()?;
                let tag = Tag::ContextSpecific {
                    constructed: true,
                    number: TagNumber(number.into()),
                };
                Any::new(tag, body)?.to_der()
            };
            let mut body = explicit(0, &hash)?;
            body.extend(explicit(1, &mgf)?);
            Ok(AlgorithmIdentifierOwned {
                oid: OID_RSAES_OAEP,
                parameters: Some(Any::new(Tag::Sequence, body)?),
            })
        }
    }
}

/// The signature algorithm identifiers a SignerInfo may carry for an RSA signature with
/// `digest`: rsaEncryption (OpenSSL) or the matching `sha*WithRSAEncryption`.
pub fn rsa_signature_matches(oid: &ObjectIdentifier, digest: DigestAlg) -> bool {
    *oid == OID_RSA_ENCRYPTION || *oid == digest.rsa_signature_oid()
}

/// `id-data`, the eContentType of every SCEP SignedData and EnvelopedData.
pub const ID_DATA: ObjectIdentifier = rfc5911::ID_DATA;

/// Random bytes from the system CSPRNG.
pub fn random_bytes(len: usize) -> Result<Vec<u8>, crate::ScepError> {
    let mut bytes = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| crate::ScepError::Internal("random number generator failed"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphers_round_trip_and_fail_alike() {
        for cipher in ContentCipher::ALL {
            let key = vec![0x11; cipher.key_len()];
            let iv = vec![0x22; cipher.block_len()];
            let sealed = cipher.encrypt(&key, &iv, b"a certificate request").unwrap();
            assert_eq!(sealed.len() % cipher.block_len(), 0, "{}", cipher.as_str());
            let opened = cipher.decrypt(&key, &iv, &sealed).unwrap();
            assert_eq!(opened.as_slice(), b"a certificate request", "{}", cipher.as_str());
            let wrong = vec![0x33; cipher.key_len()];
            // A wrong key fails with the same error as a truncated message (or yields garbage).
            if let Ok(garbage) = cipher.decrypt(&wrong, &iv, &sealed) {
                assert_ne!(garbage.as_slice(), b"a certificate request");
            }
            assert_eq!(cipher.decrypt(&key, &iv, &sealed[1..]), Err(DecryptFailed));
            assert_eq!(ContentCipher::from_oid(&cipher.oid()), Some(cipher));
        }
    }

    #[test]
    fn oaep_parameters_round_trip() {
        let cases = [
            ("pkcs1", KeyTransport::Pkcs1v15),
            ("oaep_sha1_default", KeyTransport::Oaep(RaDigest::Sha1)),
            ("oaep_sha256", KeyTransport::Oaep(RaDigest::Sha256)),
            ("oaep_sha512", KeyTransport::Oaep(RaDigest::Sha512)),
        ];
        for (case, transport) in cases {
            let alg = key_transport_identifier(transport).unwrap();
            let reparsed = AlgorithmIdentifierOwned::from_der(&alg.to_der().unwrap()).unwrap();
            assert_eq!(key_transport_from(&reparsed), Some(transport), "case {case}");
        }
        let unknown = AlgorithmIdentifierOwned {
            oid: OID_SHA256_RSA,
            parameters: None,
        };
        assert_eq!(key_transport_from(&unknown), None);
    }
}
