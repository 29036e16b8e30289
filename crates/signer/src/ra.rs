//! The SCEP registration authority (RA) key: an RSA key and a certificate (keyUsage
//! digitalSignature + keyEncipherment) issued by an endpoint's CA. SCEP clients encrypt their
//! requests to it and verify the server's CertReps with it, so the CA itself may be EC.
//!
//! [`RaKey`] is an opaque handle: it decrypts (PKCS#1 v1.5 or OAEP), unwraps content keys in
//! a way that reveals nothing about padding failures, and signs; it never hands out the key.
//! Every operation here is an RSA private-key operation (about a millisecond): callers run
//! them off the async reactor.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512, OaepAlgorithm,
    OaepPrivateDecryptingKey, Pkcs1PrivateDecryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::RsaKeyPair;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
use zeroize::Zeroizing;

use crate::{Issuer, KeyType, SignerError, generate_key, read_private_key, write_private_key};

/// How a content-encryption key was wrapped for the RA (the KeyTransRecipientInfo's
/// keyEncryptionAlgorithm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyTransport {
    /// rsaEncryption: RSAES-PKCS1-v1_5.
    Pkcs1v15,
    /// RSAES-OAEP with this hash for both the label hash and MGF1.
    Oaep(RaDigest),
}

/// A digest the RA signs (or OAEP hashes) with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RaDigest {
    /// SHA-1: only for OAEP (RSAES-OAEP's default parameters); the RA never signs with it.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl RaDigest {
    fn oaep(self) -> &'static OaepAlgorithm {
        match self {
            Self::Sha1 => &OAEP_SHA1_MGF1SHA1,
            Self::Sha256 => &OAEP_SHA256_MGF1SHA256,
            Self::Sha384 => &OAEP_SHA384_MGF1SHA384,
            Self::Sha512 => &OAEP_SHA512_MGF1SHA512,
        }
    }
}

/// How to create an RA certificate.
#[derive(Debug, Clone)]
pub struct RaOptions {
    /// The RA certificate's common name.
    pub common_name: String,
    /// Organization, if any.
    pub organization: Option<String>,
    /// RSA modulus size: [`KeyType::Rsa2048`], [`KeyType::Rsa3072`] or [`KeyType::Rsa4096`].
    pub key_type: KeyType,
    /// Validity (capped at the CA's own expiry).
    pub validity: Duration,
    /// Replace the RA key and certificate when the certificate expires within this time, or
    /// was issued by another CA (the old files are kept as `ra-<unix time>.pem/.key`).
    pub renew_before: Duration,
}

impl Default for RaOptions {
    fn default() -> Self {
        Self {
            common_name: "certgate SCEP RA".into(),
            organization: None,
            key_type: KeyType::Rsa2048,
            validity: Duration::days(730),
            renew_before: Duration::days(30),
        }
    }
}

/// Where an RA's files live: `<dir>/ra.pem` (certificate) and `<dir>/ra.key` (PKCS#8, 0600).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaFiles {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// The private key, PKCS#8 PEM, mode 0600.
    pub key: PathBuf,
}

impl RaFiles {
    /// The file layout inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("ra.pem"),
            key: dir.join("ra.key"),
        }
    }
}

/// Domain separation for the implicit-rejection secret ([`RaKey::unwrap_key`]).
const REJECTION_LABEL: &[u8] = b"certgate RA implicit rejection v1\0";

/// An opaque handle on an RSA RA key and its certificate. Never exposes the key.
pub struct RaKey {
    cert_der: Vec<u8>,
    pkcs1: Pkcs1PrivateDecryptingKey,
    oaep: OaepPrivateDecryptingKey,
    signing: RsaKeyPair,
    modulus_len: usize,
    /// SHA-256 of a label and the private key: the HMAC key substitute content keys are
    /// derived under. Fixed for the key, so a ciphertext gets the same substitute after a
    /// restart too; secret as long as the key is.
    rejection_secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for RaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaKey")
            .field("modulus_bits", &(self.modulus_len * 8))
            .finish_non_exhaustive()
    }
}

