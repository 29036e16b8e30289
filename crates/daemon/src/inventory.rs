//! The inventory view: every certificate with its status (valid, in its renewal window,
//! expired, revoked, superseded), its successor, and filters and exports over them. The store
//! indexes certificates by expiry, requester and name; the other filters (endpoint, protocol,
//! owner, label, status) are applied while walking the narrowest index, a page at a time.

use std::collections::BTreeMap;

use certgate_core::{DnsName, Identifier, Name, Protocol, RequesterId, Serial};
use certgate_store::{CertificateFilter, CertificateQuery, CertificateRecord, CertificateStore};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The most certificates one listing page walks past without a match before it returns a
/// shorter page with a cursor, so a filter that matches little never holds the store long.
const MAX_SCANNED_PER_PAGE: usize = 20_000;
/// The longest expiry window a filter may name: a hundred years.
const MAX_WINDOW_DAYS: u32 = 36_500;

/// A certificate's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertStatus {
    /// Valid and before its renewal window.
    Valid,
    /// Valid, inside its renewal window, and without a live successor.
    RenewalDue,
    /// Has a live successor (not revoked, not expired).
    Superseded,
    /// Past notAfter.
    Expired,
    /// Revoked.
    Revoked,
}

impl CertStatus {
    /// Every status, for metrics.
    pub const ALL: [Self; 5] = [
        Self::Valid,
        Self::RenewalDue,
        Self::Superseded,
        Self::Expired,
        Self::Revoked,
    ];

    /// The name in listings, filters and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::RenewalDue => "renewal_due",
            Self::Superseded => "superseded",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

impl std::str::FromStr for CertStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?} (valid, renewal_due, superseded, expired, revoked)"))
    }
}

/// When a certificate's renewal window starts: `fraction` of its lifetime after notBefore.
pub fn renewal_start(record: &CertificateRecord, fraction: f64) -> OffsetDateTime {
    let lifetime = record.not_after - record.not_before;
    record.not_before + lifetime * fraction.clamp(0.0, 1.0)
}

/// A certificate's status at `now`, given its successor (if any).
pub fn status_of(
    record: &CertificateRecord,
    successor: Option<&CertificateRecord>,
    now: OffsetDateTime,
    renewal_fraction: f64,
) -> CertStatus {
    let live = |r: &CertificateRecord| r.revocation.is_none() && r.not_after > now;
    if record.revocation.is_some() {
        CertStatus::Revoked
    } else if record.not_after <= now {
        CertStatus::Expired
    } else if successor.is_some_and(live) {
        CertStatus::Superseded
    } else if now >= renewal_start(record, renewal_fraction) {
        CertStatus::RenewalDue
    } else {
        CertStatus::Valid
    }
}

/// A certificate as the inventory shows it: the record without its DER, plus status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryItem {
    /// Serial (hex).
    pub serial: Serial,
    /// Issuer name.
    pub issuer: Name,
    /// Endpoint it came through.
    pub endpoint: Name,
    /// Protocol it came through.
    pub protocol: Protocol,
    /// Who asked: ACME account, EST user or client certificate, SCEP device and challenge.
    pub requester: RequesterId,
    /// Profile.
    pub profile: Name,
    /// Owner labels.
    pub owner_labels: BTreeMap<String, String>,
    /// Subject.
    pub subject: String,
    /// Subject alternative names.
    pub identifiers: Vec<Identifier>,
    /// Key type.
    pub key: String,
    /// Validity start.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// Validity end.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Signed at.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// Status now.
    pub status: CertStatus,
    /// When its renewal window starts.
    #[serde(with = "time::serde::rfc3339")]
    pub renewal_at: OffsetDateTime,
    /// The certificate it renewed.
    pub replaces: Option<Serial>,
    /// Its newest successor.
    pub successor: Option<Serial>,
    /// Revoked at.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub revoked_at: Option<OffsetDateTime>,
    /// Revocation reason.
    pub revocation_reason: Option<String>,
}

