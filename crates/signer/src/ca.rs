use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::keys::parse_private_key_pem;
use crate::{
    KeyType, Passphrase, SignerError, certificates_from_pem, certificates_to_pem, generate_key, write_private_key,
};

/// Where one issuer's files live: `<dir>/issuer.pem`, `issuer.key`, `chain.pem`, `root.pem`
/// (and `root.key` for a CA that certgate created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerFiles {
    /// The issuer's directory.
    pub dir: PathBuf,
    /// The issuing certificate.
    pub cert: PathBuf,
    /// The issuing key (mode 0600).
    pub key: PathBuf,
    /// Certificates between the issuer and the root, PEM (may be empty).
    pub chain: PathBuf,
    /// The root certificate.
    pub root: PathBuf,
    /// The root's key, when certgate created the root (mode 0600).
    pub root_key: PathBuf,
}

impl IssuerFiles {
    /// The file layout inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            cert: dir.join("issuer.pem"),
            key: dir.join("issuer.key"),
            chain: dir.join("chain.pem"),
            root: dir.join("root.pem"),
            root_key: dir.join("root.key"),
        }
    }

    /// Whether an issuer exists here.
    pub fn exists(&self) -> bool {
        self.cert.exists() && self.key.exists()
    }
}

/// How to create a CA.
#[derive(Debug, Clone)]
pub struct CaInitOptions {
    /// Key type for both root and intermediate.
    pub key_type: KeyType,
    /// Common name stem: the root is "<stem> Root CA", the intermediate "<stem> Issuing CA".
    pub common_name: String,
    /// Organization, if any.
    pub organization: Option<String>,
    /// Root validity.
    pub root_validity: Duration,
    /// Intermediate validity (capped by the root's).
    pub intermediate_validity: Duration,
    /// Encrypt both keys with this passphrase.
    pub passphrase: Option<Passphrase>,
}

impl Default for CaInitOptions {
    fn default() -> Self {
        Self {
            key_type: KeyType::P256,
            common_name: "certgate".into(),
            organization: None,
            root_validity: Duration::days(3650),
            intermediate_validity: Duration::days(1825),
            passphrase: None,
        }
    }
}

fn random_serial() -> Result<SerialNumber, SignerError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SignerError::Build("random number generator failed".into()))?;
    Ok(SerialNumber::from_slice(
        certgate_core::Serial::from_random(bytes).as_bytes(),
    ))
}

fn ca_name(options: &CaInitOptions, role: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = &options.organization {
        dn.push(DnType::OrganizationName, org.as_str());
    }
    dn.push(DnType::CommonName, format!("{} {role}", options.common_name));
    dn
}

fn create_private_dir(dir: &Path) -> Result<(), SignerError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(SignerError::io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(SignerError::io(dir))
}

fn write_public(path: &Path, content: &str) -> Result<(), SignerError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, content).map_err(SignerError::io(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).map_err(SignerError::io(&tmp))?;
    fs::rename(&tmp, path).map_err(SignerError::io(path))
}

/// Creates a root and an intermediate in `dir` (see [`IssuerFiles`]). Refuses if an issuer
/// already exists there.
pub fn init_ca(dir: &Path, options: &CaInitOptions, now: OffsetDateTime) -> Result<IssuerFiles, SignerError> {
    let files = IssuerFiles::in_dir(dir);
    for existing in [&files.cert, &files.key, &files.root, &files.root_key] {
        if existing.exists() {
            return Err(SignerError::AlreadyExists(existing.clone()));
        }
    }
    create_private_dir(dir)?;
    let not_before = now - Duration::minutes(1);
    let root_not_after = now + options.root_validity;

    let root_key = generate_key(options.key_type)?;
    let mut root = CertificateParams::default();
    root.distinguished_name = ca_name(options, "Root CA");
    root.serial_number = Some(random_serial()?);
    root.not_before = not_before;
    root.not_after = root_not_after;
    root.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root.self_signed(&root_key)?;

    let issuing_key = generate_key(options.key_type)?;
    let mut issuing = CertificateParams::default();
    issuing.distinguished_name = ca_name(options, "Issuing CA");
    issuing.serial_number = Some(random_serial()?);
    issuing.not_before = not_before;
    issuing.not_after = (now + options.intermediate_validity).min(root_not_after);
    issuing.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    issuing.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    issuing.use_authority_key_identifier_extension = true;
    let root_issuer = rcgen::Issuer::new(root, &root_key);
    let issuing_cert = issuing.signed_by(&issuing_key, &root_issuer)?;

    write_private_key(&files.root_key, &root_key, options.passphrase.as_ref())?;
    write_private_key(&files.key, &issuing_key, options.passphrase.as_ref())?;
    write_public(&files.chain, "")?;
    write_public(&files.root, &root_cert.pem())?;
    // The issuing certificate last: its presence marks the issuer as complete.
    write_public(&files.cert, &issuing_cert.pem())?;
    Ok(files)
}

/// Copies an existing CA (certificate, key, and the chain up to and including the root) into
/// `dir`. The key is validated against the certificate and stored with mode 0600, encrypted
/// with `store_passphrase` if given. When `chain_pem` has no self-signed root, the issuing
/// certificate must itself be the root.
pub fn import_ca(
    dir: &Path,
    cert_pem: &[u8],
    key_pem: &[u8],
    chain_pem: Option<&[u8]>,
    key_passphrase: Option<&Passphrase>,
    store_passphrase: Option<&Passphrase>,
) -> Result<IssuerFiles, SignerError> {
    let files = IssuerFiles::in_dir(dir);
    if files.cert.exists() || files.key.exists() {
        return Err(SignerError::AlreadyExists(files.cert.clone()));
    }
    let cert_der = certificates_from_pem(cert_pem)?
        .into_iter()
        .next()
        .ok_or_else(|| SignerError::CertParse("no CERTIFICATE in the issuer certificate file".into()))?;
    let key: KeyPair = parse_private_key_pem(key_pem, key_passphrase)?;
    let chain = match chain_pem {
        Some(pem) => certificates_from_pem(pem)?,
        None => Vec::new(),
    };
    let is_self_signed = |der: &[u8]| {
        x509_parser::parse_x509_certificate(der)
            .map(|(_, c)| c.subject() == c.issuer())
            .unwrap_or(false)
    };
    let (root, intermediates): (Vec<Vec<u8>>, Vec<Vec<u8>>) = chain.into_iter().partition(|c| is_self_signed(c));
    let root_der = match root.into_iter().next() {
        Some(root) => root,
        None if is_self_signed(&cert_der) => cert_der.clone(),
        None => {
            return Err(SignerError::CertParse(
                "the chain has no self-signed root; pass the whole chain up to the root".into(),
            ));
        }
    };
    // Validate before writing anything.
    let name = certgate_core::Name::new("import").map_err(|e| SignerError::Build(e.to_string()))?;
    let key_copy =
        KeyPair::try_from(key.serialize_der().as_slice()).map_err(|e| SignerError::KeyParse(e.to_string()))?;
    crate::Issuer::from_parts(
        name,
        cert_der.clone(),
        intermediates.clone(),
        root_der.clone(),
        key_copy,
    )?;

    create_private_dir(dir)?;
    write_private_key(&files.key, &key, store_passphrase)?;
    write_public(
        &files.chain,
        &certificates_to_pem(intermediates.iter().map(Vec::as_slice)),
    )?;
    write_public(&files.root, &certificates_to_pem([root_der.as_slice()]))?;
    write_public(&files.cert, &certificates_to_pem([cert_der.as_slice()]))?;
    Ok(files)
}
