//! [`AuditLog`] on sled: one tree, `audit_log`, seq (8 bytes, big-endian) -> the entry's JSON
//! line, exactly as exported. Big-endian keys make sled's key order the seq order, so the tail
//! is the tree's last key and a page is a range scan.
//!
//! Appends are serialized by a mutex over the tail (seq and hash of the last entry), held only
//! to hash the entry and insert it. The insert is a compare-and-swap from absent, so even a
//! second [`SledAuditLog`] on the same database (which would have its own tail) cannot fork
//! the chain: it finds the seq taken, reloads the tail and links after it.

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use time::{OffsetDateTime, UtcOffset};

use crate::StoreError;
use crate::audit::{AuditEntry, AuditEvent, AuditLog, GENESIS_HASH, MAX_PAGE, seal};
use crate::sled_backend::SledStore;

const TREE: &str = "audit_log";

/// The audit log of a [`SledStore`]. Open one per store and share it (`Arc<dyn AuditLog>`).
#[derive(Debug)]
pub struct SledAuditLog {
    store: SledStore,
    tree: sled::Tree,
    tail: Mutex<Tail>,
}

/// The last entry: what the next one follows.
#[derive(Debug)]
struct Tail {
    seq: u64,
    hash: String,
}

impl SledAuditLog {
    /// Opens the log in `store` (creating its tree) and recovers the tail from its last entry.
    pub fn open(store: &SledStore) -> Result<Self, StoreError> {
        let tree = store.db().open_tree(TREE)?;
        let tail = read_tail(&tree)?;
        Ok(Self {
            store: store.clone(),
            tree,
            tail: Mutex::new(tail),
        })
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
        let Some(first) = after_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.tree
            .range(first.to_be_bytes()..)
            .take(limit.min(MAX_PAGE))
            .map(|item| decode(&item?.1))
            .collect()
    }

    async fn len(&self) -> Result<u64, StoreError> {
        let Some((key, _)) = self.tree.last()? else {
            return Ok(0);
        };
        let seq: [u8; 8] = key
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Backend("audit log key is not 8 bytes".into()))?;
        Ok(u64::from_be_bytes(seq))
    }

    async fn last(&self) -> Result<Option<AuditEntry>, StoreError> {
        self.tree.last()?.map(|(_, value)| decode(&value)).transpose()
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
}
