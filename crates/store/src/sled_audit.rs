//! [`AuditLog`] on sled: one tree, `audit_log`, seq (8 bytes, big-endian) -> the entry's JSON
//! line, exactly as exported. Big-endian keys make sled's key order the seq order, so the tail
//! is the tree's last key and a page is a range scan.
//!
//! Appends are serialized by a mutex over the tail (seq and hash of the last entry), held only
//! to hash the entry and insert it. The insert is a compare-and-swap from absent, so even a
//! second [`SledAuditLog`] on the same database (which would have its own tail) cannot fork
//! the chain: it finds the seq taken, reloads the tail and links after it.
//!
//! # Archive segments
//!
//! [`SledAuditLog::archive`] moves the oldest entries into files
//! `audit-<first seq>-<last seq>.jsonl` (20 digits each) in the archive directory, at most
//! [`SEGMENT_ENTRIES`] per file, each line the stored value byte for byte. The steps are
//! ordered so that a crash anywhere loses nothing and duplicates nothing:
//!
//! 1. the segment is written to a `.tmp` file, synced, renamed into place, and the directory
//!    synced: a segment under its final name is complete;
//! 2. the anchor (`audit_meta` tree: seq and hash of the segment's last entry) is written and
//!    flushed: from here on reads take entries up to the anchor from the files;
//! 3. the archived entries are removed from the tree.
//!
//! A crash after 1 leaves a complete segment that starts right after the anchor: the next
//! archive run adopts it (steps 2 and 3). A crash after 2 leaves entries at or below the
//! anchor in the tree, which reads skip and the next run removes. Before moving anything the
//! run checks that the entries continue the chain from the anchor, so a tampered database is
//! never laundered into a segment.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, UtcOffset};

use crate::StoreError;
use crate::audit::{AuditEntry, AuditEvent, AuditLog, GENESIS_HASH, MAX_PAGE, Verifier, seal};
use crate::sled_backend::SledStore;

const TREE: &str = "audit_log";
const META_TREE: &str = "audit_meta";
const ANCHOR_KEY: &[u8] = b"archived_through";

/// The most entries one archive segment holds (about 5 MB of JSON lines).
pub const SEGMENT_ENTRIES: u64 = 10_000;

/// The audit log of a [`SledStore`]. Open one per store and share it (`Arc<dyn AuditLog>`).
#[derive(Debug)]
pub struct SledAuditLog {
    store: SledStore,
    tree: sled::Tree,
    meta: sled::Tree,
    archive_dir: Option<PathBuf>,
    tail: Mutex<Tail>,
    /// One archive run at a time.
    archiving: tokio::sync::Mutex<()>,
}

/// The last entry: what the next one follows.
#[derive(Debug)]
struct Tail {
    seq: u64,
    hash: String,
}

/// The last entry moved to a segment file: reads up to `seq` go to the files, and the first
/// entry left in the tree links to `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveAnchor {
    /// The seq of the last archived entry (0: nothing archived).
    pub seq: u64,
    /// Its hash ([`GENESIS_HASH`] when nothing is archived).
    pub hash: String,
}

/// One segment file, as found in the archive directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedSegment {
    /// The seq of its first entry.
    pub first: u64,
    /// The seq of its last entry.
    pub last: u64,
    /// Where it is.
    pub path: PathBuf,
}

impl SledAuditLog {
    /// Opens the log in `store` (creating its tree) and recovers the tail from its last entry.
    /// Without an archive directory the log cannot archive, and fails to read entries that an
    /// earlier run archived.
    pub fn open(store: &SledStore) -> Result<Self, StoreError> {
        let tree = store.db().open_tree(TREE)?;
        let meta = store.db().open_tree(META_TREE)?;
        let anchor = read_anchor(&meta)?;
        let mut tail = read_tail(&tree)?;
        if tail.seq < anchor.seq {
            tail = Tail {
                seq: anchor.seq,
                hash: anchor.hash,
            };
        }
        Ok(Self {
            store: store.clone(),
            tree,
            meta,
            archive_dir: None,
            tail: Mutex::new(tail),
            archiving: tokio::sync::Mutex::new(()),
        })
    }

