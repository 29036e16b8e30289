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

#[cfg(test)]
mod tests {
    use rcgen::{CertificateSigningRequestParams, SanType};
    use rustls_pki_types::CertificateSigningRequestDer;

    use super::*;

    #[test]
    fn csr_has_the_names_and_no_subject() {
        let names = vec!["a.bench.test".to_owned(), "192.0.2.1".to_owned()];
        let csr = csr_p256(&names).expect("csr");
        let parsed =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr.csr_der.clone()))
                .expect("parse");
        let sans = &parsed.params.subject_alt_names;
        assert!(matches!(&sans[0], SanType::DnsName(n) if n.as_str() == "a.bench.test"));
        assert!(matches!(&sans[1], SanType::IpAddress(ip) if ip.to_string() == "192.0.2.1"));
        assert_eq!(parsed.params.distinguished_name.iter().count(), 0);
        assert_eq!(csr.key().expect("key").alg(), KeyAlg::Es256);
    }
}
