//! The audit log: an append-only, hash-chained record of what certgate decided and who asked
//! (issuances, revocations, approvals, admin actions, configuration changes).
//!
//! Each [`AuditEntry`] carries a 1-based, contiguous `seq`, the time, the [`AuditEvent`], the
//! `hash` of the entry before it (`prev_hash`; 64 zeros for seq 1) and its own `hash`, so
//! changing, removing or reordering an entry breaks the chain at that point and
//! [`verify_chain`] names the seq. Entries are exported as JSON lines ([`export_jsonl`]), one
//! entry per line exactly as stored, and [`verify_jsonl`] checks such a file.
//!
//! # The hash
//!
//! `hash` is the lower-case hex SHA-256 of the entry's canonical encoding, the UTF-8 JSON object
//!
//! ```text
//! {"seq":7,"at":"2026-05-01T12:00:00.25Z","kind":"issuance","actor":"acme-account:default/4f2a",
//!  "subject":"5A3C…","details":{"endpoint":"default","profile":"server"},"prev_hash":"9b1d…"}
//! ```
//!
//! (one line), with:
//! - the members in exactly this order and no whitespace anywhere;
//! - `seq` a decimal integer; `kind` the snake_case name of the [`AuditKind`];
//! - `at` in RFC 3339 as certgate writes it: `YYYY-MM-DDTHH:MM:SS`, then (only when the
//!   fraction of the second is not zero) `.` and its digits without trailing zeros, then `Z`
//!   (certgate records UTC; an entry built elsewhere with another offset is hashed with
//!   `+HH:MM` / `-HH:MM`);
//! - `details` an object of strings sorted by key in byte (code point) order, `{}` when empty;
//! - strings escaped as JSON requires and no more: `\"`, `\\`, `\b` `\t` `\n` `\f` `\r`, other
//!   characters below U+0020 as `\u00xx` (lower-case hex); everything else, non-ASCII included,
//!   as raw UTF-8 (no `\/`, no `\uXXXX` for non-ASCII).
//!
//! For a line certgate wrote this is the line with its last member, `,"hash":"…"`, removed. An
//! outside tool recomputes it from the parsed line, e.g. in Python:
//! `json.dumps({k: e[k] for k in ("seq", "at", "kind", "actor", "subject", "details",
//! "prev_hash")} | {"details": dict(sorted(e["details"].items()))}, separators=(",", ":"),
//! ensure_ascii=False).encode()`.
//!
//! # What the chain proves, and what it does not
//!
//! - It detects an entry altered in place, removed from the middle or the start, duplicated or
//!   moved, and an entry rewritten with a recomputed hash (its successor no longer links).
//! - It does **not** detect a truncated tail: the first `k` entries of a valid chain are a valid
//!   chain. Nor does it stop someone who can rewrite every entry from some point on. Both need
//!   an anchor outside the log: the daemon compares the store's count ([`AuditLog::len`]) and
//!   remembers (logs, exports) [`ChainSummary::last_hash`] so a later check can find it again.
//!
//! # Durability
//!
//! [`AuditLog::append`] does not flush: the entry becomes durable with the store's next
//! group-committed flush, whoever triggers it (the next issuance does within milliseconds). A
//! crash before that loses the newest entries, which leaves a shorter, still valid chain (sled
//! recovers a prefix of its log). [`AuditLog::append_durable`] also waits for that flush; use it
//! for operator actions, which are rare and must not be lost.
//!
//! # Retention
//!
//! Nothing deletes entries. So that the database stays bounded under endless issuance, the
//! sled log moves its oldest entries, unchanged, into append-once segment files beside the
//! database ([`SledAuditLog::archive`]) and keeps only the anchor (seq and hash) of the last
//! one it moved. Reads page through the segments and then the database as one log, so export
//! and verification cover the whole chain; the segments are plain JSON lines an operator can
//! ship elsewhere, `cat` together and check with [`verify_jsonl`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, Write};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::StoreError;

pub use crate::sled_audit::{ArchiveAnchor, ArchivedSegment, SEGMENT_ENTRIES, SledAuditLog};

/// The `prev_hash` of the first entry: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How many entries [`AuditLog::entries`] returns at most per call.
pub const MAX_PAGE: usize = 1000;