    /// [`SledAuditLog::open`] with archive segments in `dir` (created if missing; leftover
    /// `.tmp` files of an interrupted run are removed).
    pub fn open_with_archive(store: &SledStore, dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
        for entry in fs::read_dir(dir).map_err(|e| io_error(dir, &e))? {
            let path = entry.map_err(|e| io_error(dir, &e))?.path();
            if path.extension().is_some_and(|ext| ext == "tmp") {
                fs::remove_file(&path).map_err(|e| io_error(&path, &e))?;
            }
        }
        let mut log = Self::open(store)?;
        log.archive_dir = Some(dir.to_owned());
        Ok(log)
    }

    /// Where archived entries are up to now.
    pub fn anchor(&self) -> Result<ArchiveAnchor, StoreError> {
        read_anchor(&self.meta)
    }

    /// The segment files in the archive directory, in seq order (empty without one).
    pub fn segments(&self) -> Result<Vec<ArchivedSegment>, StoreError> {
        match &self.archive_dir {
            Some(dir) => list_segments(dir),
            None => Ok(Vec::new()),
        }
    }

    /// Moves the oldest entries beyond the newest `keep_in_store` (at least 1) into one new
    /// segment file of at most [`SEGMENT_ENTRIES`], and returns it; `None` when nothing is
    /// due. Entries are due once a tenth of `keep_in_store` (capped at [`SEGMENT_ENTRIES`])
    /// has piled up beyond it, so a busy log does not leave a trail of tiny files. Call it
    /// until it returns `None`. Fails, moving nothing, when the entries to move do not
    /// continue the chain from the anchor.
    pub async fn archive(&self, keep_in_store: u64) -> Result<Option<ArchivedSegment>, StoreError> {
        let dir = self
            .archive_dir
            .as_deref()
            .ok_or_else(|| StoreError::Backend("the audit log was opened without an archive directory".into()))?;
        let _running = self.archiving.lock().await;
        let anchor = self.anchor()?;
        if let Some(segment) = self.adopt_finished_segment(dir, &anchor).await? {
            return Ok(Some(segment));
        }
        let newest = self.tail.lock().unwrap_or_else(PoisonError::into_inner).seq;
        let keep = keep_in_store.max(1);
        let batch = (keep / 10).clamp(1, SEGMENT_ENTRIES);
        let through = newest.saturating_sub(keep);
        if through < anchor.seq + batch {
            self.remove_archived(anchor.seq)?;
            return Ok(None);
        }
        let first = anchor.seq + 1;
        let last = through.min(anchor.seq + SEGMENT_ENTRIES);
        let mut verifier = Verifier::after(anchor.seq, &anchor.hash);
        let mut lines = Vec::new();
        for item in self.tree.range(first.to_be_bytes()..=last.to_be_bytes()) {
            let (_, value) = item?;
            verifier
                .push(&decode(&value)?)
                .map_err(|e| StoreError::Backend(format!("not archiving a broken audit chain: {e}")))?;
            lines.extend_from_slice(&value);
            lines.push(b'\n');
        }
        let moved = verifier
            .finish()
            .map_err(|e| StoreError::Backend(format!("not archiving a broken audit chain: {e}")))?;
        if moved.entries != last {
            return Err(StoreError::Backend(format!(
                "not archiving a broken audit chain: entry {} is missing",
                moved.entries + 1
            )));
        }
        let path = write_segment(dir, first, last, &lines)?;
        self.set_anchor(&ArchiveAnchor {
            seq: last,
            hash: moved.last_hash,
        })
        .await?;
        self.remove_archived(last)?;
        Ok(Some(ArchivedSegment { first, last, path }))
    }

    /// Finishes a run that wrote its segment but stopped before moving the anchor.
    async fn adopt_finished_segment(
        &self,
        dir: &Path,
        anchor: &ArchiveAnchor,
    ) -> Result<Option<ArchivedSegment>, StoreError> {
        let Some(segment) = list_segments(dir)?.into_iter().find(|s| s.first == anchor.seq + 1) else {
            return Ok(None);
        };
        let stored = self.tree.get(segment.last.to_be_bytes())?.ok_or_else(|| {
            StoreError::Backend(format!("audit entry {} is neither archived nor stored", segment.last))
        })?;
        let file_last = read_lines(&segment.path, segment.last - segment.first, 1)?;
        if file_last.first().map(Vec::as_slice) != Some(stored.as_ref()) {
            return Err(StoreError::Backend(format!(
                "archive segment {} does not end with stored entry {}",
                segment.path.display(),
                segment.last
            )));
        }
        let hash = decode(&stored)?.hash;
        tracing::info!(
            first = segment.first,
            last = segment.last,
            "adopting an audit segment written before a restart"
        );
        self.set_anchor(&ArchiveAnchor {
            seq: segment.last,
            hash,
        })
        .await?;
        self.remove_archived(segment.last)?;
        Ok(Some(segment))
    }