impl RaKey {
    /// Loads the RA in `dir`, or creates it there (key mode 0600, directory 0700) with a
    /// certificate issued by `issuer`. An existing certificate that expires within
    /// `options.renew_before` of `now`, or whose issuer is not `issuer`, is replaced by a new
    /// key and certificate (the old files are renamed, never deleted).
    pub fn load_or_create(
        dir: &Path,
        issuer: &Issuer,
        options: &RaOptions,
        now: OffsetDateTime,
    ) -> Result<Self, SignerError> {
        let files = RaFiles::in_dir(dir);
        if files.cert.exists() || files.key.exists() {
            let ra = Self::load(&files)?;
            let (_, cert) =
                X509Certificate::from_der(&ra.cert_der).map_err(|e| SignerError::CertParse(e.to_string()))?;
            let (_, ca) = X509Certificate::from_der(issuer.certificate_der())
                .map_err(|e| SignerError::CertParse(e.to_string()))?;
            let same_issuer = cert.issuer().as_raw() == ca.subject().as_raw()
                && match (authority_key_id(&cert), subject_key_id(&ca)) {
                    (Some(aki), Some(ski)) => aki == ski,
                    _ => true,
                };
            let fresh = cert.validity().not_after.to_datetime() > now + options.renew_before;
            if same_issuer && fresh {
                return Ok(ra);
            }
            tracing::warn!(
                dir = %dir.display(),
                reason = if same_issuer { "expires soon" } else { "issued by another CA" },
                "replacing the SCEP RA certificate"
            );
            let stamp = now.unix_timestamp();
            for (from, ext) in [(&files.cert, "pem"), (&files.key, "key")] {
                let to = dir.join(format!("ra-{stamp}.{ext}"));
                fs::rename(from, &to).map_err(SignerError::io(from))?;
            }
        }
        Self::create(dir, issuer, options, now)
    }

