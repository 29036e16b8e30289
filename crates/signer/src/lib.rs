//! certgate signer: the only code that touches private keys.
//!
//! It creates and imports CAs, loads issuer keys (PKCS#8 files with mode 0600, optionally
//! passphrase-encrypted; PKCS#11 later, behind [`CaKey`]) and builds certificates from the
//! facts the authority decided on. It does no policy, no network and no storage.
#![warn(missing_docs)]

mod ca;
mod crl;
mod error;
mod issuer;
mod keys;
mod leaf;
mod ocsp;
mod ra;
#[cfg(test)]
mod test_issuer;

pub use ca::{CaInitOptions, IssuerFiles, import_ca, init_ca};
pub use crl::{CrlSpec, RevokedEntry};
pub use error::SignerError;
pub use issuer::{CaKey, Issuer, IssuerUrls};
pub use keys::{KeyType, Passphrase, generate_key, read_private_key, write_private_key};
pub use leaf::{LeafSpec, Usage};
pub use ocsp::{OCSP_SIGNER_LIFETIME, OcspSigner};
pub use ra::{KeyTransport, RaDigest, RaFiles, RaKey, RaOptions};

/// Writes `der` certificates as PEM, one after another.
pub fn certificates_to_pem<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    use der::pem::LineEnding;
    ders.into_iter()
        .filter_map(|der| der::pem::encode_string("CERTIFICATE", LineEnding::LF, der).ok())
        .collect()
}

/// Reads every CERTIFICATE block from PEM text, in order; other blocks are skipped.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, SignerError> {
    let text = std::str::from_utf8(pem).map_err(|_| SignerError::CertParse("PEM is not UTF-8".into()))?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let end_marker = block
            .find("-----END ")
            .and_then(|e| block[e..].find('\n').map(|n| e + n + 1).or(Some(block.len())))
            .ok_or_else(|| SignerError::CertParse("unterminated PEM block".into()))?;
        let (label, der) = der::pem::decode_vec(&block.as_bytes()[..end_marker])
            .map_err(|e| SignerError::CertParse(format!("PEM: {e}")))?;
        if label == "CERTIFICATE" {
            out.push(der);
        }
        rest = &block[end_marker..];
    }
    Ok(out)
}
