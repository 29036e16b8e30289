//! dns-01 (RFC 8555 8.4) and CAA tree climbing (RFC 8659 3) over hickory-resolver.

use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::time::Instant;

use crate::caa;
use crate::error::excerpt;
use crate::{ChallengeKind, ValidationConfig, ValidationError, ValidationErrorKind, ValidationRecord, dns01_digest};

/// How many wrong TXT values a dns-01 error quotes.
const MAX_QUOTED_VALUES: usize = 3;

/// A resolver that never answers from a cache, so a retried validation sees new records.
pub(crate) struct Dns {
    resolver: TokioResolver,
}

/// The outcome of one lookup that did not fail outright.
enum Answer<T> {
    Records(Vec<T>),
    /// NXDOMAIN.
    NoName,
    /// The name exists but has no records of the type.
    NoData,
}

impl Dns {
    pub(crate) fn new(config: &ValidationConfig) -> Result<Self, ValidationError> {
        let mut builder = if config.dns_nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| {
                ValidationError::new(
                    ValidationErrorKind::Dns,
                    format!("reading the system DNS configuration (/etc/resolv.conf): {e}"),
                )
            })?
        } else {
            let servers = config
                .dns_nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let options = builder.options_mut();
        // No cache at all: a size of zero, and every TTL clamped to zero for entries the cache
        // may hold until its next eviction pass.
        options.cache_size = 0;
        options.positive_max_ttl = Some(Duration::ZERO);
        options.negative_max_ttl = Some(Duration::ZERO);
        // Only TXT and CAA are asked; /etc/hosts has neither.
        options.use_hosts_file = ResolveHosts::Never;
        options.timeout = options.timeout.min(config.timeout);
        let resolver = builder
            .build()
            .map_err(|e| ValidationError::new(ValidationErrorKind::Dns, format!("building the DNS resolver: {e}")))?;
        Ok(Self { resolver })
    }

    /// Looks up `name` (absolute; no search list) and keeps the records `pick` selects.
    async fn lookup<T>(
        &self,
        name: &str,
        record_type: RecordType,
        deadline: Instant,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Answer<T>, ValidationError> {
        let fqdn = Name::from_ascii(format!("{name}.")).map_err(|e| {
            ValidationError::new(
                ValidationErrorKind::Malformed,
                format!("{name} is not a valid DNS name: {e}"),
            )
        })?;
        let lookup = match tokio::time::timeout_at(deadline, self.resolver.lookup(fqdn, record_type)).await {
            Err(_) => {
                return Err(ValidationError::new(
                    ValidationErrorKind::Dns,
                    format!("looking up {record_type} at {name}: timed out"),
                ));
            }
            Ok(Err(e)) if e.is_nx_domain() => return Ok(Answer::NoName),
            Ok(Err(e)) if e.is_no_records_found() => return Ok(Answer::NoData),
            Ok(Err(e)) => {
                return Err(ValidationError::new(
                    ValidationErrorKind::Dns,
                    format!("looking up {record_type} at {name}: {e}"),
                ));
            }
            Ok(Ok(lookup)) => lookup,
        };
        // The answer may also hold the CNAME chain; keep only the records asked for.
        let records: Vec<T> = lookup.answers().iter().filter_map(|r| pick(&r.data)).collect();
        Ok(if records.is_empty() {
            Answer::NoData
        } else {
            Answer::Records(records)
        })
    }

    pub(crate) async fn validate_dns01(
        &self,
        name: &str,
        key_authorization: &str,
        deadline: Instant,
    ) -> Result<ValidationRecord, ValidationError> {
        let record = ValidationRecord {
            url: None,
            hostname: name.to_owned(),
            port: None,
            addresses_resolved: Vec::new(),
            address_used: None,
        };
        let query = format!("_acme-challenge.{name}");
        let answer = self
            .lookup(&query, RecordType::TXT, deadline, |data| match data {
                // RFC 8555 8.4 and Boulder: the character-strings of one record are concatenated.
                RData::TXT(txt) => Some(txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect::<Vec<u8>>()),
                _ => None,
            })
            .await
            .map_err(|e| e.with_record(&record))?;
        let values = match answer {
            Answer::Records(values) => values,
            Answer::NoName | Answer::NoData => {
                let why = if matches!(answer, Answer::NoName) {
                    "the name does not exist"
                } else {
                    "the name exists but has no TXT records"
                };
                return Err(ValidationError {
                    kind: ValidationErrorKind::Dns,
                    detail: format!("no TXT record at {query} ({why})"),
                    record: Some(record),
                });
            }
        };
        let expected = dns01_digest(key_authorization);
        if values.iter().any(|v| v == expected.as_bytes()) {
            return Ok(record);
        }
        let mut quoted: Vec<String> = values
            .iter()
            .take(MAX_QUOTED_VALUES)
            .map(|v| format!("\"{}\"", excerpt(v)))
            .collect();
        if values.len() > MAX_QUOTED_VALUES {
            quoted.push(format!("and {} more", values.len() - MAX_QUOTED_VALUES));
        }
        Err(ValidationError {
            kind: ValidationErrorKind::IncorrectResponse,
            detail: format!(
                "no TXT record at {query} matches the key authorization digest \"{expected}\"; found {}",
                quoted.join(", ")
            ),
            record: Some(record),
        })
    }

    /// RFC 8659 3: the relevant RRset is the first non-empty CAA RRset found climbing from the
    /// name towards the root (the root itself is not queried).
    pub(crate) async fn check_caa(
        &self,
        name: &str,
        wildcard: bool,
        identities: &[String],
        account_uri: &str,
        method: ChallengeKind,
        deadline: Instant,
    ) -> Result<(), ValidationError> {
        let request = caa::Request {
            wildcard,
            identities,
            account_uri,
            method,
        };
        let mut current = name;
        loop {
            let answer = self
                .lookup(current, RecordType::CAA, deadline, |data| match data {
                    RData::CAA(c) => Some(caa::Property {
                        critical: c.issuer_critical,
                        tag: c.tag.clone(),
                        value: c.value.clone(),
                    }),
                    _ => None,
                })
                .await
                .map_err(|e| ValidationError {
                    // RFC 8659 3: a lookup that fails (rather than finding nothing) forbids issuance.
                    detail: format!("checking CAA for {name}: {}", e.detail),
                    ..e
                })?;
            if let Answer::Records(rrset) = answer {
                return caa::evaluate(&rrset, &request).map_err(|reason| {
                    let target = if wildcard { format!("*.{name}") } else { name.to_owned() };
                    ValidationError::new(
                        ValidationErrorKind::Caa,
                        format!("CAA records at {current} forbid issuance for {target}: {reason}"),
                    )
                });
            }
            match current.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => current = parent,
                _ => return Ok(()),
            }
        }
    }
}