/// What kind of action an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// A certificate was issued (subject: its serial).
    Issuance,
    /// A certificate was revoked (subject: its serial).
    Revocation,
    /// An approval request was approved or denied (subject: the approval id).
    Approval,
    /// Another operator action: EAB keys, EST users, one-time challenges (subject: what it
    /// changed, e.g. a key or token id).
    Admin,
    /// The configuration was loaded or changed (subject: the config path).
    Config,
}

impl AuditKind {
    /// The snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issuance => "issuance",
            Self::Revocation => "revocation",
            Self::Approval => "approval",
            Self::Admin => "admin",
            Self::Config => "config",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened: the part of an entry the caller supplies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// What kind of action.
    pub kind: AuditKind,
    /// Who: a requester id, an operator, or `system`.
    pub actor: String,
    /// What: a serial, an approval id, a token id, a config path.
    pub subject: String,
    /// Further stable fields (endpoint, profile, reason, …). Never keys, passwords, EAB MACs
    /// or whole CSRs.
    pub details: BTreeMap<String, String>,
}

impl AuditEvent {
    /// An event without details.
    pub fn new(kind: AuditKind, actor: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            kind,
            actor: actor.into(),
            subject: subject.into(),
            details: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) one detail.
    #[must_use]
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// One entry of the log, as stored and exported (one JSON line; members in this order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When the action happened (UTC when appended by certgate).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened (its fields appear at the top level of the JSON object).
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The `hash` of entry `seq - 1`; [`GENESIS_HASH`] for seq 1.
    pub prev_hash: String,
    /// SHA-256 of the canonical encoding of everything above (module docs), lower-case hex.
    pub hash: String,
}

/// The hashed part of an entry: everything but `hash`, in the documented order.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    kind: AuditKind,
    actor: &'a str,
    subject: &'a str,
    details: &'a BTreeMap<String, String>,
    prev_hash: &'a str,
}

impl AuditEntry {
    /// The canonical encoding the hash covers (module docs). Fails only for a time RFC 3339
    /// cannot express (a year outside 0..=9999 or an offset with seconds).
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, StoreError> {
        let canonical = Canonical {
            seq: self.seq,
            at: self.at,
            kind: self.event.kind,
            actor: &self.event.actor,
            subject: &self.event.subject,
            details: &self.event.details,
            prev_hash: &self.prev_hash,
        };
        Ok(serde_json::to_vec(&canonical)?)
    }

    /// The hash this entry's content calls for (compare with [`AuditEntry::hash`]).
    pub fn computed_hash(&self) -> Result<String, StoreError> {
        Ok(sha256_hex(&self.canonical_bytes()?))
    }

    /// The entry as one JSON line (without the newline), exactly as stored and exported.
    pub fn to_json_line(&self) -> Result<String, StoreError> {
        Ok(serde_json::to_string(self)?)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Sets `entry.hash` from its content and returns the stored form (its JSON line), built
/// from the canonical bytes so the content is serialized once.
pub(crate) fn seal(entry: &mut AuditEntry) -> Result<Vec<u8>, StoreError> {
    let mut line = entry.canonical_bytes()?;
    entry.hash = sha256_hex(&line);
    // The canonical encoding is a JSON object, so it ends with '}'; the hash member goes
    // before it, which is exactly how serde writes `AuditEntry` (tested).
    if line.pop() != Some(b'}') {
        return Err(StoreError::Backend(
            "canonical audit encoding is not a JSON object".into(),
        ));
    }
    line.extend_from_slice(b",\"hash\":\"");
    line.extend_from_slice(entry.hash.as_bytes());
    line.extend_from_slice(b"\"}");
    Ok(line)
}

/// The audit log of a store. Appends are serialized so that each entry links to the one
/// before; reads page by seq.
#[async_trait]
pub trait AuditLog: Send + Sync + fmt::Debug {
    /// Appends `event` at time `at` (stored in UTC) and returns the entry with its seq and
    /// hashes. Not flushed: durable with the store's next group-committed flush (module docs).
    async fn append(&self, event: &AuditEvent, at: OffsetDateTime) -> Result<AuditEntry, StoreError>;

    /// [`AuditLog::append`], then waits until the entry (and everything before it) is on disk.
    /// For operator actions.
    async fn append_durable(&self, event: &AuditEvent, at: OffsetDateTime) -> Result<AuditEntry, StoreError>;

    /// Up to `limit` (at most [`MAX_PAGE`]) entries with seq greater than `after_seq`, in seq
    /// order. `after_seq = 0` starts at the beginning; the last seq returned continues.
    async fn entries(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// How many entries have been appended: the seq of the last one, 0 for an empty log.
    async fn len(&self) -> Result<u64, StoreError>;

    /// The newest entry, if any.
    async fn last(&self) -> Result<Option<AuditEntry>, StoreError>;

    /// Whether nothing has been appended yet.
    async fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len().await? == 0)
    }
}

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// How many entries were checked (equal to the last seq).
    pub entries: u64,
    /// The hash of the last entry ([`GENESIS_HASH`] for an empty log). Keep it outside the log:
    /// a later verification that does not reach it has found a truncated or rewritten log.
    pub last_hash: String,
}

