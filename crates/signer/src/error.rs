use std::path::PathBuf;

use certgate_core::ErrorKind;

/// A failure in key handling or certificate building.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A private key file is readable by group or others.
    #[error("{path}: private key file has mode {mode:o}; it must be 0600 (chmod 600 it)")]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key is encrypted and no passphrase was given.
    #[error("{0}: the private key is encrypted; give a passphrase file or environment variable")]
    PassphraseRequired(PathBuf),
    /// The passphrase does not decrypt the key (or the encryption is unsupported).
    #[error("{0}: cannot decrypt the private key: wrong passphrase or unsupported encryption")]
    KeyDecrypt(PathBuf),
    /// The passphrase source is unusable (missing variable, empty file).
    #[error("passphrase: {0}")]
    Passphrase(String),
    /// The key is not a supported PKCS#8, SEC1 or PKCS#1 key.
    #[error("private key: {0}")]
    KeyParse(String),
    /// A certificate does not parse.
    #[error("certificate: {0}")]
    CertParse(String),
    /// The CA certificate does not belong to the private key.
    #[error("the issuer certificate's public key does not match its private key")]
    KeyCertMismatch,
    /// The issuer certificate is not a CA that may sign certificates.
    #[error("the issuer certificate is not a CA certificate with keyCertSign")]
    NotACa,
    /// Refusing to overwrite CA material.
    #[error("{0} already exists; refusing to overwrite CA material")]
    AlreadyExists(PathBuf),
    /// The requested validity ends after the issuer's own certificate.
    #[error("notAfter {not_after} is after the issuer's expiry {issuer_not_after}")]
    ValidityBeyondIssuer {
        /// Requested.
        not_after: time::OffsetDateTime,
        /// The issuer's.
        issuer_not_after: time::OffsetDateTime,
    },
    /// A name cannot be encoded into a certificate.
    #[error("cannot encode {0} into a certificate")]
    Encoding(String),
    /// rcgen refused to build or sign.
    #[error("certificate building failed: {0}")]
    Build(String),
}

impl SignerError {
    /// The cross-crate meaning of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::ValidityBeyondIssuer { .. } => ErrorKind::BadValidity,
            Self::Encoding(_) => ErrorKind::RejectedIdentifier,
            _ => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

impl From<rcgen::Error> for SignerError {
    fn from(e: rcgen::Error) -> Self {
        Self::Build(e.to_string())
    }
}
