//! CSRs for orders: a fresh P-256 key and the names as SANs, no subject (RFC 8555 needs none).

use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256};

use super::key::{AccountKey, KeyAlg};
use crate::Error;

/// A CSR and the key it was signed with.
#[derive(Clone, Debug)]
pub struct CsrKey {
    /// The PKCS#10 request, DER.
    pub csr_der: Vec<u8>,
    /// The certificate key, PKCS#8 DER.
    pub key_pkcs8_der: Vec<u8>,
}

impl CsrKey {
    /// The certificate key as a signer, to revoke by certificate key.
    pub fn key(&self) -> Result<AccountKey, Error> {
        AccountKey::from_pkcs8(KeyAlg::Es256, &self.key_pkcs8_der)
    }
}

/// A CSR with a new P-256 key for `names` (DNS names; IP literals become IP SANs).
pub fn csr_p256(names: &[String]) -> Result<CsrKey, Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    // rcgen's default subject is a placeholder CN; ACME takes the names from the SANs.
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    Ok(CsrKey {
        csr_der: csr.der().to_vec(),
        key_pkcs8_der: key.serialize_der(),
    })
}