/// Where and how an audit chain is broken. `seq` is the seq written in the offending entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The entry's hash does not match its content: it was changed after it was written.
    #[error("audit entry {seq} was altered: its hash does not match its content")]
    Altered {
        /// The entry's seq.
        seq: u64,
    },
    /// Entries are missing: the next entry should have been `expected_seq` but is
    /// `found_seq` (at the start too: a log begins at seq 1).
    #[error("audit entries missing: expected seq {expected_seq}, found seq {found_seq}")]
    Missing {
        /// The seq that should have come next.
        expected_seq: u64,
        /// The seq that came instead.
        found_seq: u64,
    },
    /// The entry is not in its place: a later seq is followed by an earlier one (moved or
    /// swapped entries), or a seq repeats.
    #[error("audit entry {seq} is out of order")]
    OutOfOrder {
        /// The entry's seq.
        seq: u64,
    },
    /// The entry is where it belongs and its own hash is right, but `prev_hash` is not the
    /// hash of the entry before it: that entry was rewritten with a recomputed hash, or entries
    /// were removed and the rest renumbered.
    #[error("audit entry {seq} does not link to the entry before it")]
    BrokenLink {
        /// The entry's seq.
        seq: u64,
    },
}

/// Why exporting or verifying an audit log failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The chain is broken.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A line of an exported file is not an entry in the form certgate writes.
    #[error("audit export line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing the file failed.
    #[error("audit export I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks entries in order, one at a time.
pub(crate) struct Verifier {
    next_seq: u64,
    last_hash: String,
    /// A seq gap seen at the previous entry (expected, found). Whether it is a removal or a
    /// reorder shows only at the next entry: a lower seq after it means reordered.
    gap: Option<(u64, u64)>,
}

impl Verifier {
    fn new() -> Self {
        Self::after(0, GENESIS_HASH)
    }

    /// A verifier for the entries that follow entry `seq`, whose hash is `hash`.
    pub(crate) fn after(seq: u64, hash: &str) -> Self {
        Self {
            next_seq: seq + 1,
            last_hash: hash.to_owned(),
            gap: None,
        }
    }