    async fn set_anchor(&self, anchor: &ArchiveAnchor) -> Result<(), StoreError> {
        self.meta.insert(ANCHOR_KEY, serde_json::to_vec(anchor)?)?;
        self.store.durable().await
    }

    /// Removes entries at or below `through` from the tree (they are in segment files).
    fn remove_archived(&self, through: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for key in self.tree.range(..=through.to_be_bytes()).keys() {
            batch.remove(key?);
        }
        Ok(self.tree.apply_batch(batch)?)
    }

    /// Up to `limit` archived entries from seq `first` on: from the segment holding it, or the
    /// next one present. With no segment at or after `first` (files removed) the tree's
    /// entries follow, and verification reports the gap.
    fn archived_entries(&self, first: u64, limit: usize, anchor: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let dir = self.archive_dir.as_deref().ok_or_else(|| {
            StoreError::Backend(format!(
                "audit entries up to {anchor} are archived, and the log was opened without its archive directory"
            ))
        })?;
        match list_segments(dir)?.into_iter().find(|s| s.last >= first) {
            Some(segment) => {
                let start = first.max(segment.first);
                let skip = start - segment.first;
                read_lines(&segment.path, skip, limit)?
                    .iter()
                    .zip(skip + 1..)
                    .map(|(line, number)| {
                        decode(line).map_err(|e| {
                            StoreError::Backend(format!(
                                "audit archive {} line {number} is not an audit entry (altered?): {e}",
                                segment.path.display()
                            ))
                        })
                    })
                    .collect()
            }
            None => self.stored_entries(anchor + 1, limit),
        }
    }

    fn stored_entries(&self, first: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.tree
            .range(first.to_be_bytes()..)
            .take(limit)
            .map(|item| decode(&item?.1))
            .collect()
    }

    fn append_now(&self, event: &AuditEvent, at: OffsetDateTime) -> Result<AuditEntry, StoreError> {
        // Everything that does not depend on the tail is built before taking the lock.
        let mut entry = AuditEntry {
            seq: 0,
            at: at.to_offset(UtcOffset::UTC),
            event: event.clone(),
            prev_hash: String::new(),
            hash: String::new(),
        };
        // A panic while holding the lock cannot leave the tail half-updated: it is assigned
        // only after a successful insert, whole. So a poisoned lock is still a valid tail.
        let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            entry.seq = tail
                .seq
                .checked_add(1)
                .ok_or(StoreError::Backend("audit log sequence exhausted".into()))?;
            entry.prev_hash.clone_from(&tail.hash);
            let line = seal(&mut entry)?;
            let key = entry.seq.to_be_bytes();
            if self
                .tree
                .compare_and_swap(key, None as Option<&[u8]>, Some(line))?
                .is_ok()
            {
                tail.seq = entry.seq;
                tail.hash.clone_from(&entry.hash);
                return Ok(entry);
            }
            // Another log on this database took the seq: continue after its newest entry.
            let newer = read_tail(&self.tree)?;
            if newer.seq < entry.seq {
                return Err(StoreError::Backend(format!(
                    "audit entry {} exists but the log ends at {}",
                    entry.seq, newer.seq
                )));
            }
            tracing::warn!(seq = entry.seq, "audit seq taken by another writer; appending after it");
            *tail = newer;
        }
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> StoreError {
    StoreError::Backend(format!("audit archive {}: {e}", path.display()))
}

fn read_anchor(meta: &sled::Tree) -> Result<ArchiveAnchor, StoreError> {
    Ok(match meta.get(ANCHOR_KEY)? {
        Some(bytes) => serde_json::from_slice(&bytes)?,
        None => ArchiveAnchor {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        },
    })
}

fn segment_name(first: u64, last: u64) -> String {
    format!("audit-{first:020}-{last:020}.jsonl")
}

/// The seq range in a segment's file name; `None` for any other file.
fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let range = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    let (first, last) = range.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(first) || !digits(last) {
        return None;
    }
    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
    (first >= 1 && first <= last).then_some((first, last))
}

fn list_segments(dir: &Path) -> Result<Vec<ArchivedSegment>, StoreError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, &e))? {
        let path = entry.map_err(|e| io_error(dir, &e))?.path();
        let Some((first, last)) = path.file_name().and_then(|n| n.to_str()).and_then(parse_segment_name) else {
            continue;
        };
        segments.push(ArchivedSegment { first, last, path });
    }
    segments.sort_by_key(|s| (s.first, s.last));
    Ok(segments)
}