impl InventoryItem {
    /// The view of `record` at `now`.
    pub fn new(
        record: &CertificateRecord,
        successor: Option<&CertificateRecord>,
        now: OffsetDateTime,
        renewal_fraction: f64,
    ) -> Self {
        Self {
            serial: record.serial.clone(),
            issuer: record.issuer.clone(),
            endpoint: record.endpoint.clone(),
            protocol: record.protocol,
            requester: record.requester.clone(),
            profile: record.profile.clone(),
            owner_labels: record.owner_labels.clone(),
            subject: record.subject.clone(),
            identifiers: record.identifiers.clone(),
            key: record.key.to_string(),
            not_before: record.not_before,
            not_after: record.not_after,
            issued_at: record.issued_at,
            status: status_of(record, successor, now, renewal_fraction),
            renewal_at: renewal_start(record, renewal_fraction),
            replaces: record.replaces.clone(),
            successor: successor.map(|s| s.serial.clone()),
            revoked_at: record.revocation.as_ref().map(|r| r.revoked_at),
            revocation_reason: record.revocation.as_ref().map(|r| r.reason.to_string()),
        }
    }
}

/// What a listing asks for; every field optional. Parsed from a query string
/// (`expiring_within_days`, `expires_after`, `expires_before` (RFC 3339), `endpoint`,
/// `protocol`, `owner`, `label` (`key=value`), `name`, `requester`, `status`, `limit`, `after`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InventoryFilter {
    /// notAfter within this many days from now (and not yet expired).
    pub expiring_within_days: Option<u32>,
    /// notAfter at or after this.
    pub expires_after: Option<OffsetDateTime>,
    /// notAfter before this.
    pub expires_before: Option<OffsetDateTime>,
    /// Endpoint name.
    pub endpoint: Option<Name>,
    /// Protocol.
    pub protocol: Option<Protocol>,
    /// The `owner` label's value.
    pub owner: Option<String>,
    /// Any label, `key=value`.
    pub label: Option<(String, String)>,
    /// A DNS name or IP address among the SANs.
    pub name: Option<Identifier>,
    /// Requester id.
    pub requester: Option<RequesterId>,
    /// Status now.
    pub status: Option<CertStatus>,
}

/// A parse failure of a filter, shown to the caller.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(String);

