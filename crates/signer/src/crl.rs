//! Certificate revocation lists (RFC 5280 section 5), signed by the issuer's own key.
//!
//! The caller (certgate-revocation) decides what goes in: which certificates, the CRL number
//! and the validity. This module only encodes and signs.

use rcgen::{
    CertificateRevocationListParams, CrlDistributionPoint, CrlIssuingDistributionPoint, KeyIdMethod, RevokedCertParams,
    SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use crate::{Issuer, SignerError};
use certgate_core::{RevocationReason, Serial};

/// One revoked certificate in a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The certificate's serial.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// Why; `Unspecified` is written as no reasonCode extension (RFC 5280 5.3.1).
    pub reason: RevocationReason,
}

/// Everything one CRL says.
#[derive(Debug, Clone)]
pub struct CrlSpec<'a> {
    /// The cRLNumber: must grow with every CRL of this issuer (RFC 5280 5.2.3). At most
    /// 20 octets are allowed; a `u128` always fits.
    pub crl_number: u128,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate; must be after `this_update`.
    pub next_update: OffsetDateTime,
    /// The revoked certificates to list.
    pub revoked: &'a [RevokedEntry],
    /// The URL of an issuing distribution point extension, or none. Give it only when it is
    /// exactly the CRL distribution point in every certificate the CRL covers: relying
    /// parties (OpenSSL among them) refuse a CRL whose IDP differs from the certificate's DP.
    pub issuing_distribution_point: Option<&'a str>,
}

impl Issuer {
    /// Signs a CRL and returns its DER. For an RSA issuer this is an RSA private-key operation:
    /// call it off the reactor ([`Issuer::signs_slowly`]).
    pub fn sign_crl(&self, spec: &CrlSpec<'_>) -> Result<Vec<u8>, SignerError> {
        if spec.next_update <= spec.this_update {
            return Err(SignerError::Build(
                "a CRL's nextUpdate must be after its thisUpdate".into(),
            ));
        }
        let revoked_certs = spec
            .revoked
            .iter()
            .map(|entry| RevokedCertParams {
                serial_number: SerialNumber::from_slice(entry.serial.as_bytes()),
                revocation_time: entry.revoked_at,
                reason_code: reason_code(entry.reason),
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: spec.this_update,
            next_update: spec.next_update,
            crl_number: SerialNumber::from_slice(&minimal_be(spec.crl_number)),
            issuing_distribution_point: spec.issuing_distribution_point.map(|url| CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: vec![url.to_owned()],
                },
                scope: None,
            }),
            revoked_certs,
            // The AKI must equal the issuer certificate's SKI, whatever method made that one,
            // or path builders do not find the CRL's signer.
            key_identifier_method: self.key_id_method()?,
        };
        let crl = params.signed_by(&self.rcgen)?;
        Ok(crl.der().to_vec())
    }

    fn key_id_method(&self) -> Result<KeyIdMethod, SignerError> {
        let (_, cert) = X509Certificate::from_der(&self.cert_der).map_err(|e| SignerError::CertParse(e.to_string()))?;
        let ski = cert.extensions().iter().find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0.to_vec()),
            _ => None,
        });
        Ok(ski.map_or(KeyIdMethod::Sha256, KeyIdMethod::PreSpecified))
    }
}

fn reason_code(reason: RevocationReason) -> Option<rcgen::RevocationReason> {
    use rcgen::RevocationReason as R;
    match reason {
        RevocationReason::Unspecified => None,
        RevocationReason::KeyCompromise => Some(R::KeyCompromise),
        RevocationReason::CaCompromise => Some(R::CaCompromise),
        RevocationReason::AffiliationChanged => Some(R::AffiliationChanged),
        RevocationReason::Superseded => Some(R::Superseded),
        RevocationReason::CessationOfOperation => Some(R::CessationOfOperation),
        RevocationReason::PrivilegeWithdrawn => Some(R::PrivilegeWithdrawn),
        RevocationReason::AaCompromise => Some(R::AaCompromise),
    }
}

/// Big-endian bytes without leading zeros (at least one byte); rcgen adds the sign octet.
fn minimal_be(value: u128) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len() - 1);
    bytes[first..].to_vec()
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::revocation_list::CertificateRevocationList;

    use super::*;
    use crate::KeyType;
    use crate::test_issuer::issuer;

    #[test]
    fn minimal_big_endian_numbers() {
        for (case, value, want) in [
            ("zero", 0u128, vec![0u8]),
            ("one", 1, vec![1]),
            ("high_bit", 0x80, vec![0x80]),
            ("two_bytes", 0x1234, vec![0x12, 0x34]),
            ("max", u128::MAX, vec![0xff; 16]),
        ] {
            assert_eq!(minimal_be(value), want, "case {case}");
        }
    }

    #[test]
    fn good_crl_per_key_type_lists_entries_with_reasons_and_matching_aki() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        for key_type in [KeyType::P256, KeyType::Rsa2048, KeyType::Ed25519] {
            let case = key_type.as_str();
            let ca = issuer(&dir.path().join(case), key_type);
            let entries = [
                RevokedEntry {
                    serial: Serial::parse_hex("4ABC").unwrap(),
                    revoked_at: now - Duration::hours(1),
                    reason: RevocationReason::KeyCompromise,
                },
                RevokedEntry {
                    serial: Serial::parse_hex("0x7F01").unwrap(),
                    revoked_at: now - Duration::minutes(5),
                    reason: RevocationReason::Unspecified,
                },
            ];
            let der = ca
                .sign_crl(&CrlSpec {
                    crl_number: 0x1_0000_0000_0000_0000,
                    this_update: now,
                    next_update: now + Duration::hours(24),
                    revoked: &entries,
                    issuing_distribution_point: Some("http://ca.example/crl/default.crl"),
                })
                .unwrap();
            let (rest, crl) = CertificateRevocationList::from_der(&der).unwrap();
            assert!(rest.is_empty(), "case {case}");
            let (_, ca_cert) = X509Certificate::from_der(ca.certificate_der()).unwrap();
            assert_eq!(
                crl.crl_number().unwrap().to_bytes_be(),
                minimal_be(0x1_0000_0000_0000_0000)
            );
            let revoked: Vec<_> = crl.iter_revoked_certificates().collect();
            assert_eq!(revoked.len(), 2, "case {case}");
            assert_eq!(revoked[0].raw_serial(), &[0x4a, 0xbc]);
            assert_eq!(revoked[0].reason_code().map(|(_, r)| r.0), Some(1), "case {case}");
            assert!(
                revoked[1].reason_code().is_none(),
                "case {case}: unspecified is omitted"
            );
            let ski = ca_cert.extensions().iter().find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0.to_vec()),
                _ => None,
            });
            let aki = crl.extensions().iter().find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|k| k.0.to_vec()),
                _ => None,
            });
            assert_eq!(aki, ski, "case {case}: AKI equals the issuer's SKI");
        }
    }

    #[test]
    fn bad_crl_validity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = issuer(dir.path(), KeyType::P256);
        let now = OffsetDateTime::now_utc();
        let result = ca.sign_crl(&CrlSpec {
            crl_number: 1,
            this_update: now,
            next_update: now,
            revoked: &[],
            issuing_distribution_point: None,
        });
        assert!(matches!(result, Err(SignerError::Build(_))));
    }
}
