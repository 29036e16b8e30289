//! `/csrattrs` (RFC 7030 4.5): what an endpoint asks CSRs to carry, DER-encoded as
//! `CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID` (RFC 7030 4.5.2, RFC 9148), and the
//! optional check that a CSR carries it.

use certgate_core::{KeyKind, ParsedCsr};
use const_oid::ObjectIdentifier;
use der::asn1::SetOfVec;
use der::{Any, Encode};
use x509_cert::attr::Attribute;

use crate::EstError;
use crate::config::CsrAttrsConfig;

/// challengePassword (PKCS#9).
pub const CHALLENGE_PASSWORD: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7");
/// extensionRequest (PKCS#9).
pub const EXTENSION_REQUEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

/// The csrattrs an endpoint announces: `challenge_password` is forced on when the endpoint
/// requires channel binding.
pub(crate) fn effective(config: &CsrAttrsConfig, channel_binding: bool) -> CsrAttrsConfig {
    let mut config = config.clone();
    config.challenge_password |= channel_binding;
    config
}

/// The DER `CsrAttrs` for `config`; `None` when there is nothing to announce (204).
pub fn encode(config: &CsrAttrsConfig) -> Result<Option<Vec<u8>>, EstError> {
    let encoding = |e: der::Error| EstError::Encoding(e.to_string());
    let oid = |oid: ObjectIdentifier| Any::encode_from(&oid).map_err(encoding);
    let attribute = |oid: ObjectIdentifier, values: Vec<Any>| -> Result<Any, EstError> {
        let values = SetOfVec::try_from(values).map_err(encoding)?;
        Any::encode_from(&Attribute { oid, values }).map_err(encoding)
    };
    let mut items: Vec<Any> = Vec::new();
    if config.challenge_password {
        items.push(oid(CHALLENGE_PASSWORD)?);
    }
    match config.key {
        None => {}
        Some(KeyKind::Rsa(bits)) => {
            items.push(attribute(
                RSA_ENCRYPTION,
                vec![Any::encode_from(&bits).map_err(encoding)?],
            )?);
            items.push(oid(SHA256_RSA)?);
        }
        Some(KeyKind::Ed25519) => items.push(oid(ED25519)?),
        Some(ec) => {
            let (curve, signature) = match ec {
                KeyKind::EcP384 => (SECP384R1, ECDSA_SHA384),
                KeyKind::EcP521 => (SECP521R1, ECDSA_SHA512),
                _ => (SECP256R1, ECDSA_SHA256),
            };
            items.push(attribute(EC_PUBLIC_KEY, vec![oid(curve)?])?);
            items.push(oid(signature)?);
        }
    }
    if !config.extensions.is_empty() {
        let values = config
            .extensions
            .iter()
            .map(|e| oid(*e))
            .collect::<Result<Vec<_>, _>>()?;
        items.push(attribute(EXTENSION_REQUEST, values)?);
    }
    if items.is_empty() {
        return Ok(None);
    }
    items.to_der().map(Some).map_err(encoding)
}

/// What `csr` lacks of `config` (empty when it carries everything), named for the client.
pub fn missing(config: &CsrAttrsConfig, csr: &ParsedCsr) -> Vec<String> {
    let mut missing = Vec::new();
    if config.challenge_password && csr.challenge_password().is_none() {
        missing.push(format!("challengePassword ({CHALLENGE_PASSWORD})"));
    }
    if let Some(key) = config.key
        && csr.key() != key
    {
        missing.push(format!("a {key} key (the CSR has {})", csr.key()));
    }
    for extension in &config.extensions {
        if !csr.requested_extensions().contains(extension) {
            missing.push(format!("extension request {extension}"));
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use der::Decode;

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn encodings() {
        let mac_address = ObjectIdentifier::new_unwrap("1.3.6.1.1.1.1.22");
        let cases = [
            ("empty", CsrAttrsConfig::default(), None),
            (
                "challenge_password_only",
                CsrAttrsConfig {
                    challenge_password: true,
                    ..CsrAttrsConfig::default()
                },
                Some("300b06092a864886f70d010907"),
            ),
            (
                // RFC 7030 4.5.2's example, the same four items in the same order.
                "rfc7030_example",
                CsrAttrsConfig {
                    challenge_password: true,
                    key: Some(KeyKind::EcP384),
                    extensions: vec![mac_address],
                    enforce: false,
                },
                Some(concat!(
                    "3041",
                    "06092a864886f70d010907",
                    "3012",
                    "06072a8648ce3d0201",
                    "3107",
                    "06052b81040022",
                    "06082a8648ce3d040303",
                    "3016",
                    "06092a864886f70d01090e",
                    "3109",
                    "06072b06010101011",
                    "6",
                )),
            ),
            (
                "rsa_3072",
                CsrAttrsConfig {
                    key: Some(KeyKind::Rsa(3072)),
                    ..CsrAttrsConfig::default()
                },
                Some("301e3011"),
            ),
        ];
        for (case, config, want) in cases {
            let got = encode(&config).unwrap();
            match (got, want) {
                (None, None) => {}
                (Some(der), Some(want)) => {
                    assert!(hex(&der).starts_with(want), "case {case}: {}", hex(&der));
                    let items = Vec::<Any>::from_der(&der).unwrap();
                    assert!(!items.is_empty(), "case {case}");
                }
                (got, want) => panic!("case {case}: got {got:?}, want {want:?}"),
            }
        }
    }
}
