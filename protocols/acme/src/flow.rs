//! The account/order/authorization state machine, without HTTP: pure decisions over records.
//! Statuses that change with time (expiry) are derived when a record is read.

use std::collections::BTreeSet;
use std::net::IpAddr;

use base64::Engine;
use certgate_core::{DnsName, Identifier, ParsedCsr};
use certgate_store::acme::{AuthzRecord, AuthzStatus, ChallengeRecord, ChallengeStatus, OrderRecord, OrderStatus};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::jws::B64URL;
use crate::problem::{Problem, ProblemIdentifier, ProblemType};

/// An order found in `processing` this long after finalize started was interrupted (a
/// restart during issuance): it turns invalid and the client starts over.
pub const PROCESSING_STUCK_AFTER: Duration = Duration::minutes(5);

/// 128 random bits, base64url: ids and tokens.
pub fn random_id() -> Result<String, Problem> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Problem::new(ProblemType::ServerInternal, "random number generator failed"))?;
    Ok(B64URL.encode(bytes))
}

/// An identifier as an order names it: the identifier and whether `*.` preceded it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderIdentifier {
    /// As requested (`*.example.com` stays a wildcard DNS name).
    pub requested: Identifier,
    /// What an authorization covers (`example.com` for `*.example.com`).
    pub authorized: Identifier,
    /// Whether it is a wildcard.
    pub wildcard: bool,
}

/// Parses the `identifiers` of a newOrder: `dns` (wildcards allowed) and `ip` (RFC 8738).
pub fn parse_identifiers(value: Option<&Value>) -> Result<Vec<OrderIdentifier>, Problem> {
    let list = value
        .and_then(Value::as_array)
        .ok_or_else(|| Problem::new(ProblemType::Malformed, "newOrder needs an \"identifiers\" array"))?;
    if list.is_empty() {
        return Err(Problem::new(ProblemType::Malformed, "newOrder names no identifiers"));
    }
    let mut seen = BTreeSet::new();
    let mut identifiers = Vec::with_capacity(list.len());
    for item in list {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
        let value = item.get("value").and_then(Value::as_str).unwrap_or_default();
        let parsed = match kind {
            "dns" => {
                let name = DnsName::new(value).map_err(|e| {
                    Problem::new(
                        ProblemType::RejectedIdentifier,
                        format!("{value:?} is not a DNS name: {e}"),
                    )
                    .with_subproblem(
                        ProblemType::RejectedIdentifier,
                        e.to_string(),
                        problem_identifier_raw(kind, value),
                    )
                })?;
                let wildcard = name.is_wildcard();
                let base = if wildcard {
                    DnsName::new(name.base())
                        .map_err(|e| Problem::new(ProblemType::RejectedIdentifier, e.to_string()))?
                } else {
                    name.clone()
                };
                OrderIdentifier {
                    requested: Identifier::Dns(name),
                    authorized: Identifier::Dns(base),
                    wildcard,
                }
            }
            "ip" => {
                let ip: IpAddr = value
                    .parse()
                    .map_err(|_| Problem::new(ProblemType::Malformed, format!("{value:?} is not an IP address")))?;
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                    v4 => v4,
                };
                OrderIdentifier {
                    requested: Identifier::Ip(ip),
                    authorized: Identifier::Ip(ip),
                    wildcard: false,
                }
            }
            "" => return Err(Problem::new(ProblemType::Malformed, "an identifier has no \"type\"")),
            other => {
                return Err(Problem::new(
                    ProblemType::UnsupportedIdentifier,
                    format!("identifier type {other:?} is not supported; use dns or ip"),
                ));
            }
        };
        if seen.insert(parsed.requested.clone()) {
            identifiers.push(parsed);
        }
    }
    Ok(identifiers)
}

fn problem_identifier_raw(kind: &str, value: &str) -> ProblemIdentifier {
    ProblemIdentifier {
        kind: kind.to_owned(),
        value: value.to_owned(),
    }
}

/// An identifier in problems and resources.
pub fn problem_identifier(identifier: &Identifier) -> ProblemIdentifier {
    ProblemIdentifier {
        kind: identifier.kind().to_owned(),
        value: identifier.to_string(),
    }
}

/// The challenges offered for an identifier: wildcards only dns-01 (RFC 8555 7.1.3), IP
/// addresses http-01 and tls-alpn-01 (RFC 8738 7).
pub fn new_challenges(identifier: &OrderIdentifier) -> Result<Vec<ChallengeRecord>, Problem> {
    let kinds: &[&str] = match (&identifier.authorized, identifier.wildcard) {
        (Identifier::Dns(_), true) => &["dns-01"],
        (Identifier::Dns(_), false) => &["http-01", "dns-01", "tls-alpn-01"],
        _ => &["http-01", "tls-alpn-01"],
    };
    kinds
        .iter()
        .map(|kind| {
            Ok(ChallengeRecord {
                kind: (*kind).to_owned(),
                token: random_id()?,
                status: ChallengeStatus::Pending,
                validated: None,
                error: None,
                validation_record: None,
            })
        })
        .collect()
}

/// The authorization as of `now`: a pending or valid one past its expiry is expired.
pub fn refresh_authorization(authz: &mut AuthzRecord, now: OffsetDateTime) -> bool {
    if matches!(authz.status, AuthzStatus::Pending | AuthzStatus::Valid) && authz.expires <= now {
        authz.status = AuthzStatus::Expired;
        authz.version += 1;
        return true;
    }
    false
}

