use certgate_core::{Identifier, KeyKind, Serial, SubjectAttribute};
use const_oid::db::rfc5280;
use der::Encode;
use der::Tag;
use der::asn1::Ia5String;
use rcgen::{
    CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};

use crate::{Issuer, IssuerUrls, SignerError};

/// What a certificate is for; decides key usage and extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    /// A TLS server: EKU serverAuth.
    TlsServer,
    /// A TLS client: EKU clientAuth.
    TlsClient,
    /// A device identity (EST, SCEP): EKU clientAuth, the CSR's full subject kept.
    Device,
}

impl Usage {
    /// The name used in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TlsServer => "tls-server",
            Self::TlsClient => "tls-client",
            Self::Device => "device",
        }
    }
}

/// Everything the authority decided about one certificate.
#[derive(Debug, Clone)]
pub struct LeafSpec<'a> {
    /// The serial (reserved in the store).
    pub serial: &'a Serial,
    /// The certified public key, DER SubjectPublicKeyInfo.
    pub spki_der: &'a [u8],
    /// Its type; RSA keys also get keyEncipherment.
    pub key: KeyKind,
    /// The subject's attributes; empty for an empty subject (the SAN is then critical).
    pub subject: &'a [SubjectAttribute],
    /// The subjectAltNames.
    pub sans: &'a [Identifier],
    /// Key usage and EKU come from this.
    pub usage: Usage,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end; never after the issuer's.
    pub not_after: OffsetDateTime,
    /// CRL and AIA URLs.
    pub urls: &'a IssuerUrls,
}

impl Issuer {
    /// Signs a leaf certificate and returns its DER.
    pub fn sign_leaf(&self, spec: &LeafSpec<'_>) -> Result<Vec<u8>, SignerError> {
        if spec.not_after > self.not_after {
            return Err(SignerError::ValidityBeyondIssuer {
                not_after: spec.not_after,
                issuer_not_after: self.not_after,
            });
        }
        let mut params = CertificateParams::default();
        params.serial_number = Some(SerialNumber::from_slice(spec.serial.as_bytes()));
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.distinguished_name = distinguished_name(spec.subject)?;
        params.subject_alt_names = spec.sans.iter().map(san).collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // keyEncipherment only for RSA keys (EC and Ed25519 keys cannot encipher), and not on
        // TLS servers: TLS 1.3 has no RSA key transport and the CA/B Forum discourages
        // asserting both bits. Client and device keys may still use RSA key transport.
        if matches!(spec.key, KeyKind::Rsa(_)) && spec.usage != Usage::TlsServer {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = match spec.usage {
            Usage::TlsServer => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::TlsClient | Usage::Device => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        if let Some(crl) = &spec.urls.crl {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![crl.clone()],
            }];
        }
        if let Some(aia) = authority_info_access(spec.urls)? {
            params.custom_extensions.push(aia);
        }
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spec.spki_der)?;
        let cert = params.signed_by(&public_key, &self.rcgen)?;
        Ok(cert.der().to_vec())
    }
}

fn san(identifier: &Identifier) -> Result<SanType, SignerError> {
    let ia5 =
        |s: &str| rcgen::string::Ia5String::try_from(s.to_owned()).map_err(|_| SignerError::Encoding(s.to_owned()));
    Ok(match identifier {
        Identifier::Dns(name) => SanType::DnsName(ia5(name.as_str())?),
        Identifier::Ip(ip) => SanType::IpAddress(*ip),
        Identifier::Email(email) => SanType::Rfc822Name(ia5(email)?),
        Identifier::Uri(uri) => SanType::URI(ia5(uri)?),
    })
}

pub(crate) fn distinguished_name(subject: &[SubjectAttribute]) -> Result<DistinguishedName, SignerError> {
    let mut dn = DistinguishedName::new();
    for attribute in subject {
        let dn_type = match attribute.oid.to_string().as_str() {
            "2.5.4.3" => DnType::CommonName,
            "2.5.4.6" => DnType::CountryName,
            "2.5.4.7" => DnType::LocalityName,
            "2.5.4.8" => DnType::StateOrProvinceName,
            "2.5.4.10" => DnType::OrganizationName,
            "2.5.4.11" => DnType::OrganizationalUnitName,
            other => DnType::CustomDnType(other.split('.').map(|arc| arc.parse::<u64>().unwrap_or(0)).collect()),
        };
        let encoding_error = || SignerError::Encoding(format!("subject attribute {}", attribute.oid));
        let value = attribute.value.clone();
        let dn_value = match attribute.tag {
            Tag::PrintableString => DnValue::PrintableString(value.try_into().map_err(|_| encoding_error())?),
            Tag::Ia5String => DnValue::Ia5String(value.try_into().map_err(|_| encoding_error())?),
            Tag::TeletexString => DnValue::TeletexString(value.try_into().map_err(|_| encoding_error())?),
            Tag::BmpString => DnValue::BmpString(value.as_str().try_into().map_err(|_| encoding_error())?),
            // UTF8String, and anything else re-encoded as UTF8String (RFC 5280 4.1.2.6).
            _ => DnValue::Utf8String(value),
        };
        dn.push(dn_type, dn_value);
    }
    Ok(dn)
}

fn authority_info_access(urls: &IssuerUrls) -> Result<Option<CustomExtension>, SignerError> {
    let mut descriptions = Vec::new();
    for (method, url) in [
        (rfc5280::ID_AD_OCSP, &urls.ocsp),
        (rfc5280::ID_AD_CA_ISSUERS, &urls.ca_issuers),
    ] {
        if let Some(url) = url {
            let uri = Ia5String::new(url).map_err(|_| SignerError::Encoding(url.clone()))?;
            descriptions.push(AccessDescription {
                access_method: method,
                access_location: GeneralName::UniformResourceIdentifier(uri),
            });
        }
    }
    if descriptions.is_empty() {
        return Ok(None);
    }
    let der = AuthorityInfoAccessSyntax(descriptions)
        .to_der()
        .map_err(|e| SignerError::Build(e.to_string()))?;
    Ok(Some(CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        der,
    )))
}