    /// Creates a new RA key and certificate in `dir`; refuses to overwrite existing files.
    pub fn create(dir: &Path, issuer: &Issuer, options: &RaOptions, now: OffsetDateTime) -> Result<Self, SignerError> {
        if !matches!(options.key_type, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096) {
            return Err(SignerError::KeyParse("an RA key must be RSA".into()));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(SignerError::io(dir))?;
        let files = RaFiles::in_dir(dir);
        for existing in [&files.cert, &files.key] {
            if existing.exists() {
                return Err(SignerError::AlreadyExists(existing.clone()));
            }
        }
        let key = generate_key(options.key_type)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(org) = &options.organization {
            dn.push(DnType::OrganizationName, org.as_str());
        }
        dn.push(DnType::CommonName, options.common_name.as_str());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.not_before = now - Duration::minutes(1);
        params.not_after = (now + options.validity).min(issuer.not_after());
        params.use_authority_key_identifier_extension = true;
        let mut serial = [0u8; 16];
        aws_lc_rs::rand::fill(&mut serial).map_err(|_| SignerError::Build("random number generator failed".into()))?;
        params.serial_number = Some(SerialNumber::from_slice(
            certgate_core::Serial::from_random(serial).as_bytes(),
        ));
        let cert = params.signed_by(&key, &issuer.rcgen)?;
        write_private_key(&files.key, &key, None)?;
        let pem = crate::certificates_to_pem([cert.der().as_ref()]);
        let tmp = files.cert.with_extension("tmp");
        fs::write(&tmp, pem).map_err(SignerError::io(&tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).map_err(SignerError::io(&tmp))?;
        fs::rename(&tmp, &files.cert).map_err(SignerError::io(&files.cert))?;
        Self::from_parts(&key, cert.der().to_vec())
    }

    /// Loads an RA (or an RSA CA acting as its own RA) from a key file (mode 0600) and a
    /// certificate file.
    pub fn load(files: &RaFiles) -> Result<Self, SignerError> {
        let key = read_private_key(&files.key, None)?;
        let pem = fs::read(&files.cert).map_err(SignerError::io(&files.cert))?;
        let cert_der = crate::certificates_from_pem(&pem)?
            .into_iter()
            .next()
            .ok_or_else(|| SignerError::CertParse("no CERTIFICATE block in the RA certificate file".into()))?;
        Self::from_parts(&key, cert_der)
    }

    /// Builds the handle from an RSA key pair and its certificate (DER).
    pub fn from_parts(key: &KeyPair, cert_der: Vec<u8>) -> Result<Self, SignerError> {
        let (_, cert) = X509Certificate::from_der(&cert_der).map_err(|e| SignerError::CertParse(e.to_string()))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(SignerError::KeyCertMismatch);
        }
        let pkcs8 = Zeroizing::new(key.serialize_der());
        let rejected = |e: aws_lc_rs::error::KeyRejected| SignerError::KeyParse(format!("RA key: {e}"));
        let unspecified = |_| SignerError::KeyParse("RA key is not a usable RSA key".into());
        let signing = RsaKeyPair::from_pkcs8(&pkcs8).map_err(rejected)?;
        let pkcs1 = Pkcs1PrivateDecryptingKey::new(PrivateDecryptingKey::from_pkcs8(&pkcs8).map_err(rejected)?)
            .map_err(unspecified)?;
        let oaep = OaepPrivateDecryptingKey::new(PrivateDecryptingKey::from_pkcs8(&pkcs8).map_err(rejected)?)
            .map_err(unspecified)?;
        let modulus_len = signing.public_modulus_len();
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(REJECTION_LABEL);
        context.update(&pkcs8);
        let mut rejection_secret = Zeroizing::new([0u8; 32]);
        rejection_secret.copy_from_slice(context.finish().as_ref());
        Ok(Self {
            cert_der,
            pkcs1,
            oaep,
            signing,
            modulus_len,
            rejection_secret,
        })
    }

    /// The RA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The modulus length in bytes (the size of every signature and ciphertext).
    pub fn modulus_len(&self) -> usize {
        self.modulus_len
    }

    /// Decrypts `ciphertext`. Its error says only that decryption failed. For content keys
    /// use [`RaKey::unwrap_key`], which does not even say that.
    pub fn decrypt(&self, transport: KeyTransport, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, SignerError> {
        let mut out = Zeroizing::new(vec![0u8; self.modulus_len]);
        let len = self
            .decrypt_into(transport, ciphertext, &mut out)
            .ok_or_else(|| SignerError::KeyParse("RSA decryption failed".into()))?;
        out.truncate(len);
        Ok(out)
    }

    fn decrypt_into(&self, transport: KeyTransport, ciphertext: &[u8], out: &mut [u8]) -> Option<usize> {
        match transport {
            KeyTransport::Pkcs1v15 => self.pkcs1.decrypt(ciphertext, out).ok().map(|p| p.len()),
            KeyTransport::Oaep(digest) => self
                .oaep
                .decrypt(digest.oaep(), ciphertext, out, None)
                .ok()
                .map(|p| p.len()),
        }
    }

    /// Unwraps a content-encryption key of `key_len` bytes, Bleichenbacher-safe (implicit
    /// rejection, as RFC 8017 implementations do against the Marvin attack): it always
    /// returns `key_len` bytes. When the padding is wrong, or the key has another length, the
    /// result is a substitute computed before decrypting and selected without a branch on
    /// the outcome: HMAC-SHA256 of `wrapped` under a secret derived from the private key, so
    /// the same bad ciphertext always yields the same key and behaves the same way on every
    /// try (a random substitute would differ between tries and so reveal that the padding was
    /// bad). The caller then fails later, generically, when the content does not decrypt or
    /// decode.
    pub fn unwrap_key(&self, transport: KeyTransport, wrapped: &[u8], key_len: usize) -> Zeroizing<Vec<u8>> {
        let mut chosen = self.rejection_key(transport, wrapped, key_len);
        let mut out = Zeroizing::new(vec![0u8; self.modulus_len.max(key_len)]);
        let len = self.decrypt_into(transport, wrapped, &mut out);
        let ok = u8::from(len.is_some()) & u8::from(len.unwrap_or(0) == key_len);
        let mask = 0u8.wrapping_sub(std::hint::black_box(ok));
        for (c, o) in chosen.iter_mut().zip(out.iter()) {
            *c = (o & mask) | (*c & !mask);
        }
        chosen
    }

    /// The substitute content key for `wrapped`: HMAC-SHA256 under this key's rejection
    /// secret over a block counter, the transport, `key_len` and the ciphertext, blocks
    /// concatenated and truncated to `key_len`. Deterministic and, without the private key,
    /// unpredictable.
    fn rejection_key(&self, transport: KeyTransport, wrapped: &[u8], key_len: usize) -> Zeroizing<Vec<u8>> {
        let hmac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, self.rejection_secret.as_slice());
        let transport_id: u8 = match transport {
            KeyTransport::Pkcs1v15 => 0,
            KeyTransport::Oaep(RaDigest::Sha1) => 1,
            KeyTransport::Oaep(RaDigest::Sha256) => 2,
            KeyTransport::Oaep(RaDigest::Sha384) => 3,
            KeyTransport::Oaep(RaDigest::Sha512) => 4,
        };
        let mut key = Zeroizing::new(Vec::with_capacity(key_len + 32));
        let mut block: u32 = 0;
        while key.len() < key_len {
            let mut context = aws_lc_rs::hmac::Context::with_key(&hmac);
            context.update(&block.to_be_bytes());
            context.update(&[transport_id]);
            context.update(&(key_len as u64).to_be_bytes());
            context.update(wrapped);
            key.extend_from_slice(context.sign().as_ref());
            block = block.wrapping_add(1);
        }
        key.truncate(key_len);
        key
    }

    /// Signs `message` with RSASSA-PKCS1-v1_5 and `digest` (SHA-256, SHA-384 or SHA-512;
    /// SHA-1 is refused: the RA never makes SHA-1 signatures).
    pub fn sign(&self, digest: RaDigest, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        let encoding = match digest {
            RaDigest::Sha256 => &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            RaDigest::Sha384 => &aws_lc_rs::signature::RSA_PKCS1_SHA384,
            RaDigest::Sha512 => &aws_lc_rs::signature::RSA_PKCS1_SHA512,
            RaDigest::Sha1 => return Err(SignerError::Build("the RA does not sign with SHA-1".into())),
        };
        let mut signature = vec![0u8; self.modulus_len];
        self.signing
            .sign(encoding, &aws_lc_rs::rand::SystemRandom::new(), message, &mut signature)
            .map_err(|_| SignerError::Build("RSA signing failed".into()))?;
        Ok(signature)
    }
}

fn authority_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|k| k.0),
        _ => None,
    })
}

