//! CAA evaluation (RFC 8659 section 4, RFC 8657): pure functions over the relevant RRset, so
//! the policy is unit-tested without DNS. Tree climbing lives in `dns.rs`.

use std::fmt;

use crate::ChallengeKind;
use crate::error::excerpt;

/// One CAA resource record, as raw as hickory hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Property {
    /// The issuer critical flag (bit 128 of the flags).
    pub critical: bool,
    /// The property tag, compared case-insensitively.
    pub tag: String,
    /// The raw property value.
    pub value: Vec<u8>,
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = if self.critical { 128 } else { 0 };
        write!(
            f,
            "{flags} {} \"{}\"",
            excerpt(self.tag.as_bytes()),
            excerpt(&self.value)
        )
    }
}

/// Tags this CA understands, so a critical one of them does not forbid issuance. Only `issue`
/// and `issuewild` restrict issuance of server certificates; the others are known but concern
/// reporting (RFC 8659 `iodef`, RFC 8657/CA/B contact tags) or other certificate kinds
/// (RFC 9495 `issuemail`, `issuevmc`).
const KNOWN_TAGS: &[&str] = &[
    "issue",
    "issuewild",
    "iodef",
    "contactemail",
    "contactphone",
    "issuemail",
    "issuevmc",
];

/// What the CA is checking for.
pub(crate) struct Request<'a> {
    pub wildcard: bool,
    pub identities: &'a [String],
    pub account_uri: &'a str,
    pub method: ChallengeKind,
}

/// Decides whether the relevant RRset (non-empty, found at some name while climbing) permits
/// issuance. `Err` carries the reason, naming the record(s) that forbid it.
pub(crate) fn evaluate(rrset: &[Property], request: &Request<'_>) -> Result<(), String> {
    // RFC 8659 4.1: an unknown tag with the critical flag forbids issuance outright.
    if let Some(unknown) = rrset
        .iter()
        .find(|p| p.critical && !KNOWN_TAGS.iter().any(|known| p.tag.eq_ignore_ascii_case(known)))
    {
        return Err(format!(
            "record {unknown} has the critical flag on a property tag this CA does not understand"
        ));
    }
    // RFC 8659 4.3: for a wildcard, issuewild properties (when present) replace issue.
    let has_issuewild = rrset.iter().any(|p| p.tag.eq_ignore_ascii_case("issuewild"));
    let tag = if request.wildcard && has_issuewild {
        "issuewild"
    } else {
        "issue"
    };
    let relevant: Vec<&Property> = rrset.iter().filter(|p| p.tag.eq_ignore_ascii_case(tag)).collect();
    if relevant.is_empty() {
        // RFC 8659 4.2: a set with no issue(wild) properties does not restrict issuance.
        return Ok(());
    }
    let mut reasons = Vec::new();
    for property in &relevant {
        match permits(property, request) {
            Ok(()) => return Ok(()),
            Err(reason) => reasons.push(format!("{property} ({reason})")),
        }
    }
    Err(format!("no {tag} record authorizes this CA: {}", reasons.join(", ")))
}

/// Whether one issue/issuewild property authorizes this request; `Err` says why not.
fn permits(property: &Property, request: &Request<'_>) -> Result<(), String> {
    let value = IssueValue::parse(&property.value).ok_or("malformed value")?;
    let domain = value.domain.ok_or("no CA may issue")?;
    if !request
        .identities
        .iter()
        .any(|id| id.trim_end_matches('.').eq_ignore_ascii_case(domain))
    {
        return Err("another CA".to_owned());
    }
    // RFC 8657 3: accounturi restricts issuance to one ACME account.
    let mut account_uris = value
        .parameters
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("accounturi"));
    if let Some((_, uri)) = account_uris.next() {
        if account_uris.next().is_some() {
            return Err("more than one accounturi".to_owned());
        }
        if *uri != request.account_uri {
            return Err("accounturi names another account".to_owned());
        }
    }
    // RFC 8657 4: validationmethods restricts the challenge types.
    let mut methods = value
        .parameters
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("validationmethods"));
    if let Some((_, list)) = methods.next() {
        if methods.next().is_some() {
            return Err("more than one validationmethods".to_owned());
        }
        if !list.split(',').any(|m| m == request.method.name()) {
            return Err(format!("validationmethods does not include {}", request.method));
        }
    }
    Ok(())
}

/// A parsed `issue`/`issuewild` value (RFC 8659 4.2):
/// `*WSP [issuer-domain-name *WSP] [";" *WSP [parameters *WSP]]`.
#[derive(Debug, PartialEq, Eq)]
struct IssueValue<'a> {
    /// The issuer domain name, without a trailing dot; `None` for `;` (no issuer allowed).
    domain: Option<&'a str>,
    parameters: Vec<(&'a str, &'a str)>,
}

impl<'a> IssueValue<'a> {
    /// `None` when the value does not follow the grammar; such a property authorizes no one.
    fn parse(raw: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(raw).ok()?;
        if !text.is_ascii() {
            return None;
        }
        let wsp: &[char] = &[' ', '\t'];
        let (domain, params) = match text.split_once(';') {
            Some((domain, params)) => (domain, Some(params)),
            None => (text, None),
        };
        let domain = domain.trim_matches(wsp);
        let domain = if domain.is_empty() {
            None
        } else {
            // Lenient about one trailing dot; otherwise RFC 8659 labels.
            let name = domain.strip_suffix('.').unwrap_or(domain);
            if !name.split('.').all(is_label) {
                return None;
            }
            Some(name)
        };
        let mut parameters = Vec::new();
        for param in params.unwrap_or_default().split(';') {
            let param = param.trim_matches(wsp);
            if param.is_empty() {
                continue;
            }
            let (key, value) = param.split_once('=')?;
            let (key, value) = (key.trim_matches(wsp), value.trim_matches(wsp));
            if !is_label(key) || !value.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b';') {
                return None;
            }
            parameters.push((key, value));
        }
        Some(Self { domain, parameters })
    }
}