/// Writes a complete segment under its final name (module docs, step 1).
fn write_segment(dir: &Path, first: u64, last: u64, lines: &[u8]) -> Result<PathBuf, StoreError> {
    let path = dir.join(segment_name(first, last));
    let tmp = path.with_extension("jsonl.tmp");
    let mut file = fs::File::create(&tmp).map_err(|e| io_error(&tmp, &e))?;
    file.write_all(lines)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&tmp, &e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| io_error(&path, &e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, &e))?;
    Ok(path)
}

/// Up to `limit` lines of a segment after skipping `skip`, without their line ends.
fn read_lines(path: &Path, skip: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
    let file = fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let mut reader = BufReader::new(file);
    let mut lines = Vec::new();
    let mut index = 0u64;
    let mut line = Vec::new();
    while lines.len() < limit {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(|e| io_error(path, &e))? == 0 {
            break;
        }
        if index >= skip {
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            lines.push(std::mem::take(&mut line));
        }
        index += 1;
    }
    Ok(lines)
}

fn read_tail(tree: &sled::Tree) -> Result<Tail, StoreError> {
    Ok(match tree.last()? {
        None => Tail {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        },
        Some((_, value)) => {
            let entry = decode(&value)?;
            Tail {
                seq: entry.seq,
                hash: entry.hash,
            }
        }
    })
}

fn decode(value: &[u8]) -> Result<AuditEntry, StoreError> {
    Ok(serde_json::from_slice(value)?)
}

#[async_trait]
impl AuditLog for SledAuditLog {
    async fn append(&self, event: &AuditEvent, at: OffsetDateTime) -> Result<AuditEntry, StoreError> {
        self.append_now(event, at)
    }

    async fn append_durable(&self, event: &AuditEvent, at: OffsetDateTime) -> Result<AuditEntry, StoreError> {
        let entry = self.append_now(event, at)?;
        self.store.durable().await?;
        Ok(entry)
    }

    async fn entries(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = limit.min(MAX_PAGE);
        let Some(first) = after_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let anchor = self.anchor()?.seq;
        if first <= anchor {
            return self.archived_entries(first, limit, anchor);
        }
        self.stored_entries(first, limit)
    }