    pub(crate) fn push(&mut self, entry: &AuditEntry) -> Result<(), ChainError> {
        if let Some((expected_seq, found_seq)) = self.gap.take() {
            return Err(if entry.seq < found_seq {
                ChainError::OutOfOrder { seq: found_seq }
            } else {
                ChainError::Missing {
                    expected_seq,
                    found_seq,
                }
            });
        }
        // An entry whose time cannot even be encoded was not written by certgate.
        if entry.computed_hash().ok().as_deref() != Some(entry.hash.as_str()) {
            return Err(ChainError::Altered { seq: entry.seq });
        }
        if entry.seq > self.next_seq {
            self.gap = Some((self.next_seq, entry.seq));
            return Ok(());
        }
        if entry.seq < self.next_seq {
            return Err(ChainError::OutOfOrder { seq: entry.seq });
        }
        if entry.prev_hash != self.last_hash {
            return Err(ChainError::BrokenLink { seq: entry.seq });
        }
        self.next_seq += 1;
        self.last_hash.clone_from(&entry.hash);
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<ChainSummary, ChainError> {
        if let Some((expected_seq, found_seq)) = self.gap {
            return Err(ChainError::Missing {
                expected_seq,
                found_seq,
            });
        }
        Ok(ChainSummary {
            entries: self.next_seq - 1,
            last_hash: self.last_hash,
        })
    }
}

/// Verifies a whole log, given in order from seq 1: every hash matches its entry's content,
/// seqs run 1, 2, 3, … and each entry links to the one before. Stops at the first break.
/// A truncated tail verifies (module docs): compare [`ChainSummary`] with an outside anchor.
pub fn verify_chain(entries: impl IntoIterator<Item = AuditEntry>) -> Result<ChainSummary, ChainError> {
    let mut verifier = Verifier::new();
    for entry in entries {
        verifier.push(&entry)?;
    }
    verifier.finish()
}

/// Verifies an exported file (one entry per line, from seq 1). Each line must be exactly what
/// certgate writes: a line re-serialized by another tool (reordered or extra members,
/// whitespace, duplicate keys) is [`AuditError::Malformed`], so the file is what was hashed.
pub fn verify_jsonl(reader: impl BufRead) -> Result<ChainSummary, AuditError> {
    let mut verifier = JsonlVerifier::default();
    for line in reader.lines() {
        verifier.push_line(&line?)?;
    }
    verifier.finish()
}

/// [`verify_jsonl`] a line at a time, for an export that arrives in pages.
pub struct JsonlVerifier {
    verifier: Verifier,
    lines: u64,
}

impl Default for JsonlVerifier {
    fn default() -> Self {
        Self {
            verifier: Verifier::new(),
            lines: 0,
        }
    }
}

impl JsonlVerifier {
    /// Checks the next line (without its line end).
    pub fn push_line(&mut self, line: &str) -> Result<(), AuditError> {
        self.lines += 1;
        let malformed = |reason: String| AuditError::Malformed {
            line: self.lines,
            reason,
        };
        let entry: AuditEntry = serde_json::from_str(line).map_err(|e| malformed(e.to_string()))?;
        if entry.to_json_line().ok().as_deref() != Some(line) {
            return Err(malformed("not in the exact form certgate writes".into()));
        }
        Ok(self.verifier.push(&entry)?)
    }