/// `(ALPHA / DIGIT) *( *("-") (ALPHA / DIGIT))`: also the grammar of a parameter tag.
fn is_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(critical: bool, tag: &str, value: &str) -> Property {
        Property {
            critical,
            tag: tag.to_owned(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn issue_values() {
        type Parsed<'a> = Option<(Option<&'a str>, Vec<(&'a str, &'a str)>)>;
        let cases: [(&str, &str, Parsed<'_>); 9] = [
            ("bare", "ca.example", Some((Some("ca.example"), vec![]))),
            ("trailing_dot", "ca.example.", Some((Some("ca.example"), vec![]))),
            ("none", ";", Some((None, vec![]))),
            ("empty", "", Some((None, vec![]))),
            (
                "params_with_space",
                " ca.example ; accounturi=https://a/acct/1 ; validationmethods=dns-01",
                Some((
                    Some("ca.example"),
                    vec![("accounturi", "https://a/acct/1"), ("validationmethods", "dns-01")],
                )),
            ),
            ("param_no_equals", "ca.example; foo", None),
            ("bad_domain", "ca_example", None),
            ("space_in_value", "ca.example; a=b c", None),
            ("non_ascii", "c\u{e4}.example", None),
        ];
        for (case, raw, want) in cases {
            let got = IssueValue::parse(raw.as_bytes()).map(|v| (v.domain, v.parameters));
            assert_eq!(got, want, "case {case}");
        }
    }

    #[test]
    fn evaluation() {
        let ids = vec!["certgate.test".to_owned()];
        let account = "https://ca.test/acme/acct/1";
        let request = |wildcard, method| Request {
            wildcard,
            identities: &ids,
            account_uri: account,
            method,
        };
        let http = ChallengeKind::Http01;
        let cases: Vec<(&str, Vec<Property>, Request<'_>, bool)> = vec![
            (
                "good_issue",
                vec![prop(false, "issue", "certgate.test")],
                request(false, http),
                true,
            ),
            (
                "good_case_insensitive",
                vec![prop(false, "ISSUE", "CertGate.Test")],
                request(false, http),
                true,
            ),
            (
                "bad_other_ca",
                vec![prop(false, "issue", "other.example")],
                request(false, http),
                false,
            ),
            (
                "good_one_of_two",
                vec![
                    prop(false, "issue", "other.example"),
                    prop(false, "issue", "certgate.test"),
                ],
                request(false, http),
                true,
            ),
            (
                "bad_semicolon",
                vec![prop(false, "issue", ";")],
                request(false, http),
                false,
            ),
            (
                "good_only_iodef",
                vec![prop(false, "iodef", "mailto:a@b.test")],
                request(false, http),
                true,
            ),
            (
                "good_unknown_noncritical",
                vec![prop(false, "future", "x")],
                request(false, http),
                true,
            ),
            (
                "bad_unknown_critical",
                vec![prop(true, "future", "x"), prop(false, "issue", "certgate.test")],
                request(false, http),
                false,
            ),
            (
                "good_known_critical",
                vec![prop(true, "issue", "certgate.test")],
                request(false, http),
                true,
            ),
            (
                "bad_issuewild_for_wildcard",
                vec![prop(false, "issue", "certgate.test"), prop(false, "issuewild", ";")],
                request(true, http),
                false,
            ),
            (
                "good_issuewild_ignored_for_plain",
                vec![prop(false, "issue", "certgate.test"), prop(false, "issuewild", ";")],
                request(false, http),
                true,
            ),
            (
                "good_wildcard_falls_back_to_issue",
                vec![prop(false, "issue", "certgate.test")],
                request(true, http),
                true,
            ),
            (
                "good_accounturi",
                vec![prop(false, "issue", &format!("certgate.test; accounturi={account}"))],
                request(false, http),
                true,
            ),
            (
                "bad_accounturi",
                vec![prop(
                    false,
                    "issue",
                    "certgate.test; accounturi=https://ca.test/acme/acct/2",
                )],
                request(false, http),
                false,
            ),
            (
                "good_validationmethods",
                vec![prop(false, "issue", "certgate.test; validationmethods=dns-01,http-01")],
                request(false, http),
                true,
            ),
            (
                "bad_validationmethods",
                vec![prop(false, "issue", "certgate.test; validationmethods=dns-01")],
                request(false, http),
                false,
            ),
            (
                "good_unknown_parameter",
                vec![prop(false, "issue", "certgate.test; policy=ev")],
                request(false, http),
                true,
            ),
            (
                "bad_malformed",
                vec![prop(false, "issue", "certgate.test; x")],
                request(false, http),
                false,
            ),
        ];
        for (case, rrset, request, want) in cases {
            let got = evaluate(&rrset, &request);
            assert_eq!(got.is_ok(), want, "case {case}: {got:?}");
        }
    }

    #[test]
    fn refusal_names_the_record() {
        let ids = vec!["certgate.test".to_owned()];
        let request = Request {
            wildcard: false,
            identities: &ids,
            account_uri: "a",
            method: ChallengeKind::Dns01,
        };
        let err = evaluate(&[prop(false, "issue", "other.example")], &request).unwrap_err();
        assert!(err.contains("0 issue \"other.example\""), "{err}");
    }
}
