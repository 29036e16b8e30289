//! What the daemon knows about the TLS connection, per-endpoint client certificate
//! verification, and RFC 9266 / RFC 7030 3.5 channel binding.

use std::sync::Arc;

use base64::Engine;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::EstError;

/// The label of the RFC 9266 tls-exporter channel binding.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
/// The length of the tls-exporter value.
pub const EXPORTER_LEN: usize = 32;

/// The negotiated TLS version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// What the daemon extracts from a TLS connection (with rustls) and passes with each request.
#[derive(Clone, Default)]
pub struct TlsFacts {
    /// The negotiated version (`None` if unknown).
    pub version: Option<TlsVersion>,
    /// The client's certificate chain as presented, leaf first, DER; empty without one. The
    /// daemon's verifier has checked the handshake signature (possession of the key); this
    /// crate checks which endpoint trust anchor the chain reaches.
    pub client_chain: Vec<Vec<u8>>,
    /// RFC 9266 tls-exporter: `export_keying_material(32 bytes, "EXPORTER-Channel-Binding",
    /// no context)`.
    pub exporter: Option<[u8; EXPORTER_LEN]>,
    /// RFC 5929 tls-unique (TLS 1.2 only: the first Finished message of the last handshake).
    pub tls_unique: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsFacts {
    // Channel-binding values are secrets of the connection: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFacts")
            .field("version", &self.version)
            .field("client_chain_len", &self.client_chain.len())
            .field("exporter", &self.exporter.map(|_| "<redacted>"))
            .field("tls_unique", &self.tls_unique.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Checks RFC 7030 3.5 channel binding: `challenge_password` must be the base64 (standard
/// alphabet, padding optional, surrounding whitespace ignored) of the connection's
/// tls-exporter value, or on TLS 1.2 of its tls-unique value. Compared in constant time.
pub fn check_channel_binding(tls: &TlsFacts, challenge_password: Option<&str>) -> Result<(), EstError> {
    let Some(password) = challenge_password else {
        return Err(EstError::ChannelBinding("the CSR has no challengePassword"));
    };
    let mut expected: Vec<&[u8]> = Vec::new();
    if let Some(exporter) = &tls.exporter {
        expected.push(exporter);
    }
    if tls.version == Some(TlsVersion::Tls12)
        && let Some(unique) = &tls.tls_unique
    {
        expected.push(unique);
    }
    if expected.is_empty() {
        return Err(EstError::ChannelBinding("no channel binding value for this connection"));
    }
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let Ok(given) = lenient.decode(password.trim()) else {
        return Err(EstError::ChannelBinding("the challengePassword is not base64"));
    };
    let mut matched = subtle::Choice::from(0u8);
    for value in expected {
        matched |= given.as_slice().ct_eq(value);
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(EstError::ChannelBinding(
            "the challengePassword does not match this TLS connection",
        ))
    }
}

/// Verifies client certificate chains against one endpoint's trust anchors (webpki through
/// rustls: signatures, validity at the injected time, name constraints, CA flags, clientAuth
/// EKU when present).
pub(crate) struct AnchorVerifier {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for AnchorVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnchorVerifier")
    }
}

impl AnchorVerifier {
    /// A verifier for `anchors` (DER certificates); `Config` if there are none or one does not
    /// parse.
    pub(crate) fn new(anchors: &[Vec<u8>]) -> Result<Self, EstError> {
        let mut roots = RootCertStore::empty();
        for anchor in anchors {
            roots
                .add(CertificateDer::from(anchor.as_slice()))
                .map_err(|e| EstError::Config(format!("trust anchor: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| EstError::Config(format!("trust anchors: {e}")))?;
        Ok(Self { verifier })
    }

    /// Whether `chain` (leaf first) chains to one of the anchors at `now`.
    pub(crate) fn verify(&self, chain: &[Vec<u8>], now: OffsetDateTime) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let Ok(seconds) = u64::try_from(now.unix_timestamp()) else {
            return false;
        };
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds));
        self.verifier
            .verify_client_cert(&CertificateDer::from(leaf.as_slice()), &intermediates, now)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    #[test]
    fn channel_binding_cases() {
        let exporter = [7u8; 32];
        let unique = vec![9u8; 12];
        let tls13 = TlsFacts {
            version: Some(TlsVersion::Tls13),
            exporter: Some(exporter),
            tls_unique: Some(unique.clone()),
            ..TlsFacts::default()
        };
        let tls12 = TlsFacts {
            version: Some(TlsVersion::Tls12),
            exporter: None,
            tls_unique: Some(unique.clone()),
            ..TlsFacts::default()
        };
        let good_exporter = STANDARD.encode(exporter);
        let good_unique = STANDARD.encode(&unique);
        let cases: [(&str, &TlsFacts, Option<String>, bool); 9] = [
            ("good_exporter", &tls13, Some(good_exporter.clone()), true),
            (
                "good_exporter_unpadded",
                &tls13,
                Some(good_exporter.trim_end_matches('=').to_owned()),
                true,
            ),
            (
                "good_exporter_whitespace",
                &tls13,
                Some(format!(" {good_exporter}\n")),
                true,
            ),
            ("good_tls_unique_on_12", &tls12, Some(good_unique.clone()), true),
            ("bad_tls_unique_on_13", &tls13, Some(good_unique.clone()), false),
            ("bad_missing", &tls13, None, false),
            ("bad_wrong_value", &tls13, Some(STANDARD.encode([8u8; 32])), false),
            ("bad_raw_hex", &tls13, Some("07".repeat(32)), false),
            (
                "bad_no_tls_values",
                &TlsFacts::default(),
                Some(good_exporter.clone()),
                false,
            ),
        ];
        for (case, tls, password, ok) in cases {
            assert_eq!(
                check_channel_binding(tls, password.as_deref()).is_ok(),
                ok,
                "case {case}"
            );
        }
    }
}
