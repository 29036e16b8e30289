use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use der::pem::LineEnding;
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use rcgen::{KeyPair, RsaKeySize};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::SignerError;

/// A key type certgate can generate for a CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// ECDSA P-256 with SHA-256 (the default).
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
    /// RSA 2048 with SHA-256.
    Rsa2048,
    /// RSA 3072 with SHA-256.
    Rsa3072,
    /// RSA 4096 with SHA-256.
    Rsa4096,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// Every key type, for tests and help texts.
    pub const ALL: [Self; 6] = [
        Self::P256,
        Self::P384,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::Ed25519,
    ];

    /// The name used on the command line and in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::P384 => "p384",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
            Self::Rsa4096 => "rsa4096",
            Self::Ed25519 => "ed25519",
        }
    }

    pub(crate) fn signature_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown key type {s:?}; expected one of p256, p384, rsa2048, rsa3072, rsa4096, ed25519")
            })
    }
}

/// Generates a new key pair of `key_type`.
pub fn generate_key(key_type: KeyType) -> Result<KeyPair, SignerError> {
    let alg = key_type.signature_algorithm();
    let key = match key_type {
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(alg, RsaKeySize::_2048),
        KeyType::Rsa3072 => KeyPair::generate_rsa_for(alg, RsaKeySize::_3072),
        KeyType::Rsa4096 => KeyPair::generate_rsa_for(alg, RsaKeySize::_4096),
        _ => KeyPair::generate_for(alg),
    }?;
    Ok(key)
}

/// A passphrase for an encrypted key. Zeroed on drop; never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl Passphrase {
    /// Wraps bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, SignerError> {
        let bytes = Zeroizing::new(bytes.into());
        if bytes.is_empty() {
            return Err(SignerError::Passphrase("the passphrase is empty".into()));
        }
        Ok(Self(bytes))
    }

    /// Reads the first line of a file (a trailing newline is not part of the passphrase).
    pub fn from_file(path: &Path) -> Result<Self, SignerError> {
        let content = Zeroizing::new(fs::read(path).map_err(SignerError::io(path))?);
        let end = content.iter().position(|b| *b == b'\n').unwrap_or(content.len());
        let line = content[..end].strip_suffix(b"\r").unwrap_or(&content[..end]);
        Self::new(line.to_vec())
    }

    /// Reads an environment variable.
    pub fn from_env(var: &str) -> Result<Self, SignerError> {
        let value = std::env::var_os(var)
            .ok_or_else(|| SignerError::Passphrase(format!("environment variable {var} is not set")))?;
        Self::new(value.into_encoded_bytes())
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Writes a private key as PKCS#8 PEM with mode 0600, encrypted (PBES2) when a passphrase
/// is given. Refuses to overwrite an existing file.
pub fn write_private_key(path: &Path, key: &KeyPair, passphrase: Option<&Passphrase>) -> Result<(), SignerError> {
    let der = Zeroizing::new(key.serialize_der());
    let pem = match passphrase {
        None => der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &der),
        Some(passphrase) => {
            let info = PrivateKeyInfoRef::try_from(der.as_slice()).map_err(|e| SignerError::KeyParse(e.to_string()))?;
            let encrypted = info
                .encrypt(passphrase.bytes())
                .map_err(|e| SignerError::KeyParse(format!("encrypting: {e}")))?;
            der::pem::encode_string("ENCRYPTED PRIVATE KEY", LineEnding::LF, encrypted.as_bytes())
        }
    }
    .map_err(|e| SignerError::KeyParse(e.to_string()))?;
    let pem = Zeroizing::new(pem);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => SignerError::AlreadyExists(path.to_owned()),
            _ => SignerError::Io {
                path: path.to_owned(),
                source: e,
            },
        })?;
    // The umask cannot widen 0600, but set it explicitly in case the file system ignores mode.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(SignerError::io(path))?;
    file.write_all(pem.as_bytes()).map_err(SignerError::io(path))?;
    file.sync_all().map_err(SignerError::io(path))?;
    Ok(())
}