    async fn len(&self) -> Result<u64, StoreError> {
        let stored = match self.tree.last()? {
            None => 0,
            Some((key, _)) => {
                let seq: [u8; 8] = key
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Backend("audit log key is not 8 bytes".into()))?;
                u64::from_be_bytes(seq)
            }
        };
        Ok(stored.max(self.anchor()?.seq))
    }

    async fn last(&self) -> Result<Option<AuditEntry>, StoreError> {
        let len = self.len().await?;
        Ok(self.entries(len.saturating_sub(1), 1).await?.pop())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::macros::datetime;

    use super::*;
    use crate::audit::{AuditError, AuditKind, ChainError, ChainSummary, export_jsonl, verify_jsonl, verify_store};

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn event(n: u64) -> AuditEvent {
        AuditEvent::new(AuditKind::Issuance, "est-user:default/alice", format!("{n:032X}"))
            .detail("endpoint", "default")
            .detail("profile", "device")
    }

    const AT: OffsetDateTime = datetime!(2026-05-01 12:00:00 UTC);

    async fn append_n(log: &dyn AuditLog, n: u64) {
        for i in 0..n {
            log.append(&event(i), AT + time::Duration::milliseconds(i as i64))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn append_assigns_seq_links_and_returns_what_is_stored() {
        let (_dir, store) = store();
        let log = SledAuditLog::open(&store).unwrap();
        assert_eq!((log.len().await.unwrap(), log.last().await.unwrap()), (0, None));
        assert!(log.is_empty().await.unwrap());
        // A local time is stored in UTC.
        let local = datetime!(2026-05-01 14:00:00.5 +02:00);
        let first = log.append(&event(1), local).await.unwrap();
        let second = log.append_durable(&event(2), AT).await.unwrap();
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!(first.at, datetime!(2026-05-01 12:00:00.5 UTC));
        assert_eq!(first.at.offset(), UtcOffset::UTC);
        assert_eq!(first.prev_hash, GENESIS_HASH);
        assert_eq!(second.prev_hash, first.hash);
        assert_eq!(log.entries(0, 10).await.unwrap(), vec![first, second.clone()]);
        assert_eq!(log.len().await.unwrap(), 2);
        assert!(!log.is_empty().await.unwrap());
        assert_eq!(log.last().await.unwrap(), Some(second));
    }

    #[tokio::test]
    async fn entries_pages_in_seq_order() {
        let (_dir, store) = store();
        let log = SledAuditLog::open(&store).unwrap();
        append_n(&log, 1200).await;
        /// Name, after_seq, limit, and the first and last seq expected.
        type Case = (&'static str, u64, usize, Option<(u64, u64)>);
        let cases: [Case; 7] = [
            ("from_start", 0, 3, Some((1, 3))),
            ("middle", 500, 5, Some((501, 505))),
            ("limit_capped_at_max_page", 0, 5000, Some((1, 1000))),
            ("rest_after_a_full_page", 1000, 1000, Some((1001, 1200))),
            ("after_the_end", 1200, 10, None),
            ("after_u64_max", u64::MAX, 10, None),
            ("zero_limit", 0, 0, None),
        ];
        for (case, after, limit, want) in cases {
            let page = log.entries(after, limit).await.unwrap();
            let seqs: Vec<u64> = page.iter().map(|e| e.seq).collect();
            let want: Vec<u64> = want.map_or(Vec::new(), |(a, b)| (a..=b).collect());
            assert_eq!(seqs, want, "case {case}");
        }
    }

    /// 8 tasks × 100 appends on a multi-threaded runtime: every seq once, a valid chain.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_keep_a_valid_chain() {
        let (_dir, store) = store();
        let log: Arc<dyn AuditLog> = Arc::new(SledAuditLog::open(&store).unwrap());
        let tasks: Vec<_> = (0..8u64)
            .map(|task| {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    for i in 0..100 {
                        log.append(&event(task * 1000 + i), AT).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let summary = verify_store(log.as_ref()).await.unwrap();
        assert_eq!(summary.entries, 800);
        assert_eq!(log.len().await.unwrap(), 800);
        assert_eq!(Some(summary.last_hash), log.last().await.unwrap().map(|e| e.hash));
    }

    /// Two logs on one database (which the daemon should not open, but must not fork the
    /// chain): each finds the other's entries and links after them.
    #[tokio::test]
    async fn two_logs_on_one_database_do_not_fork_the_chain() {
        let (_dir, store) = store();
        let a = SledAuditLog::open(&store).unwrap();
        let b = SledAuditLog::open(&store).unwrap();
        for i in 0..10 {
            let log = if i % 3 == 0 { &a } else { &b };
            let entry = log.append(&event(i), AT).await.unwrap();
            assert_eq!(entry.seq, i + 1);
        }
        assert_eq!(verify_store(&a).await.unwrap().entries, 10);
    }

    #[tokio::test]
    async fn reopening_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let store = SledStore::open(dir.path()).unwrap();
            let log = SledAuditLog::open(&store).unwrap();
            append_n(&log, 2).await;
            log.append_durable(&event(3), AT).await.unwrap()
        };
        // sled releases its file lock when its last background thread lets go of the
        // database, which can trail the drop above by a moment.
        let mut reopened = SledStore::open(dir.path());
        for _ in 0..50 {
            if reopened.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            reopened = SledStore::open(dir.path());
        }
        let store = reopened.unwrap();
        let log = SledAuditLog::open(&store).unwrap();
        assert_eq!(log.last().await.unwrap().as_ref(), Some(&before));
        let next = log.append(&event(4), AT).await.unwrap();
        assert_eq!((next.seq, next.prev_hash.as_str()), (4, before.hash.as_str()));
        assert_eq!(
            verify_store(&log).await.unwrap(),
            ChainSummary {
                entries: 4,
                last_hash: next.hash
            }
        );
    }

    #[tokio::test]
    async fn export_verifies_like_the_store() {
        let (_dir, store) = store();
        let log = SledAuditLog::open(&store).unwrap();
        append_n(&log, 1500).await;
        let mut file = Vec::new();
        assert_eq!(export_jsonl(&log, 0, &mut file).await.unwrap(), 1500);
        assert_eq!(
            verify_jsonl(file.as_slice()).unwrap(),
            verify_store(&log).await.unwrap()
        );
        // The file holds the stored bytes: each line is the tree's value.
        let first_line = file.split(|b| *b == b'\n').next().unwrap();
        assert_eq!(
            store
                .db()
                .open_tree(TREE)
                .unwrap()
                .get(1u64.to_be_bytes())
                .unwrap()
                .unwrap(),
            first_line
        );
        let mut tail = Vec::new();
        assert_eq!(export_jsonl(&log, 1490, &mut tail).await.unwrap(), 10);
    }

    /// Tampering with the tree directly (what someone with the data directory could do) is
    /// found by walking the store.
    #[tokio::test]
    async fn verify_store_finds_tampering() {
        type Tamper = fn(&sled::Tree);
        let cases: [(&str, Tamper, Result<u64, ChainError>); 6] = [
            ("good_untouched", |_| {}, Ok(2100)),
            (
                "bad_value_edited",
                |tree| {
                    let line = tree.get(1500u64.to_be_bytes()).unwrap().unwrap();
                    let edited = String::from_utf8(line.to_vec()).unwrap().replace("alice", "mallory");
                    tree.insert(1500u64.to_be_bytes(), edited.as_bytes()).unwrap();
                },
                Err(ChainError::Altered { seq: 1500 }),
            ),
            (
                "bad_removed_on_a_page_boundary",
                |tree| {
                    tree.remove(1001u64.to_be_bytes()).unwrap();
                },
                Err(ChainError::Missing {
                    expected_seq: 1001,
                    found_seq: 1002,
                }),
            ),
            (
                "bad_first_removed",
                |tree| {
                    tree.remove(1u64.to_be_bytes()).unwrap();
                },
                Err(ChainError::Missing {
                    expected_seq: 1,
                    found_seq: 2,
                }),
            ),
            (
                "bad_two_values_swapped",
                |tree| {
                    let a = tree.get(7u64.to_be_bytes()).unwrap().unwrap();
                    let b = tree.get(8u64.to_be_bytes()).unwrap().unwrap();
                    tree.insert(7u64.to_be_bytes(), b).unwrap();
                    tree.insert(8u64.to_be_bytes(), a).unwrap();
                },
                Err(ChainError::OutOfOrder { seq: 8 }),
            ),
            (
                "bad_old_entry_copied_to_a_page_end",
                |tree| {
                    let old = tree.get(5u64.to_be_bytes()).unwrap().unwrap();
                    tree.insert(1000u64.to_be_bytes(), old).unwrap();
                },
                Err(ChainError::OutOfOrder { seq: 5 }),
            ),
        ];
        for (case, tamper, want) in cases {
            let (_dir, store) = store();
            let log = SledAuditLog::open(&store).unwrap();
            append_n(&log, 2100).await;
            tamper(&store.db().open_tree(TREE).unwrap());
            let tampered = want.is_err();
            match (verify_store(&log).await, want) {
                (Ok(summary), Ok(count)) => assert_eq!(summary.entries, count, "case {case}"),
                (Err(AuditError::Chain(got)), Err(want)) => assert_eq!(got, want, "case {case}"),
                (got, want) => panic!("case {case}: want {want:?}, got {got:?}"),
            }
            // Exporting a tampered store ends too (it never pages backwards).
            let exported = export_jsonl(&log, 0, &mut Vec::new()).await;
            assert!(exported.is_ok() || tampered, "case {case}: {exported:?}");
        }
    }

    /// Every line of every segment, then the tree: the export an operator gets.
    async fn export_all(log: &SledAuditLog) -> Vec<u8> {
        let mut out = Vec::new();
        export_jsonl(log, 0, &mut out).await.unwrap();
        out
    }

    fn tree_len(store: &SledStore) -> usize {
        store.db().open_tree(TREE).unwrap().len()
    }

    #[tokio::test]
    async fn archiving_moves_old_entries_to_segments_and_reads_stay_whole() {
        let (dir, store) = store();
        let archive_dir = dir.path().join("audit");
        let log = SledAuditLog::open_with_archive(&store, &archive_dir).unwrap();
        append_n(&log, 25_500).await;
        let before = export_all(&log).await;
        let summary = verify_store(&log).await.unwrap();

        let mut moved = Vec::new();
        while let Some(segment) = log.archive(3_000).await.unwrap() {
            moved.push((segment.first, segment.last));
        }
        assert_eq!(moved, vec![(1, 10_000), (10_001, 20_000), (20_001, 22_500)]);
        assert_eq!(tree_len(&store), 3_000);
        let anchor = log.anchor().unwrap();
        assert_eq!(anchor.seq, 22_500);
        // The files hold the stored lines: the whole export is byte for byte what it was.
        assert_eq!(export_all(&log).await, before);
        let mut concatenated = Vec::new();
        for segment in log.segments().unwrap() {
            concatenated.extend(fs::read(&segment.path).unwrap());
        }
        assert_eq!(concatenated, before[..concatenated.len()]);
        assert_eq!(verify_jsonl(concatenated.as_slice()).unwrap().last_hash, anchor.hash);
        assert_eq!(verify_store(&log).await.unwrap(), summary);
        assert_eq!(log.len().await.unwrap(), 25_500);
        // Pages that cross a segment end are short, never wrong.
        let page = log.entries(9_998, 10).await.unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![9_999, 10_000]);
        let page = log.entries(22_499, 3).await.unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![22_500]);

        // Appending continues the chain; a reopened log reads the same.
        let next = log.append(&event(1), AT).await.unwrap();
        assert_eq!(next.seq, 25_501);
        assert_eq!(log.last().await.unwrap(), Some(next.clone()));
        drop(log);
        let reopened = SledAuditLog::open_with_archive(&store, &archive_dir).unwrap();
        assert_eq!(verify_store(&reopened).await.unwrap().last_hash, next.hash);
        // Nothing more is due until a tenth of what the store keeps has piled up beyond it.
        assert_eq!(reopened.archive(3_001).await.unwrap(), None);
        append_n(&reopened, 298).await;
        assert_eq!(reopened.archive(3_000).await.unwrap(), None);
        append_n(&reopened, 1).await;
        let segment = reopened.archive(3_000).await.unwrap().unwrap();
        assert_eq!((segment.first, segment.last), (22_501, 22_800));
        // Without its archive directory the log refuses to pretend the archived part is gone.
        let blind = SledAuditLog::open(&store).unwrap();
        assert!(blind.entries(0, 10).await.is_err());
        assert_eq!(blind.len().await.unwrap(), 25_800);
        assert!(blind.archive(10).await.is_err());
    }

    /// Step 1 of an archive run for entries 1 to 4000: their segment, complete.
    fn segment_of_first_4000(store: &SledStore, dir: &Path) {
        let tree = store.db().open_tree(TREE).unwrap();
        let mut lines = Vec::new();
        for item in tree.range(1u64.to_be_bytes()..=4_000u64.to_be_bytes()) {
            lines.extend_from_slice(&item.unwrap().1);
            lines.push(b'\n');
        }
        write_segment(dir, 1, 4_000, &lines).unwrap();
    }

    /// The archive run stopped at each point between its steps (module docs): the next run
    /// (or the reads in between) lose and duplicate nothing.
    #[tokio::test]
    async fn archiving_recovers_from_an_interrupted_run() {
        type Interrupt = fn(&SledStore, &Path);
        let cases: [(&str, Interrupt); 3] = [
            ("stopped_while_writing_the_file", |_, dir| {
                fs::write(dir.join(format!("{}.tmp", segment_name(1, 4_000))), b"half a line").unwrap();
            }),
            ("stopped_before_the_anchor", |store, dir| {
                segment_of_first_4000(store, dir)
            }),
            ("stopped_before_removing_entries", |store, dir| {
                segment_of_first_4000(store, dir);
                let tree = store.db().open_tree(TREE).unwrap();
                let last = decode(&tree.get(4_000u64.to_be_bytes()).unwrap().unwrap()).unwrap();
                let anchor = ArchiveAnchor {
                    seq: 4_000,
                    hash: last.hash,
                };
                let meta = store.db().open_tree(META_TREE).unwrap();
                meta.insert(ANCHOR_KEY, serde_json::to_vec(&anchor).unwrap()).unwrap();
            }),
        ];
        for (case, interrupt) in cases {
            let (dir, store) = store();
            let archive_dir = dir.path().join("audit");
            fs::create_dir_all(&archive_dir).unwrap();
            let log = SledAuditLog::open(&store).unwrap();
            append_n(&log, 5_000).await;
            let before = export_all(&log).await;
            drop(log);
            interrupt(&store, &archive_dir);
            let log = SledAuditLog::open_with_archive(&store, &archive_dir).unwrap();
            assert_eq!(export_all(&log).await, before, "case {case}: reads before the next run");
            while log.archive(1_000).await.unwrap().is_some() {}
            assert_eq!(export_all(&log).await, before, "case {case}");
            assert_eq!(verify_store(&log).await.unwrap().entries, 5_000, "case {case}");
            assert_eq!(tree_len(&store), 1_000, "case {case}");
            let names: Vec<String> = fs::read_dir(&archive_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert!(names.iter().all(|n| !n.ends_with(".tmp")), "case {case}: {names:?}");
            let ranges: Vec<(u64, u64)> = log.segments().unwrap().iter().map(|s| (s.first, s.last)).collect();
            assert_eq!(ranges.first().map(|r| r.0), Some(1), "case {case}");
            assert_eq!(ranges.last().map(|r| r.1), Some(4_000), "case {case}");
        }
    }

    /// Tampering with a segment file is found by walking the log, as in the tree; a tampered
    /// tree is never archived.
    #[tokio::test]
    async fn tampered_segments_are_found_and_broken_chains_not_archived() {
        type Tamper = fn(&Path);
        let cases: [(&str, Tamper, ChainError); 3] = [
            (
                "bad_segment_line_edited",
                |dir| {
                    let path = dir.join(segment_name(1, 2_000));
                    let text = fs::read_to_string(&path).unwrap();
                    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
                    lines[6] = lines[6].replace("alice", "mallory");
                    fs::write(&path, lines.join("\n") + "\n").unwrap();
                },
                ChainError::Altered { seq: 7 },
            ),
            (
                "bad_segment_removed",
                |dir| fs::remove_file(dir.join(segment_name(2_001, 4_000))).unwrap(),
                ChainError::Missing {
                    expected_seq: 2_001,
                    found_seq: 4_001,
                },
            ),
            (
                "bad_first_segment_removed",
                |dir| fs::remove_file(dir.join(segment_name(1, 2_000))).unwrap(),
                ChainError::Missing {
                    expected_seq: 1,
                    found_seq: 2_001,
                },
            ),
        ];
        for (case, tamper, want) in cases {
            let (dir, store) = store();
            let archive_dir = dir.path().join("audit");
            let log = SledAuditLog::open_with_archive(&store, &archive_dir).unwrap();
            append_n(&log, 5_000).await;
            assert_eq!(log.archive(3_000).await.unwrap().map(|s| s.last), Some(2_000));
            assert_eq!(log.archive(1_000).await.unwrap().map(|s| s.last), Some(4_000));
            tamper(&archive_dir);
            match verify_store(&log).await {
                Err(AuditError::Chain(got)) => assert_eq!(got, want, "case {case}"),
                other => panic!("case {case}: {other:?}"),
            }
        }

        let (dir, store) = store();
        let archive_dir = dir.path().join("audit");
        let log = SledAuditLog::open_with_archive(&store, &archive_dir).unwrap();
        append_n(&log, 3_000).await;
        let tree = store.db().open_tree(TREE).unwrap();
        let line = tree.get(1_500u64.to_be_bytes()).unwrap().unwrap();
        let edited = String::from_utf8(line.to_vec()).unwrap().replace("alice", "mallory");
        tree.insert(1_500u64.to_be_bytes(), edited.as_bytes()).unwrap();
        let refused = log.archive(100).await.unwrap_err().to_string();
        assert!(refused.contains("entry 1500 was altered"), "{refused}");
        assert!(log.segments().unwrap().is_empty());
        assert_eq!(log.anchor().unwrap().seq, 0);
    }

    #[test]
    fn segment_names_cases() {
        let cases = [
            (
                "good",
                "audit-00000000000000000001-00000000000000010000.jsonl",
                Some((1, 10_000)),
            ),
            (
                "good_one_entry",
                "audit-00000000000000000005-00000000000000000005.jsonl",
                Some((5, 5)),
            ),
            (
                "bad_tmp",
                "audit-00000000000000000001-00000000000000010000.jsonl.tmp",
                None,
            ),
            ("bad_short_digits", "audit-1-10000.jsonl", None),
            (
                "bad_reversed",
                "audit-00000000000000000009-00000000000000000005.jsonl",
                None,
            ),
            (
                "bad_zero_first",
                "audit-00000000000000000000-00000000000000000005.jsonl",
                None,
            ),
            (
                "bad_sign",
                "audit-+0000000000000000001-00000000000000000005.jsonl",
                None,
            ),
            ("bad_other_file", "README", None),
        ];
        for (case, name, want) in cases {
            assert_eq!(parse_segment_name(name), want, "case {case}");
        }
        assert_eq!(parse_segment_name(&segment_name(42, 43)), Some((42, 43)), "round trip");
    }
}
