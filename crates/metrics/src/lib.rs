//! certgate's Prometheus metrics: one [`Metrics`] registry the daemon, the authority and the
//! protocol crates share through an `Arc<Metrics>`, rendered at `/metrics` in the text
//! exposition format 0.0.4 ([`Metrics::render`], served with [`CONTENT_TYPE`]).
//!
//! What it does: counts, times and gauges with **bounded label sets**. Every label value is
//! either a fixed enum ([`Protocol`], [`IssuanceResult`], …) or a name registered up front from
//! the configuration (endpoints, webhooks); anything else is counted under `other`
//! ([`OTHER`]), so no request can create a series. Every series exists from the start (zero
//! until used), which also spares `rate()` the missing first sample.
//!
//! Recording is lock-free: each series is an `AtomicU64` (histograms: one per bucket plus a
//! nanosecond sum) allocated when the registry is built; an increment is an index computation
//! (a hash lookup for a registered name) and one atomic add.
//!
//! What it does not do: serve HTTP, read the store or run the periodic job that sets the
//! certificate gauges; the daemon does those.
//!
//! Adding a family: a field on [`Metrics`], its construction in [`Metrics::new`] from the
//! `family` module's building blocks and label dimensions, a line in [`Metrics::render`], a
//! recording method, and a row in the README.
#![warn(missing_docs)]

mod family;
mod labels;

use std::fmt;
use std::time::Duration;