    /// The summary, once every line has been pushed.
    pub fn finish(self) -> Result<ChainSummary, AuditError> {
        Ok(self.verifier.finish()?)
    }
}

/// Verifies the whole log in a store, walking it in pages of [`MAX_PAGE`].
pub async fn verify_store(log: &dyn AuditLog) -> Result<ChainSummary, AuditError> {
    let mut verifier = Verifier::new();
    let mut after = 0;
    loop {
        let page = log.entries(after, MAX_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(verifier.finish()?);
        };
        after = next_after(after, last)?;
        for entry in &page {
            verifier.push(entry)?;
        }
    }
}

/// Where the next page starts. A store whose entries do not carry the seq of their place
/// (tampered with) could otherwise page backwards forever.
fn next_after(after: u64, last: &AuditEntry) -> Result<u64, ChainError> {
    if last.seq > after {
        Ok(last.seq)
    } else {
        Err(ChainError::OutOfOrder { seq: last.seq })
    }
}

/// Writes every entry with seq greater than `after_seq` to `out` as JSON lines (each line
/// followed by `\n`) and returns how many. From `after_seq = 0` the output is a file
/// [`verify_jsonl`] accepts.
pub async fn export_jsonl<W: Write + Send + ?Sized>(
    log: &dyn AuditLog,
    after_seq: u64,
    out: &mut W,
) -> Result<u64, AuditError> {
    let mut after = after_seq;
    let mut written = 0;
    loop {
        let page = log.entries(after, MAX_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(written);
        };
        after = next_after(after, last)?;
        for entry in &page {
            out.write_all(entry.to_json_line()?.as_bytes())?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    /// A valid chain of `n` entries, one second apart, each with a detail.
    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut entry = AuditEntry {
                    seq,
                    at: datetime!(2026-05-01 12:00:00 UTC) + time::Duration::seconds(seq as i64),
                    event: AuditEvent::new(AuditKind::Issuance, "acme-account:default/1", format!("{seq:04X}"))
                        .detail("endpoint", "default"),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                seal(&mut entry).unwrap();
                prev.clone_from(&entry.hash);
                entry
            })
            .collect()
    }

    fn rehash(entry: &mut AuditEntry) {
        seal(entry).unwrap();
    }

    #[test]
    fn verify_chain_cases() {
        type Tamper = fn(&mut Vec<AuditEntry>);
        let cases: [(&str, u64, Tamper, Result<u64, ChainError>); 17] = [
            ("good_empty", 0, |_| {}, Ok(0)),
            ("good_one", 1, |_| {}, Ok(1)),
            ("good_ten", 10, |_| {}, Ok(10)),
            (
                "bad_details_value_altered",
                10,
                |c| {
                    c[4].event.details.insert("endpoint".into(), "other".into());
                },
                Err(ChainError::Altered { seq: 5 }),
            ),
            (
                "bad_detail_added",
                10,
                |c| {
                    c[4].event.details.insert("note".into(), "x".into());
                },
                Err(ChainError::Altered { seq: 5 }),
            ),
            (
                "bad_actor_altered",
                10,
                |c| c[2].event.actor = "operator".into(),
                Err(ChainError::Altered { seq: 3 }),
            ),
            (
                "bad_at_altered",
                10,
                |c| c[7].at += time::Duration::nanoseconds(1),
                Err(ChainError::Altered { seq: 8 }),
            ),
            (
                "bad_kind_altered",
                10,
                |c| c[0].event.kind = AuditKind::Revocation,
                Err(ChainError::Altered { seq: 1 }),
            ),
            (
                "bad_middle_removed",
                10,
                |c| {
                    c.remove(4);
                },
                Err(ChainError::Missing {
                    expected_seq: 5,
                    found_seq: 6,
                }),
            ),
            (
                "bad_first_removed",
                10,
                |c| {
                    c.remove(0);
                },
                Err(ChainError::Missing {
                    expected_seq: 1,
                    found_seq: 2,
                }),
            ),
            (
                "bad_second_to_last_removed",
                10,
                |c| {
                    c.remove(8);
                },
                Err(ChainError::Missing {
                    expected_seq: 9,
                    found_seq: 10,
                }),
            ),
            (
                "bad_adjacent_swapped",
                10,
                |c| c.swap(3, 4),
                Err(ChainError::OutOfOrder { seq: 5 }),
            ),
            (
                "bad_distant_swapped",
                10,
                |c| c.swap(2, 7),
                Err(ChainError::OutOfOrder { seq: 8 }),
            ),
            (
                "bad_entry_duplicated",
                10,
                |c| {
                    let copy = c[5].clone();
                    c.insert(6, copy);
                },
                Err(ChainError::OutOfOrder { seq: 6 }),
            ),
            (
                "bad_rewritten_with_recomputed_hash",
                10,
                |c| {
                    c[3].event.subject = "FORGED".into();
                    rehash(&mut c[3]);
                },
                Err(ChainError::BrokenLink { seq: 5 }),
            ),
            (
                "bad_forged_start",
                3,
                |c| {
                    c[0].prev_hash = "ab".repeat(32);
                    rehash(&mut c[0]);
                },
                Err(ChainError::BrokenLink { seq: 1 }),
            ),
            // Not detectable by the chain alone: a prefix of a valid chain is a valid chain.
            // The daemon compares the count and the last hash with an outside anchor.
            ("undetected_truncated_tail", 10, |c| c.truncate(7), Ok(7)),
        ];
        for (case, n, tamper, want) in cases {
            let mut entries = chain(n);
            tamper(&mut entries);
            let expected_last = entries.last().map_or(GENESIS_HASH.to_owned(), |e| e.hash.clone());
            let got = verify_chain(entries);
            match want {
                Ok(count) => assert_eq!(
                    got,
                    Ok(ChainSummary {
                        entries: count,
                        last_hash: expected_last
                    }),
                    "case {case}"
                ),
                Err(error) => assert_eq!(got, Err(error), "case {case}"),
            }
        }
    }

    /// The hash of a fixed entry, computed outside Rust (Python's json and hashlib) so the
    /// documented encoding is the one implemented. Regenerate with (one line):
    /// `python3 -c 'import hashlib,json; print(hashlib.sha256(json.dumps({"seq":7,"at":"2026-05-01T12:00:00.25Z","kind":"issuance","actor":"acme-account:default/4f2a","subject":"5A3C","details":{"endpoint":"default","note":"quote \" back\\ nl\n tab\t bel\u0007 é ✓","profile":"server"},"prev_hash":"0"*64},separators=(",",":"),ensure_ascii=False).encode()).hexdigest())'`
    #[test]
    fn hash_matches_the_documented_encoding() {
        let mut entry = AuditEntry {
            seq: 7,
            at: datetime!(2026-05-01 12:00:00.250 UTC),
            event: AuditEvent::new(AuditKind::Issuance, "acme-account:default/4f2a", "5A3C")
                .detail("profile", "server")
                .detail("note", "quote \" back\\ nl\n tab\t bel\u{7} é ✓")
                .detail("endpoint", "default"),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        };
        let line = seal(&mut entry).unwrap();
        let canonical = String::from_utf8(entry.canonical_bytes().unwrap()).unwrap();
        assert_eq!(
            canonical,
            r#"{"seq":7,"at":"2026-05-01T12:00:00.25Z","kind":"issuance","actor":"acme-account:default/4f2a","subject":"5A3C","details":{"endpoint":"default","note":"quote \" back\\ nl\n tab\t bel\u0007 é ✓","profile":"server"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000"}"#
        );
        assert_eq!(
            entry.hash,
            "d59eb00cb9a6a946ad293367ababf656a360a533764091890c47ae5c1883043f"
        );
        // The stored line is serde's serialization of the entry, and is the canonical
        // encoding with the hash member appended.
        assert_eq!(String::from_utf8(line).unwrap(), entry.to_json_line().unwrap());
        assert_eq!(
            entry.to_json_line().unwrap(),
            format!("{},\"hash\":\"{}\"}}", &canonical[..canonical.len() - 1], entry.hash)
        );
        let parsed: AuditEntry = serde_json::from_str(&entry.to_json_line().unwrap()).unwrap();
        assert_eq!(parsed, entry);
    }

    #[test]
    fn kinds_serialize_snake_case() {
        let cases = [
            ("issuance", AuditKind::Issuance),
            ("revocation", AuditKind::Revocation),
            ("approval", AuditKind::Approval),
            ("admin", AuditKind::Admin),
            ("config", AuditKind::Config),
        ];
        for (name, kind) in cases {
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{name}\""),
                "case {name}"
            );
            assert_eq!(kind.as_str(), name, "case {name}");
            assert_eq!(serde_json::from_str::<AuditKind>(&format!("\"{name}\"")).unwrap(), kind);
        }
    }

    #[test]
    fn verify_jsonl_cases() {
        let good: String = chain(5).iter().map(|e| e.to_json_line().unwrap() + "\n").collect();
        let lines: Vec<&str> = good.lines().collect();
        let with_line = |index: usize, replacement: &str| {
            let mut lines = lines.clone();
            lines[index] = replacement;
            lines.join("\n") + "\n"
        };
        let altered = lines[2].replace("\"endpoint\":\"default\"", "\"endpoint\":\"elsewhere\"");
        let reordered = {
            // Members sorted by name: the same content, another form. (A BTreeMap, not
            // serde_json's Value, whose order depends on a feature another crate may enable.)
            let members: std::collections::BTreeMap<String, serde_json::Value> =
                serde_json::from_str(lines[1]).unwrap();
            serde_json::to_string(&members).unwrap()
        };
        let extra_member = lines[3].replacen('{', "{\"x\":\"1\",", 1);
        let spaced = lines[0].replace(":", ": ");
        /// Name, file, and the entry count or (line or seq, "altered" or "malformed").
        type Case = (&'static str, String, Result<u64, (u64, &'static str)>);
        let cases: [Case; 9] = [
            ("good_file", good.clone(), Ok(5)),
            ("good_without_final_newline", good.trim_end().to_owned(), Ok(5)),
            ("good_crlf", good.replace('\n', "\r\n"), Ok(5)),
            ("good_empty_file", String::new(), Ok(0)),
            ("bad_altered_value", with_line(2, &altered), Err((3, "altered"))),
            ("bad_not_json", with_line(1, "not json"), Err((2, "malformed"))),
            ("bad_reserialized", with_line(1, &reordered), Err((2, "malformed"))),
            ("bad_extra_member", with_line(3, &extra_member), Err((4, "malformed"))),
            ("bad_whitespace", with_line(0, &spaced), Err((1, "malformed"))),
        ];
        for (case, file, want) in cases {
            let got = verify_jsonl(file.as_bytes());
            match (want, got) {
                (Ok(count), Ok(summary)) => assert_eq!(summary.entries, count, "case {case}"),
                (Err((seq, "altered")), Err(AuditError::Chain(ChainError::Altered { seq: got }))) => {
                    assert_eq!(got, seq, "case {case}")
                }
                (Err((line, "malformed")), Err(AuditError::Malformed { line: got, .. })) => {
                    assert_eq!(got, line, "case {case}")
                }
                (want, got) => panic!("case {case}: want {want:?}, got {got:?}"),
            }
        }
    }
}