/// Reads a private key file: PKCS#8 (plain or encrypted), SEC1 or PKCS#1 PEM. Refuses a file
/// that group or others may read.
pub fn read_private_key(path: &Path, passphrase: Option<&Passphrase>) -> Result<KeyPair, SignerError> {
    let mode = fs::metadata(path).map_err(SignerError::io(path))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SignerError::KeyFilePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let pem = Zeroizing::new(fs::read(path).map_err(SignerError::io(path))?);
    parse_private_key_pem(&pem, passphrase).map_err(|e| match e {
        SignerError::PassphraseRequired(_) => SignerError::PassphraseRequired(path.to_owned()),
        SignerError::KeyDecrypt(_) => SignerError::KeyDecrypt(path.to_owned()),
        other => other,
    })
}

pub(crate) fn parse_private_key_pem(pem: &[u8], passphrase: Option<&Passphrase>) -> Result<KeyPair, SignerError> {
    let (label, der) = der::pem::decode_vec(pem).map_err(|e| SignerError::KeyParse(format!("PEM: {e}")))?;
    let der = Zeroizing::new(der);
    let plain = match label {
        "ENCRYPTED PRIVATE KEY" => {
            let passphrase = passphrase.ok_or_else(|| SignerError::PassphraseRequired(Default::default()))?;
            let info = EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
                .map_err(|e| SignerError::KeyParse(e.to_string()))?;
            let doc = info
                .decrypt(passphrase.bytes())
                .map_err(|_| SignerError::KeyDecrypt(Default::default()))?;
            Zeroizing::new(doc.as_bytes().to_vec())
        }
        "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => der,
        other => return Err(SignerError::KeyParse(format!("unsupported PEM label {other:?}"))),
    };
    KeyPair::try_from(plain.as_slice()).map_err(|e| SignerError::KeyParse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    #[test]
    fn key_files_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let passphrase = Passphrase::new(b"correct horse".to_vec()).unwrap();
        for (case, key_type, pass) in [
            ("p256_plain", KeyType::P256, None),
            ("p384_encrypted", KeyType::P384, Some(&passphrase)),
            ("ed25519_encrypted", KeyType::Ed25519, Some(&passphrase)),
            ("rsa2048_plain", KeyType::Rsa2048, None),
        ] {
            let path = dir.path().join(case);
            let key = generate_key(key_type).unwrap();
            write_private_key(&path, &key, pass).unwrap();
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600,
                "case {case}"
            );
            let back = read_private_key(&path, pass).unwrap();
            assert_eq!(
                back.subject_public_key_info(),
                key.subject_public_key_info(),
                "case {case}"
            );
            assert!(
                matches!(write_private_key(&path, &key, pass), Err(SignerError::AlreadyExists(_))),
                "case {case}"
            );
        }
    }

    #[test]
    fn bad_key_reads() {
        let dir = tempfile::tempdir().unwrap();
        let passphrase = Passphrase::new(b"right".to_vec()).unwrap();
        let wrong = Passphrase::new(b"wrong".to_vec()).unwrap();
        let path = dir.path().join("k");
        write_private_key(&path, &generate_key(KeyType::P256).unwrap(), Some(&passphrase)).unwrap();
        assert!(matches!(
            read_private_key(&path, None),
            Err(SignerError::PassphraseRequired(_))
        ));
        assert!(matches!(
            read_private_key(&path, Some(&wrong)),
            Err(SignerError::KeyDecrypt(_))
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_private_key(&path, Some(&passphrase)),
            Err(SignerError::KeyFilePermissions { mode: 0o644, .. })
        ));
        let garbage = dir.path().join("garbage");
        fs::write(&garbage, "not a key").unwrap();
        fs::set_permissions(&garbage, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            read_private_key(&garbage, None),
            Err(SignerError::KeyParse(_))
        ));
        assert!(Passphrase::new(Vec::new()).is_err());
    }
}
