//! The delegated OCSP responder key (RFC 6960 4.2.2.2): a P-256 key and a short-lived
//! certificate issued by the CA with EKU id-kp-OCSPSigning and id-pkix-ocsp-nocheck. OCSP
//! responses are signed with it, so the CA key (possibly RSA, possibly in an HSM later) signs
//! once a rotation instead of once a response, and every response costs one fast ECDSA
//! signature.
//!
//! Files in the signer's directory: `ocsp-signer.key` (PKCS#8 PEM, mode 0600) and
//! `ocsp-signer.crt` (PEM). A new pair is written to temporary files and renamed into place,
//! key first; a crash between the two renames leaves a key that does not match the
//! certificate, which the next load detects and replaces.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber, SigningKey,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use crate::{Issuer, KeyType, SignerError, generate_key, read_private_key, write_private_key};

/// The default validity of a delegated OCSP signing certificate.
pub const OCSP_SIGNER_LIFETIME: Duration = Duration::days(30);

const KEY_FILE: &str = "ocsp-signer.key";
const CERT_FILE: &str = "ocsp-signer.crt";
/// id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1): clients need not check the responder
/// certificate's own revocation status.
const OCSP_NOCHECK: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5];

/// A delegated OCSP signing key and its certificate.
pub struct OcspSigner {
    key: KeyPair,
    cert_der: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    key_hash_sha1: [u8; 20],
}

impl std::fmt::Debug for OcspSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspSigner")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl OcspSigner {
    /// Loads the signer in `dir`, or creates one (directory 0700, key 0600) with a
    /// certificate from `issuer` valid for `lifetime` (capped at the issuer's expiry). An
    /// existing signer is replaced when it does not load, its key does not match its
    /// certificate, it was issued by another CA, or it [needs rotation](Self::needs_rotation).
    pub fn load_or_create(
        dir: &Path,
        issuer: &Issuer,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<Self, SignerError> {
        let (key_path, cert_path) = (dir.join(KEY_FILE), dir.join(CERT_FILE));
        if key_path.exists() || cert_path.exists() {
            match Self::load(dir) {
                Ok(signer) if !signer.issued_by(issuer)? => {
                    tracing::warn!(dir = %dir.display(), "OCSP signer issued by another CA: replacing it");
                }
                Ok(signer) if signer.needs_rotation(now) => {
                    tracing::info!(dir = %dir.display(), not_after = %signer.not_after, "rotating the OCSP signer");
                }
                Ok(signer) => return Ok(signer),
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "OCSP signer unusable: replacing it");
                }
            }
        }
        Self::rotate(dir, issuer, now, lifetime)
    }

    /// Creates a new key and certificate in `dir`, replacing any there atomically.
    pub fn rotate(dir: &Path, issuer: &Issuer, now: OffsetDateTime, lifetime: Duration) -> Result<Self, SignerError> {
        if lifetime <= Duration::ZERO {
            return Err(SignerError::Build("the OCSP signer lifetime must be positive".into()));
        }
        let not_after = (now + lifetime).min(issuer.not_after());
        if not_after <= now {
            return Err(SignerError::ValidityBeyondIssuer {
                not_after: now + lifetime,
                issuer_not_after: issuer.not_after(),
            });
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(SignerError::io(dir))?;

        let key = generate_key(KeyType::P256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, responder_common_name(&issuer_common_name(issuer)?));
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        params.custom_extensions = vec![CustomExtension::from_oid_content(OCSP_NOCHECK, vec![0x05, 0x00])];
        // Backdated a minute, like leaves, for clients whose clocks run a little slow.
        params.not_before = now - Duration::minutes(1);
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        let mut serial = [0u8; 16];
        aws_lc_rs::rand::fill(&mut serial).map_err(|_| SignerError::Build("random number generator failed".into()))?;
        params.serial_number = Some(SerialNumber::from_slice(
            certgate_core::Serial::from_random(serial).as_bytes(),
        ));
        let cert = params.signed_by(&key, &issuer.rcgen)?;

        let (key_tmp, cert_tmp) = (
            dir.join(format!("{KEY_FILE}.tmp")),
            dir.join(format!("{CERT_FILE}.tmp")),
        );
        for stale in [&key_tmp, &cert_tmp] {
            match fs::remove_file(stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(SignerError::io(stale)(e)),
                _ => {}
            }
        }
        write_private_key(&key_tmp, &key, None)?;
        write_file_synced(&cert_tmp, crate::certificates_to_pem([cert.der().as_ref()]).as_bytes())?;
        fs::rename(&key_tmp, dir.join(KEY_FILE)).map_err(SignerError::io(&key_tmp))?;
        fs::rename(&cert_tmp, dir.join(CERT_FILE)).map_err(SignerError::io(&cert_tmp))?;
        // Make the renames durable too; a failure here only risks a rotation after a crash.
        if let Ok(handle) = fs::File::open(dir) {
            let _ = handle.sync_all();
        }
        tracing::info!(dir = %dir.display(), %not_after, "new OCSP signing certificate");
        Self::from_parts(key, cert.der().to_vec())
    }

    /// Loads the signer files in `dir` (key mode 0600 required).
    pub fn load(dir: &Path) -> Result<Self, SignerError> {
        let key = read_private_key(&dir.join(KEY_FILE), None)?;
        let cert_path = dir.join(CERT_FILE);
        let pem = fs::read(&cert_path).map_err(SignerError::io(&cert_path))?;
        let cert_der = crate::certificates_from_pem(&pem)?
            .into_iter()
            .next()
            .ok_or_else(|| SignerError::CertParse(format!("no CERTIFICATE block in {}", cert_path.display())))?;
        Self::from_parts(key, cert_der)
    }

    fn from_parts(key: KeyPair, cert_der: Vec<u8>) -> Result<Self, SignerError> {
        if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(SignerError::KeyParse("the OCSP signer key must be ECDSA P-256".into()));
        }
        let (_, cert) = X509Certificate::from_der(&cert_der).map_err(|e| SignerError::CertParse(e.to_string()))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(SignerError::KeyCertMismatch);
        }
        let hash = digest::digest(
            &digest::SHA1_FOR_LEGACY_USE_ONLY,
            &cert.public_key().subject_public_key.data,
        );
        let mut key_hash_sha1 = [0u8; 20];
        key_hash_sha1.copy_from_slice(hash.as_ref());
        let not_before = cert.validity().not_before.to_datetime();
        let not_after = cert.validity().not_after.to_datetime();
        Ok(Self {
            key,
            cert_der,
            not_before,
            not_after,
            key_hash_sha1,
        })
    }

    fn issued_by(&self, issuer: &Issuer) -> Result<bool, SignerError> {
        let parse = |der| X509Certificate::from_der(der).map_err(|e| SignerError::CertParse(e.to_string()));
        let (_, cert) = parse(&self.cert_der)?;
        let (_, ca) = parse(issuer.certificate_der())?;
        let aki = cert.extensions().iter().find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        });
        let ski = ca.extensions().iter().find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0),
            _ => None,
        });
        let same_key = match (aki, ski) {
            (Some(aki), Some(ski)) => aki == ski,
            _ => true,
        };
        Ok(same_key && cert.issuer().as_raw() == ca.subject().as_raw())
    }

    /// Whether less than a third of the certificate's validity remains at `now`.
    pub fn needs_rotation(&self, now: OffsetDateTime) -> bool {
        let lifetime = self.not_after - self.not_before;
        self.not_after - now < lifetime / 3
    }

    /// Signs `message` with ECDSA P-256 and SHA-256; the signature is DER (ECDSA-Sig-Value),
    /// as the ecdsa-with-SHA256 algorithm identifier expects.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.key.sign(message)?)
    }

    /// The signing certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// SHA-1 of the certificate's subjectPublicKey BIT STRING contents: the ResponderID
    /// byKey value (RFC 6960 4.2.1).
    pub fn key_hash_sha1(&self) -> &[u8; 20] {
        &self.key_hash_sha1
    }

    /// Validity end of the signing certificate.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Where the signer of `dir` keeps its files: key, then certificate.
    pub fn files(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join(KEY_FILE), dir.join(CERT_FILE))
    }
}

