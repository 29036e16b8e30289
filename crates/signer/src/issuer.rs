use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{IssuerFiles, Passphrase, SignerError, read_private_key};
use certgate_core::Name;

/// A CA private key. Today a file-backed key pair; a PKCS#11 variant implements the same
/// two operations (public key, sign) later, without callers changing.
#[derive(Debug)]
pub enum CaKey {
    /// A key loaded from a PKCS#8 file.
    File(KeyPair),
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            Self::File(key) => key.der_bytes(),
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self {
            Self::File(key) => key.algorithm(),
        }
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            Self::File(key) => key.sign(msg),
        }
    }
}

/// The public URLs certificates point at: CRL distribution point, OCSP and CA issuers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerUrls {
    /// CRL distribution point.
    pub crl: Option<String>,
    /// OCSP responder (AIA id-ad-ocsp).
    pub ocsp: Option<String>,
    /// Where the issuer certificate can be fetched (AIA id-ad-caIssuers).
    pub ca_issuers: Option<String>,
}

/// A loaded issuing CA: its certificate, chain, root and key.
pub struct Issuer {
    pub(crate) name: Name,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) chain_der: Vec<Vec<u8>>,
    pub(crate) root_der: Vec<u8>,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    pub(crate) subject: String,
    pub(crate) rcgen: rcgen::Issuer<'static, CaKey>,
    pub(crate) uses_rsa: bool,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Loads an issuer from its files, checking that the key belongs to the certificate and
    /// that the certificate is a CA allowed to sign certificates.
    pub fn load(name: Name, files: &IssuerFiles, passphrase: Option<&Passphrase>) -> Result<Self, SignerError> {
        let read = |path: &std::path::Path| std::fs::read(path).map_err(SignerError::io(path));
        let cert_der = single_certificate(&read(&files.cert)?)?;
        let chain_der = if files.chain.exists() {
            crate::certificates_from_pem(&read(&files.chain)?)?
        } else {
            Vec::new()
        };
        let root_der = single_certificate(&read(&files.root)?)?;
        let key = read_private_key(&files.key, passphrase)?;
        Self::from_parts(name, cert_der, chain_der, root_der, key)
    }

    /// Builds an issuer from DER certificates and a key pair.
    pub fn from_parts(
        name: Name,
        cert_der: Vec<u8>,
        chain_der: Vec<Vec<u8>>,
        root_der: Vec<u8>,
        key: KeyPair,
    ) -> Result<Self, SignerError> {
        let (_, cert) = X509Certificate::from_der(&cert_der).map_err(|e| SignerError::CertParse(e.to_string()))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(SignerError::KeyCertMismatch);
        }
        let is_ca = cert.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca);
        let can_sign = cert
            .key_usage()
            .ok()
            .flatten()
            .is_none_or(|ku| ku.value.key_cert_sign());
        if !is_ca || !can_sign {
            return Err(SignerError::NotACa);
        }
        let not_before = cert.validity().not_before.to_datetime();
        let not_after = cert.validity().not_after.to_datetime();
        let subject = cert.subject().to_string();
        let uses_rsa = key.algorithm() == &rcgen::PKCS_RSA_SHA256;
        let rcgen = rcgen::Issuer::from_ca_cert_der(&cert_der.as_slice().into(), CaKey::File(key))?;
        Ok(Self {
            name,
            cert_der,
            chain_der,
            root_der,
            not_before,
            not_after,
            subject,
            rcgen,
            uses_rsa,
        })
    }

    /// The issuer's configured name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The issuing certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Certificates between the issuer and the root (not including either), DER.
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain_der
    }

    /// The root certificate, DER (equal to the issuing certificate for a root issuer).
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The chain a client receives after its leaf: the issuer and any intermediates above it,
    /// not the root.
    pub fn chain_after_leaf(&self) -> Vec<&[u8]> {
        let mut chain = Vec::new();
        if self.cert_der != self.root_der {
            chain.push(self.cert_der.as_slice());
        }
        chain.extend(
            self.chain_der
                .iter()
                .map(Vec::as_slice)
                .filter(|c| *c != self.root_der.as_slice()),
        );
        chain
    }

    /// Validity start of the issuing certificate.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// Validity end of the issuing certificate.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The issuer's subject, RFC 4514 text.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Whether signing uses an RSA private-key operation (slow: run it off the reactor).
    pub fn signs_slowly(&self) -> bool {
        self.uses_rsa
    }
}

fn single_certificate(pem: &[u8]) -> Result<Vec<u8>, SignerError> {
    crate::certificates_from_pem(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| SignerError::CertParse("no CERTIFICATE block".into()))
}
