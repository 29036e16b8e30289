//! Challenge validation: static (constant time), one-time (the store), webhook (a
//! [`ChallengeWebhook`] the daemon supplies, asked with the request's facts). Challenges are secrets: they are never logged.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use certgate_core::{DnsName, Identifier, Name, ParsedCsr};
use certgate_store::ScepChallengeStore;
use certgate_store::scep_challenges::ScepChallengeRecord;
use const_oid::db::rfc4519;
use serde::Serialize;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{RdnSequence, RelativeDistinguishedName};
use zeroize::Zeroizing;

use crate::config::Secret;
use crate::{ScepError, crypto};

/// The store id of a one-time challenge: lower-case hex SHA-256 of the challenge.
pub fn challenge_id(challenge: &str) -> String {
    crypto::DigestAlg::Sha256
        .digest(challenge.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `presented` equals the static challenge, in constant time (for equal lengths).
pub fn static_matches(expected: &Secret, presented: &str) -> bool {
    bool::from(expected.expose().ct_eq(presented.as_bytes()))
}

/// Creates a one-time challenge for `endpoint` (for the CLI): 128 random bits as 32 hex
/// characters, valid for `ttl`, optionally bound to `subject` (see [`canonical_binding`]:
/// RFC 4514 text such as `CN=dev1,O=test`, or a bare common name). Returns the challenge (show
/// it once, never log it) and the stored record (which holds only its hash, and the binding in
/// canonical form). `Config` for a subject that does not parse.
pub async fn create_one_time_challenge(
    store: &dyn ScepChallengeStore,
    endpoint: &Name,
    subject: Option<String>,
    ttl: time::Duration,
    created_by: Option<String>,
    now: OffsetDateTime,
) -> Result<(Zeroizing<String>, ScepChallengeRecord), ScepError> {
    let subject = subject.as_deref().map(canonical_binding).transpose()?;
    if ttl <= time::Duration::ZERO {
        return Err(ScepError::Config("a challenge's lifetime must be positive".into()));
    }
    let random = Zeroizing::new(crypto::random_bytes(16)?);
    let challenge = Zeroizing::new(random.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let record = ScepChallengeRecord {
        endpoint: endpoint.clone(),
        id: challenge_id(&challenge),
        subject,
        created_by,
        created_at: now,
        expires_at: now + ttl,
    };
    store.create_scep_challenge(&record).await?;
    tracing::info!(
        target: "certgate::audit",
        event = "scep_challenge_created",
        endpoint = %endpoint,
        challenge_id = %record.id,
        bound_to = record.subject.as_deref(),
        expires_at = %record.expires_at,
        "SCEP one-time challenge created"
    );
    Ok((challenge, record))
}

/// The canonical form of the subject a one-time challenge is bound to. RFC 4514 text
/// (`CN=dev1,O=test`, most specific attribute first) is parsed and written back as certgate
/// writes CSR subjects, so spelling (`cn=`, `commonName=`, escapes) does not matter; a bare
/// common name (text without `=`) stands for the subject that is that one common name and
/// nothing else (`CN=dev1`). The challenge then admits only a CSR whose whole subject is this
/// one, every attribute and in order (see [`binding_candidates`]).
pub fn canonical_binding(subject: &str) -> Result<String, ScepError> {
    let bad = || {
        ScepError::Config(format!(
            "challenge subject {subject:?}: write it as RFC 4514 (e.g. CN=dev1,O=test) or as a bare common name"
        ))
    };
    let name = if subject.contains('=') {
        RdnSequence::from_str(subject).map_err(|_| bad())?
    } else {
        let cn = AttributeTypeAndValue {
            oid: rfc4519::COMMON_NAME,
            value: der::Any::new(der::Tag::Utf8String, subject.as_bytes()).map_err(|_| bad())?,
        };
        let rdn = RelativeDistinguishedName::try_from(vec![cn]).map_err(|_| bad())?;
        RdnSequence::from(vec![rdn])
    };
    let text = name.to_string();
    if subject.trim().is_empty() || text.is_empty() {
        return Err(bad());
    }
    Ok(text)
}

/// The subjects a CSR offers a subject-bound one-time challenge: its whole subject in
/// [`canonical_binding`]'s form and, when that subject is a single common name, the bare name
/// (bindings stored before they were canonical). A bound challenge vouches for a subject and
/// for no other name: a CSR asking for a subjectAltName other than its own common name (as a
/// DNS name or IP address) offers nothing, so bound challenges refuse it (unbound ones still
/// accept it, within the endpoint's name policy).
pub fn binding_candidates(csr: &ParsedCsr) -> Vec<String> {
    let cn = csr.common_name();
    let cn_identifier = cn.and_then(|cn| match cn.parse::<IpAddr>() {
        Ok(ip) => Some(Identifier::Ip(ip)),
        Err(_) => DnsName::new(cn).ok().map(Identifier::Dns),
    });
    if !csr.unsupported_sans().is_empty() || csr.sans().iter().any(|san| Some(san) != cn_identifier.as_ref()) {
        return Vec::new();
    }
    let mut subjects = vec![csr.subject_text().to_owned()];
    if let (Some(cn), [_only]) = (cn, csr.subject()) {
        subjects.push(cn.to_owned());
    }
    subjects
}

/// What the webhook receives (JSON).
#[derive(Debug, Serialize)]
pub struct WebhookRequest<'a> {
    /// The endpoint.
    pub endpoint: &'a str,
    /// The request's transactionID.
    pub transaction_id: &'a str,
    /// `PKCSReq` or `RenewalReq`.
    pub message_type: &'a str,
    /// The challenge password from the CSR.
    pub challenge: &'a str,
    /// The CSR's subject, RFC 4514.
    pub subject: &'a str,
    /// The CSR's common name.
    pub common_name: Option<&'a str>,
    /// The CSR's subjectAltNames (`dns:…`, `ip:…`, `email:…`, `uri:…`).
    pub sans: Vec<String>,
    /// The CSR's key type (`RSA-2048`, `P-256`, …).
    pub key_type: String,
}

impl<'a> WebhookRequest<'a> {
    /// The facts of `csr`.
    pub fn new(
        endpoint: &'a Name,
        transaction_id: &'a str,
        message_type: &'a str,
        challenge: &'a str,
        csr: &'a ParsedCsr,
    ) -> Self {
        Self {
            endpoint: endpoint.as_str(),
            transaction_id,
            message_type,
            challenge,
            subject: csr.subject_text(),
            common_name: csr.common_name(),
            sans: csr
                .sans()
                .iter()
                .map(|i: &Identifier| format!("{}:{i}", i.kind()))
                .collect(),
            key_type: csr.key().to_string(),
        }
    }
}

impl WebhookRequest<'_> {
    /// The JSON document a webhook receives (it holds the challenge: zeroed on drop).
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, ScepError> {
        serde_json::to_vec(self)
            .map(Zeroizing::new)
            .map_err(|e| ScepError::Webhook(e.to_string()))
    }
}

/// Decides the challenges that neither the static nor the one-time validator accepted. This
/// crate makes no outbound requests itself: the daemon implements this over the workspace's
/// one outbound webhook client (http or https with certificate verification, HMAC-signed),
/// POSTing [`WebhookRequest::to_json`].
#[async_trait]
pub trait ChallengeWebhook: std::fmt::Debug + Send + Sync {
    /// `Ok(true)` allows the enrollment, `Ok(false)` refuses it (FAILURE badRequest);
    /// `Err` ([`ScepError::Webhook`]) when the webhook cannot be asked or gives no answer in
    /// time, which refuses it too (FAILURE, logged as a server fault). Implementations bound
    /// their own time.
    async fn allows(&self, request: &WebhookRequest<'_>) -> Result<bool, ScepError>;
}

/// An endpoint's configured challenge webhook.
#[derive(Debug, Clone)]
pub(crate) struct Webhook(Arc<dyn ChallengeWebhook>);

impl Webhook {
    /// Takes the configured webhook.
    pub(crate) fn new(webhook: &Arc<dyn ChallengeWebhook>) -> Result<Self, ScepError> {
        Ok(Self(Arc::clone(webhook)))
    }

    /// Asks the webhook (see [`ChallengeWebhook::allows`]).
    pub(crate) async fn allows(&self, request: &WebhookRequest<'_>) -> Result<bool, ScepError> {
        self.0.allows(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_challenges_and_ids() {
        let secret = Secret::new("s3cret");
        assert!(static_matches(&secret, "s3cret"));
        assert!(!static_matches(&secret, "s3creT"));
        assert!(!static_matches(&secret, "s3cret "));
        assert!(!static_matches(&secret, ""));
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        let id = challenge_id("abc");
        assert_eq!(id.len(), 64);
        assert!(certgate_store::scep_challenges::valid_challenge_id(&id));
    }

    #[test]
    fn challenge_bindings_are_canonical() {
        let cases = [
            ("good_bare_cn", "dev1", Some("CN=dev1")),
            ("good_rfc4514", "CN=dev1,O=test", Some("CN=dev1,O=test")),
            ("good_spelling", "cn=dev1,o=test", Some("CN=dev1,O=test")),
            ("good_long_type_name", "commonName=dev1", Some("CN=dev1")),
            ("good_escaped_comma", "CN=a\\,b", Some("CN=a\\,b")),
            ("good_bare_cn_with_comma", "a,b", Some("CN=a\\,b")),
            ("bad_empty", "", None),
            ("bad_unknown_type", "XX=dev1", None),
            ("bad_space_after_comma", "CN=dev1, O=test", None),
        ];
        for (case, subject, want) in cases {
            assert_eq!(canonical_binding(subject).ok().as_deref(), want, "case {case}");
        }
    }

    #[test]
    fn binding_candidates_are_the_whole_subject() {
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = |subject: &[(rcgen::DnType, &str)], sans: &[&str]| {
            let mut params =
                rcgen::CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            for (kind, value) in subject {
                params.distinguished_name.push(kind.clone(), *value);
            }
            ParsedCsr::from_der(params.serialize_request(&key).unwrap().der()).unwrap()
        };
        let cn = |v| (rcgen::DnType::CommonName, v);
        let o = |v| (rcgen::DnType::OrganizationName, v);
        let cases: [(&str, ParsedCsr, &[&str]); 5] = [
            ("good_cn_alone", csr(&[cn("dev1")], &[]), &["CN=dev1", "dev1"]),
            ("good_cn_and_o", csr(&[o("test"), cn("dev1")], &[]), &["CN=dev1,O=test"]),
            (
                "good_cn_as_its_san",
                csr(&[cn("h.example")], &["h.example"]),
                &["CN=h.example", "h.example"],
            ),
            ("bad_other_san", csr(&[cn("dev1")], &["payroll.corp.example"]), &[]),
            (
                "bad_cn_and_other_san",
                csr(&[cn("h.example")], &["h.example", "payroll.corp.example"]),
                &[],
            ),
        ];
        for (case, csr, want) in cases {
            assert_eq!(binding_candidates(&csr), want, "case {case}");
        }
    }
}