impl InventoryFilter {
    /// Parses the filter from query pairs.
    pub fn from_pairs(pairs: &std::collections::HashMap<String, String>) -> Result<Self, FilterError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| FilterError(format!("bad {what}: {e}"));
        let time = |key: &str| -> Result<Option<OffsetDateTime>, FilterError> {
            pairs
                .get(key)
                .map(|v| OffsetDateTime::parse(v, &Rfc3339).map_err(|e| bad(key, &e)))
                .transpose()
        };
        Ok(Self {
            expiring_within_days: pairs
                .get("expiring_within_days")
                .map(|d| match d.parse::<u32>() {
                    Ok(days) if days <= MAX_WINDOW_DAYS => Ok(days),
                    Ok(_) => Err(FilterError(format!(
                        "expiring_within_days is too large (at most {MAX_WINDOW_DAYS})"
                    ))),
                    Err(e) => Err(bad("expiring_within_days", &e)),
                })
                .transpose()?,
            expires_after: time("expires_after")?,
            expires_before: time("expires_before")?,
            endpoint: pairs
                .get("endpoint")
                .map(|e| Name::new(e.as_str()).map_err(|e| bad("endpoint", &e)))
                .transpose()?,
            protocol: pairs
                .get("protocol")
                .map(|p| p.parse().map_err(|e: certgate_core::NameError| bad("protocol", &e)))
                .transpose()?,
            owner: pairs.get("owner").cloned(),
            label: pairs
                .get("label")
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| FilterError("label must be key=value".into()))
                })
                .transpose()?,
            name: pairs.get("name").map(|n| parse_name(n)).transpose()?,
            requester: pairs
                .get("requester")
                .map(|r| RequesterId::new(r.as_str()).map_err(|e| bad("requester", &e)))
                .transpose()?,
            status: pairs
                .get("status")
                .map(|s| s.parse().map_err(|e: String| bad("status", &e)))
                .transpose()?,
        })
    }

    /// The filter as query pairs (the inverse of [`Self::from_pairs`]).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(days) = self.expiring_within_days {
            pairs.push(("expiring_within_days", days.to_string()));
        }
        let rfc3339 = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        if let Some(t) = self.expires_after {
            pairs.push(("expires_after", rfc3339(t)));
        }
        if let Some(t) = self.expires_before {
            pairs.push(("expires_before", rfc3339(t)));
        }
        if let Some(endpoint) = &self.endpoint {
            pairs.push(("endpoint", endpoint.to_string()));
        }
        if let Some(protocol) = self.protocol {
            pairs.push(("protocol", protocol.to_string()));
        }
        if let Some(owner) = &self.owner {
            pairs.push(("owner", owner.clone()));
        }
        if let Some((k, v)) = &self.label {
            pairs.push(("label", format!("{k}={v}")));
        }
        if let Some(name) = &self.name {
            pairs.push(("name", name.to_string()));
        }
        if let Some(requester) = &self.requester {
            pairs.push(("requester", requester.to_string()));
        }
        if let Some(status) = self.status {
            pairs.push(("status", status.as_str().to_owned()));
        }
        pairs
    }

    /// The notAfter window `[from, to)` the filter implies, if any.
    fn expiry_window(&self, now: OffsetDateTime) -> Option<(OffsetDateTime, OffsetDateTime)> {
        let mut from = self.expires_after;
        let mut to = self.expires_before;
        if let Some(days) = self.expiring_within_days {
            let end = now.saturating_add(time::Duration::days(days.into()));
            from = Some(from.map_or(now, |f| f.max(now)));
            to = Some(to.map_or(end, |t| t.min(end)));
        }
        match (from, to) {
            (None, None) => None,
            (from, to) => Some((
                from.unwrap_or(OffsetDateTime::UNIX_EPOCH),
                to.unwrap_or(OffsetDateTime::UNIX_EPOCH + time::Duration::days(365 * 1000)),
            )),
        }
    }

    /// The index to walk: a name or requester narrows most, then an expiry window.
    fn index(&self, now: OffsetDateTime) -> CertificateFilter {
        if let Some(name) = &self.name {
            CertificateFilter::Identifier(name.clone())
        } else if let Some(requester) = &self.requester {
            CertificateFilter::Requester(requester.clone())
        } else if let Some((from, to)) = self.expiry_window(now) {
            CertificateFilter::ExpiringBetween { from, to }
        } else {
            CertificateFilter::All
        }
    }

    fn matches_record(&self, record: &CertificateRecord, now: OffsetDateTime) -> bool {
        let labels = &record.owner_labels;
        self.expiry_window(now)
            .is_none_or(|(from, to)| record.not_after >= from && record.not_after < to)
            && self.endpoint.as_ref().is_none_or(|e| *e == record.endpoint)
            && self.protocol.is_none_or(|p| p == record.protocol)
            && self
                .owner
                .as_ref()
                .is_none_or(|o| labels.get("owner").is_some_and(|v| v == o))
            && self
                .label
                .as_ref()
                .is_none_or(|(k, v)| labels.get(k).is_some_and(|have| have == v))
            && self.name.as_ref().is_none_or(|n| record.identifiers.contains(n))
            && self.requester.as_ref().is_none_or(|r| *r == record.requester)
    }
}

fn parse_name(text: &str) -> Result<Identifier, FilterError> {
    match text.parse() {
        Ok(ip) => Ok(Identifier::Ip(ip)),
        Err(_) => DnsName::new(text)
            .map(Identifier::Dns)
            .map_err(|e| FilterError(format!("bad name: {e}"))),
    }
}

/// One page of the inventory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryPage {
    /// The certificates.
    pub items: Vec<InventoryItem>,
    /// Cursor for the next page.
    pub next: Option<String>,
}

/// Lists certificates matching `filter`, `limit` per page, after cursor `after`.
pub async fn list(
    store: &dyn CertificateStore,
    filter: &InventoryFilter,
    limit: usize,
    after: Option<String>,
    now: OffsetDateTime,
    renewal_fraction: f64,
) -> Result<InventoryPage, certgate_store::StoreError> {
    let limit = limit.clamp(1, 1000);
    let index = filter.index(now);
    let mut items = Vec::new();
    let mut cursor = after;
    let mut scanned = 0usize;
    loop {
        // Never ask for more than still fits: then the store's cursor is exactly where this
        // page stops, whatever the filters drop.
        let page = store
            .list_certificates(&CertificateQuery {
                filter: index.clone(),
                limit: limit - items.len(),
                after: cursor.clone(),
            })
            .await?;
        scanned += page.items.len();
        for record in &page.items {
            if !filter.matches_record(record, now) {
                continue;
            }
            let successor = store.successor(&record.serial).await?;
            let item = InventoryItem::new(record, successor.as_ref(), now, renewal_fraction);
            if filter.status.is_none_or(|s| s == item.status) {
                items.push(item);
            }
        }
        cursor = page.next;
        if cursor.is_none() || items.len() == limit || scanned >= MAX_SCANNED_PER_PAGE {
            return Ok(InventoryPage { items, next: cursor });
        }
    }
}