use family::{CounterFamily, HistogramFamily, OptionalGauge};
use labels::Registered;
pub use labels::{
    CertificateStatus, ConnectionRefusal, IssuanceResult, OTHER, Protocol, REVOCATION_REASONS, RequestProtocol,
    StoreBytes, ValidationOutcome, ValidationType,
};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket upper bounds of `certgate_request_duration_seconds`, in nanoseconds: 0.5 ms to 10 s
/// (an ACME request takes about a millisecond of CPU; validation and SCEP RSA work take longer).
const REQUEST_BUCKETS_NANOS: [u64; 14] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The label values known when the daemon starts (from its configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Endpoint names (every protocol's), the values of `endpoint`. Others count as `other`.
    pub endpoints: Vec<String>,
    /// Webhook names, the values of `webhook`. Others count as `other`.
    pub webhooks: Vec<String>,
}

/// The registry. Build one at start-up and share it as `Arc<Metrics>`.
pub struct Metrics {
    endpoints: Registered,
    webhooks: Registered,
    reasons: Registered,
    issuance: CounterFamily,
    validation: CounterFamily,
    request_duration: HistogramFamily,
    certificates: CounterFamily,
    next_expiry: OptionalGauge,
    webhook_failures: CounterFamily,
    revocation: CounterFamily,
    connections_refused: CounterFamily,
    store_bytes: CounterFamily,
}

impl fmt::Debug for Metrics {
    // The values are for `render`; a Debug of every atomic would flood any struct holding this.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("endpoints", &self.endpoints.names())
            .field("webhooks", &self.webhooks.names())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with every series at zero, for the endpoints and webhooks in `config`.
    pub fn new(config: MetricsConfig) -> Self {
        let endpoints = Registered::new(&config.endpoints);
        let webhooks = Registered::new(&config.webhooks);
        let reasons = Registered::new(REVOCATION_REASONS);
        Self {
            issuance: CounterFamily::counter(
                "certgate_issuance_total",
                "Certificate requests that reached the authority, by endpoint, protocol and result.",
                &[
                    endpoints.dim("endpoint"),
                    Protocol::dim("protocol"),
                    IssuanceResult::dim("result"),
                ],
            ),
            validation: CounterFamily::counter(
                "certgate_acme_validation_total",
                "ACME challenge validations, by challenge type and outcome (the ACME problem type of a failure).",
                &[ValidationType::dim("type"), ValidationOutcome::dim("outcome")],
            ),
            request_duration: HistogramFamily::new(
                "certgate_request_duration_seconds",
                "Time to answer an HTTP or admin request, by protocol.",
                &REQUEST_BUCKETS_NANOS,
                &[RequestProtocol::dim("protocol")],
            ),
            certificates: CounterFamily::gauge(
                "certgate_certificates",
                "Certificates in the inventory by status, as of the last inventory scan.",
                &[CertificateStatus::dim("status")],
            ),
            next_expiry: OptionalGauge::new(
                "certgate_next_expiry_without_successor_seconds",
                "Seconds until the next unrevoked certificate without a successor expires (negative: already expired); absent when there is none.",
            ),
            webhook_failures: CounterFamily::counter(
                "certgate_webhook_failures_total",
                "Webhook deliveries that failed, by webhook.",
                &[webhooks.dim("webhook")],
            ),
            revocation: CounterFamily::counter(
                "certgate_revocation_total",
                "Certificates revoked, by RFC 5280 reason.",
                &[reasons.dim("reason")],
            ),
            connections_refused: CounterFamily::counter(
                "certgate_connections_refused_total",
                "Client connections closed unserved because a connection cap was reached, by cap.",
                &[ConnectionRefusal::dim("reason")],
            ),
            store_bytes: CounterFamily::gauge(
                "certgate_store_bytes",
                "Size of the embedded database: on disk, and the live data it holds (measured while the file is over the shedding size).",
                &[StoreBytes::dim("kind")],
            ),
            endpoints,
            webhooks,
            reasons,
        }
    }

    /// Counts one issuance request on `endpoint` (unregistered: `other`).
    pub fn issuance(&self, endpoint: &str, protocol: Protocol, result: IssuanceResult) {
        self.issuance
            .inc(&[self.endpoints.lookup(endpoint), protocol.index(), result.index()]);
    }

    /// Counts one finished challenge validation.
    pub fn validation(&self, kind: ValidationType, outcome: ValidationOutcome) {
        self.validation.inc(&[kind.index(), outcome.index()]);
    }

    /// Records how long a request took.
    pub fn observe_request(&self, protocol: RequestProtocol, elapsed: Duration) {
        self.request_duration.observe(&[protocol.index()], elapsed);
    }

    /// Sets how many certificates have `status` (from the periodic inventory scan).
    pub fn set_certificates(&self, status: CertificateStatus, count: u64) {
        self.certificates.set(&[status.index()], count);
    }

    /// Sets the seconds until the next expiry of a certificate without a successor; `None`
    /// (or NaN) when there is none, which removes the sample.
    pub fn set_next_expiry_seconds(&self, seconds: Option<f64>) {
        self.next_expiry.set(seconds);
    }

    /// Counts one failed delivery of webhook `name` (unregistered: `other`).
    pub fn webhook_failure(&self, name: &str) {
        self.webhook_failures.inc(&[self.webhooks.lookup(name)]);
    }

    /// Counts one revocation; `reason` is an RFC 5280 name as in [`REVOCATION_REASONS`]
    /// (`certgate_core::RevocationReason::as_str`), anything else counts as `other`.
    pub fn revocation(&self, reason: &str) {
        self.revocation.inc(&[self.reasons.lookup(reason)]);
    }

    /// Counts one client connection closed unserved.
    pub fn connection_refused(&self, reason: ConnectionRefusal) {
        self.connections_refused.inc(&[reason.index()]);
    }

    /// Sets a size of the embedded database, in bytes.
    pub fn set_store_bytes(&self, kind: StoreBytes, bytes: u64) {
        self.store_bytes.set(&[kind.index()], bytes);
    }

    /// Every family in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.issuance.render(&mut out);
        self.validation.render(&mut out);
        self.request_duration.render(&mut out);
        self.certificates.render(&mut out);
        self.next_expiry.render(&mut out);
        self.webhook_failures.render(&mut out);
        self.revocation.render(&mut out);
        self.connections_refused.render(&mut out);
        self.store_bytes.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::family::Dim;
    use super::*;

    /// Checks text exposition format 0.0.4 line by line: HELP/TYPE comments, metric and label
    /// names, label value escapes, float values, samples belonging to the family last typed
    /// (with `_bucket` + `le`, `_sum`, `_count` for histograms), no duplicate series, and a
    /// final line feed.
    fn check_exposition(text: &str) -> Result<(), String> {
        fn metric_name(s: &str) -> bool {
            let mut chars = s.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        }
        fn label_name(s: &str) -> bool {
            let mut chars = s.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        fn float(s: &str) -> bool {
            matches!(s, "+Inf" | "-Inf" | "NaN")
                || (!s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
                    && s.parse::<f64>().is_ok())
        }
        /// Parses `{a="x",b="y"}` at the start of `s`; returns the label names and the rest.
        fn labels(s: &str) -> Result<(Vec<String>, &str), String> {
            let mut rest = s.strip_prefix('{').ok_or("expected {")?;
            let mut names = Vec::new();
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    return Ok((names, after));
                }
                let (name, after) = rest.split_once("=\"").ok_or("expected =\"")?;
                if !label_name(name) {
                    return Err(format!("bad label name {name:?}"));
                }
                names.push(name.to_owned());
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\' | '"' | 'n')) => {}
                            other => return Err(format!("bad escape {other:?}")),
                        },
                        Some((_, '\n')) => return Err("raw line feed in label value".into()),
                        Some((i, '"')) => break i,
                        Some(_) => {}
                        None => return Err("unterminated label value".into()),
                    }
                };
                rest = &after[end + 1..];
                if let Some(after) = rest.strip_prefix(',') {
                    rest = after;
                } else if !rest.starts_with('}') {
                    return Err("expected , or }".into());
                }
            }
        }

        if !text.is_empty() && !text.ends_with('\n') {
            return Err("no final line feed".into());
        }
        let mut typed: HashSet<String> = HashSet::new();
        let mut family: Option<(String, String)> = None;
        let mut seen: HashSet<&str> = HashSet::new();
        for (number, line) in (1..).zip(text.lines()) {
            let fail = |why: String| format!("line {number}: {why}: {line:?}");
            if let Some(comment) = line.strip_prefix("# ") {
                let mut parts = comment.splitn(3, ' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("HELP"), Some(name), Some(help)) => {
                        if !metric_name(name) {
                            return Err(fail("bad metric name".into()));
                        }
                        let mut chars = help.chars();
                        while let Some(c) = chars.next() {
                            if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                                return Err(fail("bad escape in HELP".into()));
                            }
                        }
                    }
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        if !metric_name(name) {
                            return Err(fail("bad metric name".into()));
                        }
                        if !matches!(kind, "counter" | "gauge" | "histogram" | "summary" | "untyped") {
                            return Err(fail("bad type".into()));
                        }
                        if !typed.insert(name.to_owned()) {
                            return Err(fail("family typed twice".into()));
                        }
                        family = Some((name.to_owned(), kind.to_owned()));
                    }
                    _ => return Err(fail("HELP or TYPE without name and text".into())),
                }
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..name_end];
            if !metric_name(name) {
                return Err(fail("bad metric name".into()));
            }
            let (label_names, rest) = if line[name_end..].starts_with('{') {
                labels(&line[name_end..]).map_err(fail)?
            } else {
                (Vec::new(), &line[name_end..])
            };
            let Some(value) = rest.strip_prefix(' ') else {
                return Err(fail("expected a space before the value".into()));
            };
            let mut value_parts = value.split(' ');
            let (Some(value), timestamp, None) = (value_parts.next(), value_parts.next(), value_parts.next()) else {
                return Err(fail("more than a value and a timestamp".into()));
            };
            if !float(value) || timestamp.is_some_and(|t| t.parse::<i64>().is_err()) {
                return Err(fail("bad value or timestamp".into()));
            }
            let Some((family_name, kind)) = &family else {
                return Err(fail("sample before any TYPE".into()));
            };
            let belongs = if kind == "histogram" {
                name.strip_prefix(family_name.as_str()).is_some_and(|suffix| {
                    matches!(suffix, "_sum" | "_count")
                        || (suffix == "_bucket" && label_names.last().map(String::as_str) == Some("le"))
                })
            } else {
                name == family_name
            };
            if !belongs {
                return Err(fail(format!("sample outside its family {family_name}")));
            }
            let series = line.rsplit_once(' ').map_or(line, |(series, _)| series);
            if !seen.insert(series) {
                return Err(fail("duplicate series".into()));
            }
        }
        Ok(())
    }

    fn metrics() -> Metrics {
        Metrics::new(MetricsConfig {
            endpoints: vec!["default".into(), "iot".into()],
            webhooks: vec!["pager".into()],
        })
    }

    /// The lines of `text` that start with `prefix`, joined with line feeds.
    fn lines_with(text: &str, prefix: &str) -> String {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn family_render_golden() {
        fn counter() -> CounterFamily {
            CounterFamily::counter(
                "certgate_test_total",
                "A test counter.",
                &[
                    Dim::new("a", vec!["x".into(), "y".into()]),
                    Dim::new("b", vec!["1".into(), "2".into()]),
                ],
            )
        }
        const BOUNDS: [u64; 2] = [1_000_000, 250_000_000];
        type Case = (&'static str, fn() -> String, &'static str);
        let cases: [Case; 7] = [
            (
                "counter_fresh_all_series_zero",
                || {
                    let mut out = String::new();
                    counter().render(&mut out);
                    out
                },
                "# HELP certgate_test_total A test counter.\n\
                 # TYPE certgate_test_total counter\n\
                 certgate_test_total{a=\"x\",b=\"1\"} 0\n\
                 certgate_test_total{a=\"x\",b=\"2\"} 0\n\
                 certgate_test_total{a=\"y\",b=\"1\"} 0\n\
                 certgate_test_total{a=\"y\",b=\"2\"} 0\n",
            ),
            (
                "counter_increments_row_major",
                || {
                    let family = counter();
                    family.inc(&[1, 0]);
                    family.inc(&[1, 0]);
                    family.inc(&[0, 1]);
                    let mut out = String::new();
                    family.render(&mut out);
                    out
                },
                "# HELP certgate_test_total A test counter.\n\
                 # TYPE certgate_test_total counter\n\
                 certgate_test_total{a=\"x\",b=\"1\"} 0\n\
                 certgate_test_total{a=\"x\",b=\"2\"} 1\n\
                 certgate_test_total{a=\"y\",b=\"1\"} 2\n\
                 certgate_test_total{a=\"y\",b=\"2\"} 0\n",
            ),
            (
                "gauge_without_labels",
                || {
                    let family = CounterFamily::gauge("certgate_things", "Things.", &[]);
                    family.set(&[], 42);
                    let mut out = String::new();
                    family.render(&mut out);
                    out
                },
                "# HELP certgate_things Things.\n# TYPE certgate_things gauge\ncertgate_things 42\n",
            ),
            (
                "optional_gauge_unset_has_no_sample",
                || {
                    let gauge = OptionalGauge::new("certgate_next_seconds", "Next.");
                    gauge.set(Some(1.0));
                    gauge.set(None);
                    let mut out = String::new();
                    gauge.render(&mut out);
                    out
                },
                "# HELP certgate_next_seconds Next.\n# TYPE certgate_next_seconds gauge\n",
            ),
            (
                "optional_gauge_negative_fraction",
                || {
                    let gauge = OptionalGauge::new("certgate_next_seconds", "Next.");
                    gauge.set(Some(-86_400.5));
                    let mut out = String::new();
                    gauge.render(&mut out);
                    out
                },
                "# HELP certgate_next_seconds Next.\n# TYPE certgate_next_seconds gauge\n\
                 certgate_next_seconds -86400.5\n",
            ),
            (
                "histogram_cumulative_with_inclusive_bounds",
                || {
                    let family = HistogramFamily::new(
                        "certgate_test_seconds",
                        "A test histogram.",
                        &BOUNDS,
                        &[Dim::new("p", vec!["a".into(), "b".into()])],
                    );
                    // On a bound counts in that bucket (le is <=); past the last, +Inf only.
                    for ms in [0.5, 1.0, 1.5, 250.0, 3000.0] {
                        family.observe(&[1], Duration::from_secs_f64(ms / 1000.0));
                    }
                    let mut out = String::new();
                    family.render(&mut out);
                    out
                },
                "# HELP certgate_test_seconds A test histogram.\n\
                 # TYPE certgate_test_seconds histogram\n\
                 certgate_test_seconds_bucket{p=\"a\",le=\"0.001\"} 0\n\
                 certgate_test_seconds_bucket{p=\"a\",le=\"0.25\"} 0\n\
                 certgate_test_seconds_bucket{p=\"a\",le=\"+Inf\"} 0\n\
                 certgate_test_seconds_sum{p=\"a\"} 0\n\
                 certgate_test_seconds_count{p=\"a\"} 0\n\
                 certgate_test_seconds_bucket{p=\"b\",le=\"0.001\"} 2\n\
                 certgate_test_seconds_bucket{p=\"b\",le=\"0.25\"} 4\n\
                 certgate_test_seconds_bucket{p=\"b\",le=\"+Inf\"} 5\n\
                 certgate_test_seconds_sum{p=\"b\"} 3.253\n\
                 certgate_test_seconds_count{p=\"b\"} 5\n",
            ),
            (
                "histogram_without_labels",
                || {
                    let family = HistogramFamily::new("certgate_test_seconds", "T.", &BOUNDS, &[]);
                    family.observe(&[], Duration::from_millis(2));
                    let mut out = String::new();
                    family.render(&mut out);
                    out
                },
                "# HELP certgate_test_seconds T.\n\
                 # TYPE certgate_test_seconds histogram\n\
                 certgate_test_seconds_bucket{le=\"0.001\"} 0\n\
                 certgate_test_seconds_bucket{le=\"0.25\"} 1\n\
                 certgate_test_seconds_bucket{le=\"+Inf\"} 1\n\
                 certgate_test_seconds_sum 0.002\n\
                 certgate_test_seconds_count 1\n",
            ),
        ];
        for (case, render, want) in cases {
            let got = render();
            assert_eq!(got, want, "case {case}");
            check_exposition(&got).unwrap_or_else(|e| panic!("case {case}: {e}"));
        }
    }

    #[test]
    fn registry_render_golden() {
        type Case = (&'static str, fn(&Metrics), &'static str, &'static str);
        let cases: [Case; 5] = [
            (
                "issuance_registered_and_unregistered_endpoints",
                |m| {
                    m.issuance("iot", Protocol::Est, IssuanceResult::Issued);
                    m.issuance("iot", Protocol::Est, IssuanceResult::Issued);
                    m.issuance("nonexistent", Protocol::Acme, IssuanceResult::Refused);
                    m.issuance("other", Protocol::Acme, IssuanceResult::Refused);
                },
                "certgate_issuance_total{endpoint=\"iot\",protocol=\"est\"",
                "certgate_issuance_total{endpoint=\"iot\",protocol=\"est\",result=\"issued\"} 2\n\
                 certgate_issuance_total{endpoint=\"iot\",protocol=\"est\",result=\"refused\"} 0\n\
                 certgate_issuance_total{endpoint=\"iot\",protocol=\"est\",result=\"error\"} 0\n\
                 certgate_issuance_total{endpoint=\"iot\",protocol=\"est\",result=\"shed\"} 0\n",
            ),
            (
                "issuance_unregistered_endpoint_is_other",
                |m| {
                    m.issuance("nonexistent", Protocol::Acme, IssuanceResult::Refused);
                    m.issuance("other", Protocol::Acme, IssuanceResult::Refused);
                },
                "certgate_issuance_total{endpoint=\"other\",protocol=\"acme\"",
                "certgate_issuance_total{endpoint=\"other\",protocol=\"acme\",result=\"issued\"} 0\n\
                 certgate_issuance_total{endpoint=\"other\",protocol=\"acme\",result=\"refused\"} 2\n\
                 certgate_issuance_total{endpoint=\"other\",protocol=\"acme\",result=\"error\"} 0\n\
                 certgate_issuance_total{endpoint=\"other\",protocol=\"acme\",result=\"shed\"} 0\n",
            ),
            (
                "validation_outcomes",
                |m| {
                    m.validation(ValidationType::Dns01, ValidationOutcome::Valid);
                    m.validation(
                        ValidationType::Dns01,
                        ValidationOutcome::from_acme_problem("urn:ietf:params:acme:error:caa"),
                    );
                },
                "certgate_acme_validation_total{type=\"dns-01\",outcome=\"",
                "certgate_acme_validation_total{type=\"dns-01\",outcome=\"valid\"} 1\n\
                 certgate_acme_validation_total{type=\"dns-01\",outcome=\"connection\"} 0\n\
                 certgate_acme_validation_total{type=\"dns-01\",outcome=\"dns\"} 0\n\
                 certgate_acme_validation_total{type=\"dns-01\",outcome=\"tls\"} 0\n\
                 certgate_acme_validation_total{type=\"dns-01\",outcome=\"unauthorized\"} 0\n\
                 certgate_acme_validation_total{type=\"dns-01\",outcome=\"incorrect_response\"} 0\n\
                 certgate_acme_validation_total{type=\"dns-01\",outcome=\"caa\"} 1\n\
                 certgate_acme_validation_total{type=\"dns-01\",outcome=\"timeout\"} 0\n\
                 certgate_acme_validation_total{type=\"dns-01\",outcome=\"malformed\"} 0\n\
                 certgate_acme_validation_total{type=\"dns-01\",outcome=\"rejected_identifier\"} 0\n\
                 certgate_acme_validation_total{type=\"dns-01\",outcome=\"other\"} 0\n",
            ),
            (
                "certificate_gauges_and_next_expiry",
                |m| {
                    m.set_certificates(CertificateStatus::Valid, 120);
                    m.set_certificates(CertificateStatus::RenewalDue, 3);
                    m.set_certificates(CertificateStatus::Valid, 118);
                    m.set_next_expiry_seconds(Some(3600.0));
                },
                "certgate_certificates{status=\"valid\"} ",
                "certgate_certificates{status=\"valid\"} 118\n",
            ),
            (
                "next_expiry_set",
                |m| m.set_next_expiry_seconds(Some(3600.25)),
                "certgate_next_expiry_without_successor_seconds ",
                "certgate_next_expiry_without_successor_seconds 3600.25\n",
            ),
        ];
        for (case, record, prefix, want) in cases {
            let m = metrics();
            record(&m);
            let text = m.render();
            check_exposition(&text).unwrap_or_else(|e| panic!("case {case}: {e}"));
            assert_eq!(lines_with(&text, prefix), want, "case {case}");
        }
    }

    #[test]
    fn webhook_and_revocation_series() {
        let m = metrics();
        m.webhook_failure("pager");
        m.webhook_failure("unknown-hook");
        m.revocation("keyCompromise");
        m.revocation("certificateHold");
        m.revocation("KEYCOMPROMISE");
        let text = m.render();
        assert_eq!(
            lines_with(&text, "certgate_webhook_failures_total{"),
            "certgate_webhook_failures_total{webhook=\"pager\"} 1\n\
             certgate_webhook_failures_total{webhook=\"other\"} 1\n"
        );
        assert_eq!(
            lines_with(&text, "certgate_revocation_total{"),
            "certgate_revocation_total{reason=\"unspecified\"} 0\n\
             certgate_revocation_total{reason=\"keyCompromise\"} 1\n\
             certgate_revocation_total{reason=\"cACompromise\"} 0\n\
             certgate_revocation_total{reason=\"affiliationChanged\"} 0\n\
             certgate_revocation_total{reason=\"superseded\"} 0\n\
             certgate_revocation_total{reason=\"cessationOfOperation\"} 0\n\
             certgate_revocation_total{reason=\"privilegeWithdrawn\"} 0\n\
             certgate_revocation_total{reason=\"aACompromise\"} 0\n\
             certgate_revocation_total{reason=\"other\"} 2\n"
        );
    }

    /// The whole output for a fixed sequence of calls, against `testdata/render.prom`.
    /// Regenerate with `CERTGATE_BLESS=1 cargo test -p certgate-metrics` (testdata/README.md).
    #[test]
    fn full_render_matches_golden_file() {
        let m = metrics();
        m.issuance("default", Protocol::Acme, IssuanceResult::Issued);
        m.issuance("iot", Protocol::Scep, IssuanceResult::Error);
        m.issuance("elsewhere", Protocol::Est, IssuanceResult::Refused);
        m.validation(ValidationType::Http01, ValidationOutcome::Valid);
        m.validation(ValidationType::TlsAlpn01, ValidationOutcome::Timeout);
        m.observe_request(RequestProtocol::Acme, Duration::from_micros(800));
        m.observe_request(RequestProtocol::Acme, Duration::from_millis(30));
        m.observe_request(RequestProtocol::Ocsp, Duration::from_micros(200));
        m.observe_request(RequestProtocol::Admin, Duration::from_secs(12));
        m.set_certificates(CertificateStatus::Valid, 10);
        m.set_certificates(CertificateStatus::Superseded, 4);
        m.set_next_expiry_seconds(Some(172_800.0));
        m.webhook_failure("pager");
        m.revocation("superseded");
        m.connection_refused(ConnectionRefusal::TooManyFromAddress);
        let text = m.render();
        check_exposition(&text).unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/render.prom");
        if std::env::var_os("CERTGATE_BLESS").is_some() {
            std::fs::write(path, &text).unwrap();
        }
        assert_eq!(text, std::fs::read_to_string(path).unwrap());
    }

    #[test]
    fn label_values_are_escaped() {
        let cases = [
            ("plain", "default", "default"),
            ("quote", "a\"b", "a\\\"b"),
            ("backslash", "a\\b", "a\\\\b"),
            ("line_feed", "a\nb", "a\\nb"),
            ("all_three", "\\\"\n", "\\\\\\\"\\n"),
            ("unicode_kept", "héllo", "héllo"),
        ];
        for (case, endpoint, escaped) in cases {
            let m = Metrics::new(MetricsConfig {
                endpoints: vec![endpoint.into()],
                webhooks: vec![],
            });
            m.issuance(endpoint, Protocol::Acme, IssuanceResult::Issued);
            let text = m.render();
            check_exposition(&text).unwrap_or_else(|e| panic!("case {case}: {e}"));
            let want =
                format!("certgate_issuance_total{{endpoint=\"{escaped}\",protocol=\"acme\",result=\"issued\"}} 1\n");
            assert!(text.contains(&want), "case {case}: {want:?} not in output");
        }
    }

    #[test]
    fn exposition_validator_refuses_bad_lines() {
        let cases = [
            ("no_final_line_feed", "# TYPE a counter\na 1"),
            ("sample_before_type", "a 1\n"),
            ("bad_metric_name", "# TYPE 1a counter\n1a 1\n"),
            ("bad_value", "# TYPE a counter\na one\n"),
            ("unescaped_quote", "# TYPE a counter\na{l=\"x\"y\"} 1\n"),
            ("bad_escape", "# TYPE a counter\na{l=\"x\\ty\"} 1\n"),
            ("other_family", "# TYPE a counter\nb 1\n"),
            ("bucket_without_le", "# TYPE h histogram\nh_bucket{p=\"x\"} 1\n"),
            ("duplicate_series", "# TYPE a counter\na 1\na 2\n"),
            ("bad_type", "# TYPE a counters\na 1\n"),
        ];
        for (case, text) in cases {
            assert!(check_exposition(text).is_err(), "case {case} accepted");
        }
    }

    /// Every family: a valid name per house style, and histogram bounds strictly ascending.
    #[test]
    fn family_names_and_buckets() {
        let text = metrics().render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = line.split(' ').skip(2);
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                panic!("bad TYPE line {line}");
            };
            assert!(name.starts_with("certgate_"), "{name}");
            match kind {
                "counter" => assert!(name.ends_with("_total"), "{name}"),
                "histogram" => assert!(name.ends_with("_seconds"), "{name}"),
                _ => assert!(!name.ends_with("_total"), "{name}"),
            }
        }
        let bounds = metrics().request_duration.bounds();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        assert_eq!((bounds.first(), bounds.last()), (Some(&500_000), Some(&10_000_000_000)));
    }

    #[test]
    fn concurrent_recording_sums_correctly() {
        const THREADS: u64 = 8;
        const EACH: u64 = 10_000;
        let m = Arc::new(metrics());
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let m = Arc::clone(&m);
                scope.spawn(move || {
                    for i in 0..EACH {
                        let endpoint = if thread % 2 == 0 { "default" } else { "unregistered" };
                        m.issuance(endpoint, Protocol::Acme, IssuanceResult::Issued);
                        m.observe_request(RequestProtocol::Est, Duration::from_micros(i % 3 * 1000));
                    }
                });
            }
        });
        let text = m.render();
        let value = |series: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(series))
                .unwrap_or_else(|| panic!("{series} missing"))
                .to_owned()
        };
        let half = (THREADS / 2 * EACH).to_string();
        let all = (THREADS * EACH).to_string();
        assert_eq!(
            value("certgate_issuance_total{endpoint=\"default\",protocol=\"acme\",result=\"issued\"} "),
            half
        );
        assert_eq!(
            value("certgate_issuance_total{endpoint=\"other\",protocol=\"acme\",result=\"issued\"} "),
            half
        );
        assert_eq!(value("certgate_request_duration_seconds_count{protocol=\"est\"} "), all);
        // i % 3 is 0, 1 or 2 ms: 0 and 1 ms fall in le=0.001, and the sum is exact.
        let per_thread_ms: u64 = (0..EACH).map(|i| i % 3).sum();
        assert_eq!(
            value("certgate_request_duration_seconds_sum{protocol=\"est\"} "),
            ((THREADS * per_thread_ms) as f64 / 1000.0).to_string()
        );
        let low: u64 = (0..EACH).filter(|i| i % 3 < 2).count() as u64 * THREADS;
        assert_eq!(
            value("certgate_request_duration_seconds_bucket{protocol=\"est\",le=\"0.001\"} "),
            low.to_string()
        );
    }
}