/// The order's status as of `now`, given its authorizations (already refreshed). Returns
/// whether it changed.
pub fn refresh_order(order: &mut OrderRecord, authorizations: &[AuthzRecord], now: OffsetDateTime) -> bool {
    let before = (order.status, order.error.is_some());
    match order.status {
        OrderStatus::Pending | OrderStatus::Ready if order.expires <= now => {
            order.status = OrderStatus::Invalid;
            order.error = Some(problem_json(&Problem::new(
                ProblemType::Malformed,
                "the order expired before it was finalized",
            )));
        }
        OrderStatus::Pending | OrderStatus::Ready => {
            if let Some(failed) = authorizations
                .iter()
                .find(|a| a.status != AuthzStatus::Pending && a.status != AuthzStatus::Valid)
            {
                order.status = OrderStatus::Invalid;
                let mut problem = Problem::new(
                    ProblemType::Unauthorized,
                    format!(
                        "the authorization for {} is {}",
                        failed.identifier,
                        authz_status_name(failed.status)
                    ),
                );
                if let Some(cause) = failed.challenges.iter().find_map(|c| c.error.as_ref()) {
                    problem = Problem::new(ProblemType::Compound, "an authorization failed").with_subproblem(
                        ProblemType::Unauthorized,
                        cause
                            .get("detail")
                            .and_then(Value::as_str)
                            .unwrap_or("validation failed")
                            .to_owned(),
                        problem_identifier(&failed.identifier),
                    );
                }
                order.error = Some(problem_json(&problem));
            } else if !authorizations.is_empty() && authorizations.iter().all(|a| a.status == AuthzStatus::Valid) {
                order.status = OrderStatus::Ready;
            }
        }
        OrderStatus::Processing
            if order
                .processing_since
                .is_some_and(|since| since + PROCESSING_STUCK_AFTER <= now) =>
        {
            order.status = OrderStatus::Invalid;
            order.error = Some(problem_json(&Problem::new(
                ProblemType::ServerInternal,
                "issuance was interrupted; please place a new order",
            )));
        }
        _ => {}
    }
    let changed = before != (order.status, order.error.is_some());
    if changed {
        order.version += 1;
    }
    changed
}

/// A problem as stored in records.
pub fn problem_json(problem: &Problem) -> Value {
    serde_json::to_value(problem).unwrap_or(Value::Null)
}

/// RFC 8555 names.
pub fn order_status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "pending",
        OrderStatus::Ready => "ready",
        OrderStatus::Processing => "processing",
        OrderStatus::Valid => "valid",
        OrderStatus::Invalid => "invalid",
    }
}

/// RFC 8555 names.
pub fn authz_status_name(status: AuthzStatus) -> &'static str {
    match status {
        AuthzStatus::Pending => "pending",
        AuthzStatus::Valid => "valid",
        AuthzStatus::Invalid => "invalid",
        AuthzStatus::Deactivated => "deactivated",
        AuthzStatus::Expired => "expired",
        AuthzStatus::Revoked => "revoked",
    }
}

/// RFC 8555 names.
pub fn challenge_status_name(status: ChallengeStatus) -> &'static str {
    match status {
        ChallengeStatus::Pending => "pending",
        ChallengeStatus::Processing => "processing",
        ChallengeStatus::Valid => "valid",
        ChallengeStatus::Invalid => "invalid",
    }
}

/// Checks that the CSR names exactly the order's identifiers (RFC 8555 7.4): its SANs plus
/// a common name, which must be one of them.
pub fn check_csr_names(csr: &ParsedCsr, order: &OrderRecord) -> Result<(), Problem> {
    let normalize = |id: &Identifier| match id {
        Identifier::Dns(name) => format!("dns:{}", name.as_str().to_ascii_lowercase()),
        Identifier::Ip(ip) => format!("ip:{ip}"),
        other => format!("{}:{other}", other.kind()),
    };
    let mut names: BTreeSet<String> = csr.sans().iter().map(normalize).collect();
    if let Some(cn) = csr.common_name() {
        let as_identifier = cn
            .parse::<IpAddr>()
            .map(Identifier::Ip)
            .or_else(|_| DnsName::new(cn).map(Identifier::Dns))
            .map_err(|_| {
                Problem::new(
                    ProblemType::BadCsr,
                    format!("the CSR's common name {cn:?} is not one of the order's identifiers"),
                )
            })?;
        names.insert(normalize(&as_identifier));
    }
    if !csr.unsupported_sans().is_empty() {
        return Err(Problem::new(
            ProblemType::BadCsr,
            format!(
                "the CSR asks for subjectAltName types this order does not cover: {}",
                csr.unsupported_sans().join(", ")
            ),
        ));
    }
    let wanted: BTreeSet<String> = order.identifiers.iter().map(normalize).collect();
    if names != wanted {
        let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");
        return Err(Problem::new(
            ProblemType::BadCsr,
            format!(
                "the CSR names [{}] but the order's identifiers are [{}]; they must be equal",
                list(&names),
                list(&wanted)
            ),
        ));
    }
    Ok(())
}

/// Parses RFC 3339 `notBefore`/`notAfter`.
pub fn parse_time(value: Option<&Value>, field: &str) -> Result<Option<OffsetDateTime>, Problem> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(Some)
            .map_err(|_| Problem::new(ProblemType::Malformed, format!("{field} is not an RFC 3339 time"))),
        Some(_) => Err(Problem::new(
            ProblemType::Malformed,
            format!("{field} must be a string"),
        )),
    }
}

/// RFC 3339, as ACME resources carry times.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