/// Every certificate matching `filter` (all pages), for exports.
pub async fn list_all(
    store: &dyn CertificateStore,
    filter: &InventoryFilter,
    now: OffsetDateTime,
    renewal_fraction: f64,
) -> Result<Vec<InventoryItem>, certgate_store::StoreError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = list(store, filter, 1000, after, now, renewal_fraction).await?;
        all.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 19] = [
    "serial",
    "issuer",
    "endpoint",
    "protocol",
    "requester",
    "profile",
    "owner_labels",
    "subject",
    "identifiers",
    "key",
    "not_before",
    "not_after",
    "issued_at",
    "status",
    "renewal_at",
    "replaces",
    "successor",
    "revoked_at",
    "revocation_reason",
];

/// The items as CSV (RFC 4180: CRLF, quotes doubled); names are space-separated, labels
/// `key=value` joined with `;`. Subjects, names, requesters and labels come from clients, so
/// every cell is written by [`csv_field`], which keeps a spreadsheet from reading one as a
/// formula; [`from_csv`] reads the values back unchanged.
pub fn to_csv(items: &[InventoryItem]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    let time = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    for item in items {
        let fields = [
            item.serial.to_string(),
            item.issuer.to_string(),
            item.endpoint.to_string(),
            item.protocol.to_string(),
            item.requester.to_string(),
            item.profile.to_string(),
            item.owner_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";"),
            item.subject.clone(),
            item.identifiers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            item.key.clone(),
            time(item.not_before),
            time(item.not_after),
            time(item.issued_at),
            item.status.as_str().to_owned(),
            time(item.renewal_at),
            item.replaces.as_ref().map(ToString::to_string).unwrap_or_default(),
            item.successor.as_ref().map(ToString::to_string).unwrap_or_default(),
            item.revoked_at.map(time).unwrap_or_default(),
            item.revocation_reason.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The characters that make a spreadsheet read a cell as a formula when it starts with one
/// (OWASP, CSV injection).
const FORMULA_LEADS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One CSV cell holding `value`. A value starting with a [`FORMULA_LEADS`] character, or with
/// `'` (so that [`csv_value`] can tell the two apart), gets a `'` in front, which spreadsheets
/// show as text (OWASP's advice). The cell is quoted, quotes doubled (RFC 4180), when it was
/// prefixed or holds a comma, quote or line break, or a semicolon or tab (the separators of
/// other locales and import modes, which would otherwise start a new cell inside this one).
fn csv_field(value: &str) -> String {
    let prefixed = value.starts_with(FORMULA_LEADS) || value.starts_with('\'');
    if prefixed || value.contains([',', '"', '\r', '\n', ';', '\t']) {
        let prefix = if prefixed { "'" } else { "" };
        format!("\"{prefix}{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The value [`csv_field`] wrote into `cell` (as [`parse_csv`] returns it): without the `'` it
/// added in front.
fn csv_value(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

/// Parses RFC 4180 CSV into rows of fields (quoted fields may hold commas, quotes and line
/// breaks). Used to read an export back.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                other => field.push(other),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                at_field_start = false;
            }
            '"' => return Err("a quote inside an unquoted field".into()),
            ',' => {
                row.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                at_field_start = true;
            }
            other => {
                field.push(other);
                at_field_start = false;
            }
        }
    }
    if quoted {
        return Err("an unterminated quoted field".into());
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

/// Reads a CSV export back into items (the inverse of [`to_csv`]).
pub fn from_csv(text: &str) -> Result<Vec<InventoryItem>, String> {
    let rows = parse_csv(text)?;
    let Some((header, rows)) = rows.split_first() else {
        return Err("empty CSV".into());
    };
    if header.iter().map(String::as_str).ne(CSV_COLUMNS) {
        return Err(format!("unexpected header {header:?}"));
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let values: Vec<String> = row.iter().map(|cell| csv_value(cell).to_owned()).collect();
            item_from_row(&values).map_err(|e| format!("row {}: {e}", i + 2))
        })
        .collect()
}

fn item_from_row(row: &[String]) -> Result<InventoryItem, String> {
    let [
        serial,
        issuer,
        endpoint,
        protocol,
        requester,
        profile,
        labels,
        subject,
        identifiers,
        key,
        not_before,
        not_after,
        issued_at,
        status,
        renewal_at,
        replaces,
        successor,
        revoked_at,
        reason,
    ] = row
    else {
        return Err(format!("{} fields, want {}", row.len(), CSV_COLUMNS.len()));
    };
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let time = |t: &str| OffsetDateTime::parse(t, &Rfc3339).map_err(|x| e(&x));
    let serial_or_none = |s: &str| {
        (!s.is_empty())
            .then(|| Serial::parse_hex(s).map_err(|x| e(&x)))
            .transpose()
    };
    Ok(InventoryItem {
        serial: Serial::parse_hex(serial).map_err(|x| e(&x))?,
        issuer: Name::new(issuer.as_str()).map_err(|x| e(&x))?,
        endpoint: Name::new(endpoint.as_str()).map_err(|x| e(&x))?,
        protocol: protocol.parse().map_err(|x| e(&x))?,
        requester: RequesterId::new(requester.as_str()).map_err(|x| e(&x))?,
        profile: Name::new(profile.as_str()).map_err(|x| e(&x))?,
        owner_labels: labels
            .split(';')
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| format!("label {l:?} is not key=value"))
            })
            .collect::<Result<_, _>>()?,
        subject: subject.clone(),
        identifiers: identifiers
            .split(' ')
            .filter(|i| !i.is_empty())
            .map(|i| parse_name(i).map_err(|x| e(&x)))
            .collect::<Result<_, _>>()?,
        key: key.clone(),
        not_before: time(not_before)?,
        not_after: time(not_after)?,
        issued_at: time(issued_at)?,
        status: status.parse()?,
        renewal_at: time(renewal_at)?,
        replaces: serial_or_none(replaces)?,
        successor: serial_or_none(successor)?,
        revoked_at: (!revoked_at.is_empty()).then(|| time(revoked_at)).transpose()?,
        revocation_reason: (!reason.is_empty()).then(|| reason.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rows = Result<Vec<Vec<&'static str>>, ()>;

    #[test]
    fn csv_parser_cases() {
        let cases: [(&str, &str, Rows); 5] = [
            ("plain", "a,b\r\nc,d\r\n", Ok(vec![vec!["a", "b"], vec!["c", "d"]])),
            (
                "quoted_comma_and_quote",
                "\"a,\"\"b\"\"\",c\n",
                Ok(vec![vec!["a,\"b\"", "c"]]),
            ),
            ("quoted_newline", "\"x\r\ny\",z", Ok(vec![vec!["x\r\ny", "z"]])),
            ("empty_fields", ",,\n", Ok(vec![vec!["", "", ""]])),
            ("bad_unterminated", "\"abc", Err(())),
        ];
        for (case, input, want) in cases {
            let got = parse_csv(input).map_err(|_| ());
            let want = want.map(|rows| {
                rows.into_iter()
                    .map(|r| r.into_iter().map(str::to_owned).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "case {case}");
        }
    }

    #[test]
    fn formula_cells_are_neutralised() {
        let cases = [
            ("equals", "=1+1", "\"'=1+1\""),
            ("plus", "+1", "\"'+1\""),
            ("minus", "-x", "\"'-x\""),
            ("at", "@SUM(A1:A9)", "\"'@SUM(A1:A9)\""),
            ("tab", "\t=1", "\"'\t=1\""),
            ("carriage_return", "\r=1", "\"'\r=1\""),
            ("dde", "=cmd|' /C calc'!A0", "\"'=cmd|' /C calc'!A0\""),
            (
                "quotes_doubled",
                "=HYPERLINK(\"http://x\",\"y\")",
                "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"",
            ),
            ("comma", "=a,b", "\"'=a,b\""),
            ("label_key", "-x=v;owner=a", "\"'-x=v;owner=a\""),
            ("empty_label_key", "=-x", "\"'=-x\""),
            ("leading_apostrophe", "'quoted", "\"''quoted\""),
        ];
        for (case, value, want) in cases {
            let cell = csv_field(value);
            assert_eq!(cell, want, "case {case}");
            let parsed = parse_csv(&cell).unwrap();
            let [row] = parsed.as_slice() else {
                panic!("case {case}: {parsed:?}");
            };
            let [read] = row.as_slice() else {
                panic!("case {case}: {row:?}");
            };
            assert!(!read.starts_with(FORMULA_LEADS), "case {case}: {read:?}");
            assert_eq!(csv_value(read), value, "case {case}");
        }
    }

    #[test]
    fn ordinary_cells_are_unchanged() {
        let cases = [
            ("serial", "7A3F09C2D1E4B5A6"),
            ("name", "default"),
            ("ipv6_loopback", "::1"),
            ("ipv6_names", "::1 2001:db8::1 a.example.com"),
            ("subject", "CN=device-0001,O=Maker"),
            ("label_value_minus", "owner=-x"),
            ("label_value_formula", "owner==1+1"),
            ("time", "2025-01-01T00:00:00Z"),
            ("apostrophe_inside", "o'brien"),
            ("empty", ""),
        ];
        for (case, value) in cases {
            let want = if value.contains(',') {
                format!("\"{value}\"")
            } else {
                value.to_owned()
            };
            assert_eq!(csv_field(value), want, "case {case}");
            assert_eq!(csv_value(value), value, "case {case}");
        }
    }

    #[test]
    fn separators_are_quoted() {
        let cases = [
            ("comma", "a,b", "\"a,b\""),
            ("quote", "a\"b", "\"a\"\"b\""),
            ("crlf", "a\r\nb", "\"a\r\nb\""),
            ("lf", "a\nb", "\"a\nb\""),
            ("semicolon_then_formula", "a;=1+1", "\"a;=1+1\""),
            ("tab_then_formula", "a\t=1+1", "\"a\t=1+1\""),
        ];
        for (case, value, want) in cases {
            assert_eq!(csv_field(value), want, "case {case}");
            assert_eq!(parse_csv(want).unwrap(), vec![vec![value.to_owned()]], "case {case}");
        }
    }

    fn hostile_item() -> InventoryItem {
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        InventoryItem {
            serial: Serial::parse_hex("7A3F09C2D1E4B5A6").unwrap(),
            issuer: Name::new("ca").unwrap(),
            endpoint: Name::new("default").unwrap(),
            protocol: Protocol::Est,
            requester: RequesterId::new("@est-user:default/=1+1").unwrap(),
            profile: Name::new("device").unwrap(),
            owner_labels: BTreeMap::from([("+k".to_owned(), "v".to_owned()), ("owner".to_owned(), "-x".to_owned())]),
            subject: "=cmd|' /C calc'!A0,\"x\"".to_owned(),
            identifiers: vec![
                Identifier::Ip("::1".parse().unwrap()),
                Identifier::Dns(DnsName::new("a.example.com").unwrap()),
            ],
            key: "-p256".to_owned(),
            not_before: at,
            not_after: at + time::Duration::days(90),
            issued_at: at,
            status: CertStatus::Valid,
            renewal_at: at + time::Duration::days(60),
            replaces: None,
            successor: None,
            revoked_at: None,
            revocation_reason: Some("'quoted".to_owned()),
        }
    }

    #[test]
    fn exports_read_back_unchanged_and_start_no_cell_with_a_formula() {
        let item = hostile_item();
        let csv = to_csv(std::slice::from_ref(&item));
        let rows = parse_csv(&csv).unwrap();
        for cell in rows.iter().flatten() {
            assert!(!cell.starts_with(FORMULA_LEADS), "{cell:?} in {csv:?}");
        }
        let [_, row] = rows.as_slice() else {
            panic!("{rows:?}");
        };
        let cell = |column: &str| {
            let index = CSV_COLUMNS.iter().position(|c| *c == column).unwrap();
            row[index].as_str()
        };
        assert_eq!(cell("requester"), "'@est-user:default/=1+1");
        assert_eq!(cell("owner_labels"), "'+k=v;owner=-x");
        assert_eq!(cell("identifiers"), "::1 a.example.com");
        assert_eq!(from_csv(&csv).unwrap(), vec![item]);
    }
}