fn issuer_common_name(issuer: &Issuer) -> Result<String, SignerError> {
    let (_, ca) =
        X509Certificate::from_der(issuer.certificate_der()).map_err(|e| SignerError::CertParse(e.to_string()))?;
    let cn = ca
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Ok(cn.unwrap_or_else(|| issuer.name().to_string()))
}

/// "<CA CN> OCSP Responder", the CA's part shortened so the whole stays within the 64
/// characters RFC 5280 allows a common name.
fn responder_common_name(ca_cn: &str) -> String {
    const SUFFIX: &str = " OCSP Responder";
    let keep: String = ca_cn.chars().take(64 - SUFFIX.len()).collect();
    format!("{}{SUFFIX}", keep.trim_end())
}

fn write_file_synced(path: &Path, content: &[u8]) -> Result<(), SignerError> {
    use std::io::Write;
    let mut file = fs::File::create(path).map_err(SignerError::io(path))?;
    file.write_all(content).map_err(SignerError::io(path))?;
    file.sync_all().map_err(SignerError::io(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(SignerError::io(path))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};

    use super::*;
    use crate::test_issuer::issuer;

    #[test]
    fn good_signer_has_the_delegation_extensions_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        for key_type in [KeyType::P256, KeyType::Rsa2048] {
            let case = key_type.as_str();
            let ca = issuer(&dir.path().join(case), key_type);
            let signer_dir = dir.path().join(case).join("ocsp");
            let signer = OcspSigner::load_or_create(&signer_dir, &ca, now, OCSP_SIGNER_LIFETIME).unwrap();
            let (key_path, cert_path) = OcspSigner::files(&signer_dir);
            assert_eq!(
                fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
                0o600,
                "case {case}"
            );
            assert!(cert_path.exists(), "case {case}");

            let (_, cert) = X509Certificate::from_der(signer.certificate_der()).unwrap();
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.ocsp_signing && !eku.server_auth && !eku.client_auth, "case {case}");
            let ku = cert.key_usage().unwrap().unwrap().value;
            assert!(ku.digital_signature() && !ku.key_cert_sign(), "case {case}");
            let nocheck = cert
                .extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.48.1.5")
                .unwrap_or_else(|| panic!("case {case}: no ocsp-nocheck"));
            assert_eq!(nocheck.value, &[0x05, 0x00], "case {case}");
            let cn = cert.subject().iter_common_name().next().unwrap().as_str().unwrap();
            assert!(cn.ends_with(" OCSP Responder"), "case {case}: {cn}");
            let lifetime = cert.validity().not_after.to_datetime() - now;
            assert!(
                (lifetime - OCSP_SIGNER_LIFETIME).abs() < Duration::seconds(2),
                "case {case}"
            );

            let raw = cert.public_key().subject_public_key.data.to_vec();
            let expected = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &raw);
            assert_eq!(signer.key_hash_sha1().as_slice(), expected.as_ref(), "case {case}");
            let signature = signer.sign(b"tbsResponseData").unwrap();
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &raw)
                .verify(b"tbsResponseData", &signature)
                .unwrap_or_else(|_| panic!("case {case}: signature does not verify"));

            let again = OcspSigner::load_or_create(&signer_dir, &ca, now, OCSP_SIGNER_LIFETIME).unwrap();
            assert_eq!(
                again.certificate_der(),
                signer.certificate_der(),
                "case {case}: loaded, not recreated"
            );
        }
    }

    #[test]
    fn responder_common_names() {
        for (case, ca_cn, want) in [
            (
                "short",
                "certgate Issuing CA",
                "certgate Issuing CA OCSP Responder".to_owned(),
            ),
            ("long", &"x".repeat(80), format!("{} OCSP Responder", "x".repeat(49))),
        ] {
            let cn = responder_common_name(ca_cn);
            assert_eq!(cn, want, "case {case}");
            assert!(cn.chars().count() <= 64, "case {case}");
        }
    }

    #[test]
    fn signer_is_replaced_when_due_foreign_or_broken() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let ca = issuer(&dir.path().join("ca1"), KeyType::P256);
        let other = issuer(&dir.path().join("ca2"), KeyType::P256);
        let signer_dir = dir.path().join("ocsp");
        let first = OcspSigner::load_or_create(&signer_dir, &ca, now, OCSP_SIGNER_LIFETIME).unwrap();

        // Rotation: due once less than a third of the lifetime remains.
        assert!(!first.needs_rotation(now + Duration::days(19)));
        assert!(first.needs_rotation(now + Duration::days(21)));
        let later = now + Duration::days(21);
        let rotated = OcspSigner::load_or_create(&signer_dir, &ca, later, OCSP_SIGNER_LIFETIME).unwrap();
        assert_ne!(rotated.certificate_der(), first.certificate_der(), "rotated");
        assert!(!rotated.needs_rotation(later));
        assert!(!signer_dir.join("ocsp-signer.key.tmp").exists());

        // Another CA: replaced.
        let foreign = OcspSigner::load_or_create(&signer_dir, &other, later, OCSP_SIGNER_LIFETIME).unwrap();
        assert_ne!(
            foreign.certificate_der(),
            rotated.certificate_der(),
            "replaced for another CA"
        );
        assert!(foreign.issued_by(&other).unwrap() && !foreign.issued_by(&ca).unwrap());

        // A key that does not match the certificate (a crash between the renames): replaced.
        let (key_path, _) = OcspSigner::files(&signer_dir);
        fs::remove_file(&key_path).unwrap();
        write_private_key(&key_path, &generate_key(KeyType::P256).unwrap(), None).unwrap();
        assert!(matches!(
            OcspSigner::load(&signer_dir),
            Err(SignerError::KeyCertMismatch)
        ));
        let repaired = OcspSigner::load_or_create(&signer_dir, &other, later, OCSP_SIGNER_LIFETIME).unwrap();
        assert!(OcspSigner::load(&signer_dir).is_ok());
        assert_ne!(repaired.certificate_der(), foreign.certificate_der());

        // Never beyond the issuer; a lifetime of zero is refused.
        let long = OcspSigner::rotate(&signer_dir, &ca, now, Duration::days(100_000)).unwrap();
        assert_eq!(long.not_after(), ca.not_after());
        assert!(OcspSigner::rotate(&signer_dir, &ca, now, Duration::ZERO).is_err());
    }
}