fn subject_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, Pkcs1PublicEncryptingKey, PublicEncryptingKey};
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use super::*;
    use crate::test_issuer::issuer;

    #[test]
    fn create_load_decrypt_sign() {
        let dir = tempfile::tempdir().unwrap();
        let ca = issuer(dir.path(), KeyType::P256);
        let now = OffsetDateTime::now_utc();
        let ra_dir = dir.path().join("ra");
        let ra = RaKey::load_or_create(&ra_dir, &ca, &RaOptions::default(), now).unwrap();
        let files = RaFiles::in_dir(&ra_dir);
        assert_eq!(fs::metadata(&files.key).unwrap().permissions().mode() & 0o777, 0o600);
        let again = RaKey::load_or_create(&ra_dir, &ca, &RaOptions::default(), now).unwrap();
        assert_eq!(again.certificate_der(), ra.certificate_der(), "loaded, not recreated");

        let (_, cert) = X509Certificate::from_der(ra.certificate_der()).unwrap();
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
        let spki = cert.public_key().raw.to_vec();

        let public = PublicEncryptingKey::from_der(&spki).unwrap();
        let mut wrapped = vec![0u8; 256];
        let key = [7u8; 32];
        Pkcs1PublicEncryptingKey::new(public.clone())
            .unwrap()
            .encrypt(&key, &mut wrapped)
            .unwrap();
        assert_eq!(*ra.decrypt(KeyTransport::Pkcs1v15, &wrapped).unwrap(), key);
        assert_eq!(*ra.unwrap_key(KeyTransport::Pkcs1v15, &wrapped, 32), key);
        // Wrong length or corrupted padding: a substitute key of the asked length, no error.
        assert_ne!(*ra.unwrap_key(KeyTransport::Pkcs1v15, &wrapped, 24), key[..24]);
        let mut corrupted = wrapped.clone();
        corrupted[10] ^= 0x40;
        let unwrapped = ra.unwrap_key(KeyTransport::Pkcs1v15, &corrupted, 32);
        assert_eq!(unwrapped.len(), 32);
        assert_ne!(*unwrapped, key);
        assert!(ra.decrypt(KeyTransport::Pkcs1v15, &corrupted).is_err());

        let mut oaep_wrapped = vec![0u8; 256];
        OaepPublicEncryptingKey::new(public)
            .unwrap()
            .encrypt(&OAEP_SHA256_MGF1SHA256, &key, &mut oaep_wrapped, None)
            .unwrap();
        assert_eq!(
            *ra.unwrap_key(KeyTransport::Oaep(RaDigest::Sha256), &oaep_wrapped, 32),
            key
        );

        let signature = ra.sign(RaDigest::Sha256, b"attributes").unwrap();
        let raw_key = cert.public_key().subject_public_key.data.to_vec();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, raw_key)
            .verify(b"attributes", &signature)
            .unwrap();
        assert!(ra.sign(RaDigest::Sha1, b"x").is_err());

        // A new CA: the RA is replaced, the old files kept.
        let other = issuer(&dir.path().join("other"), KeyType::P256);
        let renewed = RaKey::load_or_create(&ra_dir, &other, &RaOptions::default(), now).unwrap();
        assert_ne!(renewed.certificate_der(), ra.certificate_der());
        assert!(ra_dir.join(format!("ra-{}.key", now.unix_timestamp())).exists());
    }

    /// Wraps `key` to `ra` with `transport`.
    fn wrap(ra: &RaKey, transport: KeyTransport, key: &[u8]) -> Vec<u8> {
        let (_, cert) = X509Certificate::from_der(ra.certificate_der()).unwrap();
        let public = PublicEncryptingKey::from_der(cert.public_key().raw).unwrap();
        let mut wrapped = vec![0u8; ra.modulus_len()];
        let len = match transport {
            KeyTransport::Pkcs1v15 => Pkcs1PublicEncryptingKey::new(public)
                .unwrap()
                .encrypt(key, &mut wrapped)
                .unwrap()
                .len(),
            KeyTransport::Oaep(digest) => OaepPublicEncryptingKey::new(public)
                .unwrap()
                .encrypt(digest.oaep(), key, &mut wrapped, None)
                .unwrap()
                .len(),
        };
        wrapped.truncate(len);
        wrapped
    }

    #[test]
    fn bad_padding_yields_a_key_derived_from_the_ciphertext() {
        let dir = tempfile::tempdir().unwrap();
        let ca = issuer(dir.path(), KeyType::P256);
        let now = OffsetDateTime::now_utc();
        let ra = RaKey::create(&dir.path().join("ra"), &ca, &RaOptions::default(), now).unwrap();
        let other = RaKey::create(&dir.path().join("other"), &ca, &RaOptions::default(), now).unwrap();
        let key = [7u8; 32];
        let flip = |wrapped: &[u8], at: usize| {
            let mut bad = wrapped.to_vec();
            bad[at] ^= 0x40;
            bad
        };
        for (case, transport) in [
            ("pkcs1", KeyTransport::Pkcs1v15),
            ("oaep_sha1", KeyTransport::Oaep(RaDigest::Sha1)),
            ("oaep_sha256", KeyTransport::Oaep(RaDigest::Sha256)),
        ] {
            let wrapped = wrap(&ra, transport, &key);
            assert_eq!(*ra.unwrap_key(transport, &wrapped, 32), key, "case {case}");
            let (bad, worse) = (flip(&wrapped, 10), flip(&wrapped, 100));
            assert!(ra.decrypt(transport, &bad).is_err(), "case {case}: padding must be bad");
            let first = ra.unwrap_key(transport, &bad, 32);
            assert_eq!(first.len(), 32, "case {case}");
            assert_ne!(*first, key, "case {case}");
            // The same bad ciphertext always behaves the same; another one differently.
            assert_eq!(
                ra.unwrap_key(transport, &bad, 32),
                first,
                "case {case}: same ciphertext"
            );
            assert_ne!(
                ra.unwrap_key(transport, &worse, 32),
                first,
                "case {case}: other ciphertext"
            );
            // Another length, another RA key: unrelated substitutes.
            let shorter = ra.unwrap_key(transport, &bad, 16);
            assert_eq!(shorter.len(), 16, "case {case}");
            assert_ne!(shorter[..], first[..16], "case {case}: the length is an input");
            assert_ne!(
                other.unwrap_key(transport, &bad, 32),
                first,
                "case {case}: other RA key"
            );
            // A well-padded key of the wrong length is substituted alike, deterministically.
            let wrong_length = ra.unwrap_key(transport, &wrapped, 24);
            assert_ne!(wrong_length[..], key[..24], "case {case}");
            assert_eq!(ra.unwrap_key(transport, &wrapped, 24), wrong_length, "case {case}");
            // Longer than one HMAC block: still the asked length, still deterministic.
            let long = ra.unwrap_key(transport, &bad, 48);
            assert_eq!(long.len(), 48, "case {case}");
            assert_eq!(ra.unwrap_key(transport, &bad, 48), long, "case {case}");
        }
        // A key loaded again from its files derives the same substitutes (restarts too).
        let reloaded = RaKey::load(&RaFiles::in_dir(&dir.path().join("ra"))).unwrap();
        let bad = flip(&wrap(&ra, KeyTransport::Pkcs1v15, &key), 10);
        assert_eq!(
            reloaded.unwrap_key(KeyTransport::Pkcs1v15, &bad, 32),
            ra.unwrap_key(KeyTransport::Pkcs1v15, &bad, 32)
        );
    }
}
