//! [`ApprovalStore`] on sled: `approvals` (key -> record) and the index `approvals_pending`
//! (created-at || key, for listing the queue oldest first). Every state change is a
//! compare-and-swap of the whole record; the index follows it (a stale index entry is skipped
//! on read and removed on the next change; a writer whose compare-and-swap lost takes back the
//! entry it wrote unless the winning record is pending under that same entry), and each change
//! is durable before returning.

use async_trait::async_trait;
use certgate_core::Serial;
use time::OffsetDateTime;

use crate::StoreError;
use crate::approvals::{ApprovalFilter, ApprovalKey, ApprovalRecord, ApprovalState, ApprovalStore};
use crate::sled_backend::{SledStore, expiry_prefix};

const MAX_LIST: usize = 1000;

/// The approval trees, opened with the database.
#[derive(Debug)]
pub(crate) struct ApprovalTrees {
    /// `protocol NUL endpoint NUL fingerprint` -> record (JSON).
    pub(crate) approvals: sled::Tree,
    /// created-at (8 bytes, big-endian) || record key -> empty, for pending records.
    pub(crate) pending: sled::Tree,
}

impl ApprovalTrees {
    /// Opens (or creates) the trees in `db`.
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            approvals: db.open_tree("approvals")?,
            pending: db.open_tree("approvals_pending")?,
        })
    }
}

fn record_key(key: &ApprovalKey) -> Vec<u8> {
    let mut bytes = key.protocol.as_str().as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(key.endpoint.as_str().as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(key.fingerprint().as_bytes());
    bytes
}

fn pending_key(record: &ApprovalRecord) -> Vec<u8> {
    let mut bytes = expiry_prefix(record.created_at).to_vec();
    bytes.extend_from_slice(&record_key(&record.key));
    bytes
}

/// After a writer's compare-and-swap of record `id` lost, takes back the pending-index entry
/// `index` it wrote first, unless the stored record (the winner's) is pending under that same
/// entry: two writers of one key in the same second write the same entry, and it is the
/// winner's as much as the loser's.
fn release_lost_index(trees: &ApprovalTrees, id: &[u8], index: &[u8]) -> Result<(), StoreError> {
    let stored_owns_it = || -> Result<bool, StoreError> {
        let Some(bytes) = trees.approvals.get(id)? else {
            return Ok(false);
        };
        let stored: ApprovalRecord = serde_json::from_slice(&bytes)?;
        Ok(stored.state == ApprovalState::Pending && pending_key(&stored) == index)
    };
    if stored_owns_it()? {
        return Ok(());
    }
    trees.pending.remove(index)?;
    // A record stored under the same entry between the check and the removal: its entry back.
    if stored_owns_it()? {
        trees.pending.insert(index, &[])?;
    }
    Ok(())
}

impl SledStore {
    /// Reads, changes and compare-and-swaps one record, keeping the pending index in step.
    fn change_approval(
        &self,
        key: &ApprovalKey,
        change: impl FnOnce(&mut ApprovalRecord) -> Result<(), StoreError>,
    ) -> Result<ApprovalRecord, StoreError> {
        let trees = self.approval_trees();
        let id = record_key(key);
        let Some(old) = trees.approvals.get(&id)? else {
            return Err(StoreError::NotFound);
        };
        let mut record: ApprovalRecord = serde_json::from_slice(&old)?;
        let was_pending = record.state == ApprovalState::Pending;
        let old_index = pending_key(&record);
        change(&mut record)?;
        record.version += 1;
        if trees
            .approvals
            .compare_and_swap(&id, Some(old), Some(serde_json::to_vec(&record)?))?
            .is_err()
        {
            return Err(StoreError::Conflict("the approval request changed meanwhile"));
        }
        if was_pending && record.state != ApprovalState::Pending {
            trees.pending.remove(old_index)?;
        }
        Ok(record)
    }
}

#[async_trait]
impl ApprovalStore for SledStore {
    async fn create_approval(&self, record: &ApprovalRecord) -> Result<(), StoreError> {
        if record.state != ApprovalState::Pending {
            return Err(StoreError::Conflict("a new approval request must be pending"));
        }
        let trees = self.approval_trees();
        // Index first: a crash between the two leaves an index entry without a record, which
        // readers skip; never a pending record missing from the queue.
        trees.pending.insert(pending_key(record), &[])?;
        if trees
            .approvals
            .compare_and_swap(
                record_key(&record.key),
                None::<&[u8]>,
                Some(serde_json::to_vec(record)?),
            )?
            .is_err()
        {
            release_lost_index(trees, &record_key(&record.key), &pending_key(record))?;
            return Err(StoreError::Conflict("an approval request with this key exists"));
        }
        self.durable().await
    }

    async fn approval(&self, key: &ApprovalKey) -> Result<ApprovalRecord, StoreError> {
        match self.approval_trees().approvals.get(record_key(key))? {
            Some(bytes) => Ok(serde_json::from_slice(&bytes)?),
            None => Err(StoreError::NotFound),
        }
    }

    async fn approvals(&self, filter: &ApprovalFilter, limit: usize) -> Result<Vec<ApprovalRecord>, StoreError> {
        let limit = limit.clamp(1, MAX_LIST);
        let trees = self.approval_trees();
        let mut found = Vec::new();
        if filter.state == Some(ApprovalState::Pending) {
            for entry in trees.pending.iter() {
                let (index, _) = entry?;
                let Some(id) = index.get(8..) else { continue };
                let Some(bytes) = trees.approvals.get(id)? else {
                    continue;
                };
                let record: ApprovalRecord = serde_json::from_slice(&bytes)?;
                // A stale entry (the record was decided or renewed since) is skipped.
                if pending_key(&record).as_slice() != &*index || !filter.matches(&record) {
                    continue;
                }
                found.push(record);
                if found.len() >= limit {
                    break;
                }
            }
        } else {
            for entry in trees.approvals.iter() {
                let (_, bytes) = entry?;
                let record: ApprovalRecord = serde_json::from_slice(&bytes)?;
                if filter.matches(&record) {
                    found.push(record);
                    if found.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(found)
    }

    async fn approve(&self, key: &ApprovalKey, by: &str, at: OffsetDateTime) -> Result<ApprovalRecord, StoreError> {
        let record = self.change_approval(key, |record| {
            if record.state != ApprovalState::Pending {
                return Err(StoreError::Conflict("only a pending request can be approved"));
            }
            record.state = ApprovalState::Approved;
            record.decided_at = Some(at);
            record.decided_by = Some(by.to_owned());
            Ok(())
        })?;
        self.durable().await?;
        Ok(record)
    }

    async fn deny(
        &self,
        key: &ApprovalKey,
        by: &str,
        reason: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<ApprovalRecord, StoreError> {
        let record = self.change_approval(key, |record| {
            if record.state != ApprovalState::Pending {
                return Err(StoreError::Conflict("only a pending request can be denied"));
            }
            record.state = ApprovalState::Denied;
            record.decided_at = Some(at);
            record.decided_by = Some(by.to_owned());
            record.reason = reason.map(str::to_owned);
            Ok(())
        })?;
        self.durable().await?;
        Ok(record)
    }

    async fn mark_issued(&self, key: &ApprovalKey, serial: &Serial) -> Result<ApprovalRecord, StoreError> {
        let record = self.change_approval(key, |record| {
            if record.state != ApprovalState::Approved {
                return Err(StoreError::Conflict("only an approved request can be issued"));
            }
            record.state = ApprovalState::Issued;
            record.certificate = Some(serial.clone());
            Ok(())
        })?;
        self.durable().await?;
        Ok(record)
    }

    async fn renew_approval(&self, record: &ApprovalRecord) -> Result<(), StoreError> {
        if record.state != ApprovalState::Pending || record.version < 2 {
            return Err(StoreError::Conflict(
                "a renewed request must be pending, with the next version",
            ));
        }
        let trees = self.approval_trees();
        let id = record_key(&record.key);
        let Some(old) = trees.approvals.get(&id)? else {
            return Err(StoreError::NotFound);
        };
        let stored: ApprovalRecord = serde_json::from_slice(&old)?;
        if stored.version + 1 != record.version {
            return Err(StoreError::Conflict("the approval request changed meanwhile"));
        }
        if !matches!(stored.state, ApprovalState::Issued | ApprovalState::Approved) {
            return Err(StoreError::Conflict(
                "only an issued or approved request can be renewed",
            ));
        }
        trees.pending.insert(pending_key(record), &[])?;
        if trees
            .approvals
            .compare_and_swap(&id, Some(old), Some(serde_json::to_vec(record)?))?
            .is_err()
        {
            release_lost_index(trees, &id, &pending_key(record))?;
            return Err(StoreError::Conflict("the approval request changed meanwhile"));
        }
        self.durable().await
    }

    async fn remove_approval(&self, key: &ApprovalKey) -> Result<(), StoreError> {
        let trees = self.approval_trees();
        let Some(old) = trees.approvals.remove(record_key(key))? else {
            return Err(StoreError::NotFound);
        };
        let record: ApprovalRecord = serde_json::from_slice(&old)?;
        trees.pending.remove(pending_key(&record))?;
        self.durable().await
    }
}

impl SledStore {
    /// Removes approval records that were decided (approved, denied, issued) before
    /// `decided_before`, and pending ones created before `pending_created_before`, at most a
    /// bounded batch per call; returns how many went. Decided records are found by a scan:
    /// the queue is operator-sized, and the pending index bounds the only part a client can grow.
    pub async fn sweep_approvals(
        &self,
        decided_before: OffsetDateTime,
        pending_created_before: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        const MAX_SWEEP: usize = 10_000;
        let trees = self.approval_trees();
        let mut removed = 0;
        let end = expiry_prefix(pending_created_before);
        for entry in trees.pending.range(..end.as_slice()).take(MAX_SWEEP) {
            let (index, _) = entry?;
            let id = &index[8..];
            if let Some(bytes) = trees.approvals.get(id)? {
                let record: ApprovalRecord = serde_json::from_slice(&bytes)?;
                if record.state == ApprovalState::Pending
                    && record.created_at < pending_created_before
                    && trees
                        .approvals
                        .compare_and_swap(id, Some(bytes), None as Option<&[u8]>)?
                        .is_ok()
                {
                    removed += 1;
                }
            }
            trees.pending.remove(&index)?;
        }
        let mut decided = Vec::new();
        for entry in trees.approvals.iter() {
            let (id, bytes) = entry?;
            let record: ApprovalRecord = serde_json::from_slice(&bytes)?;
            if record.state != ApprovalState::Pending && record.decided_at.is_some_and(|at| at < decided_before) {
                decided.push((id, bytes));
                if decided.len() == MAX_SWEEP {
                    break;
                }
            }
        }
        for (id, bytes) in decided {
            // Compare-and-swap: a record that changed since the scan is left for next time.
            if trees
                .approvals
                .compare_and_swap(&id, Some(bytes), None as Option<&[u8]>)?
                .is_ok()
            {
                removed += 1;
            }
        }
        if removed > 0 {
            self.durable().await?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use certgate_core::{KeyKind, Name, Protocol, RequesterId};

    use super::*;

    fn key(fingerprint: &str) -> ApprovalKey {
        ApprovalKey::new(Protocol::Est, Name::new("default").unwrap(), fingerprint).unwrap()
    }

    fn record(fingerprint: &str, created: i64) -> ApprovalRecord {
        ApprovalRecord::pending(
            key(fingerprint),
            RequesterId::new("est-user:default/alice").unwrap(),
            "CN=device".into(),
            Vec::new(),
            KeyKind::EcP256,
            vec![0x30, 0x00],
            OffsetDateTime::from_unix_timestamp(created).unwrap(),
        )
    }

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn lifecycle_pending_approved_issued_renewed() {
        let (_dir, store) = store();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        store.create_approval(&record("aa", 10)).await.unwrap();
        store.create_approval(&record("bb", 5)).await.unwrap();
        assert!(matches!(
            store.create_approval(&record("aa", 11)).await,
            Err(StoreError::Conflict(_))
        ));
        let pending = store.approvals(&ApprovalFilter::pending(), 100).await.unwrap();
        let order: Vec<&str> = pending.iter().map(|r| r.key.fingerprint()).collect();
        assert_eq!(order, ["bb", "aa"], "oldest first");

        assert!(matches!(
            store.mark_issued(&key("aa"), &Serial::from_random([1; 16])).await,
            Err(StoreError::Conflict(_))
        ));
        let approved = store.approve(&key("aa"), "operator", now).await.unwrap();
        assert_eq!((approved.state, approved.version), (ApprovalState::Approved, 2));
        assert!(matches!(
            store.approve(&key("aa"), "operator", now).await,
            Err(StoreError::Conflict(_))
        ));
        let pending = store.approvals(&ApprovalFilter::pending(), 100).await.unwrap();
        assert_eq!(pending.len(), 1);

        let serial = Serial::from_random([2; 16]);
        let issued = store.mark_issued(&key("aa"), &serial).await.unwrap();
        assert_eq!(issued.certificate.as_ref(), Some(&serial));
        assert!(matches!(
            store.mark_issued(&key("aa"), &serial).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.deny(&key("aa"), "operator", None, now).await,
            Err(StoreError::Conflict(_))
        ));

        let mut fresh = record("aa", 20);
        fresh.version = issued.version + 1;
        store.renew_approval(&fresh).await.unwrap();
        assert!(matches!(
            store.renew_approval(&fresh).await,
            Err(StoreError::Conflict(_))
        ));
        let pending = store.approvals(&ApprovalFilter::pending(), 100).await.unwrap();
        assert_eq!(pending.len(), 2);
    }

    #[tokio::test]
    async fn deny_is_final_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.create_approval(&record("cc", 1)).await.unwrap();
            let denied = store
                .deny(&key("cc"), "operator", Some("unknown device"), now)
                .await
                .unwrap();
            assert_eq!(denied.state, ApprovalState::Denied);
            assert!(matches!(
                store.approve(&key("cc"), "operator", now).await,
                Err(StoreError::Conflict(_))
            ));
        }
        let store = SledStore::open(dir.path()).unwrap();
        let record = store.approval(&key("cc")).await.unwrap();
        assert_eq!(record.state, ApprovalState::Denied);
        assert_eq!(record.reason.as_deref(), Some("unknown device"));
        assert!(
            store
                .approvals(&ApprovalFilter::pending(), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let denied = ApprovalFilter {
            state: Some(ApprovalState::Denied),
            ..ApprovalFilter::default()
        };
        assert_eq!(store.approvals(&denied, 10).await.unwrap().len(), 1);
        store.remove_approval(&key("cc")).await.unwrap();
        assert!(matches!(store.approval(&key("cc")).await, Err(StoreError::NotFound)));
        assert!(matches!(
            store.remove_approval(&key("cc")).await,
            Err(StoreError::NotFound)
        ));
    }

    /// Lists the fingerprints of the pending queue.
    async fn pending_fingerprints(store: &SledStore) -> Vec<String> {
        store
            .approvals(&ApprovalFilter::pending(), 100)
            .await
            .unwrap()
            .iter()
            .map(|r| r.key.fingerprint().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn deny_only_from_pending() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let cases = [
            ("good_pending", None, true),
            ("bad_approved", Some(ApprovalState::Approved), false),
            ("bad_issued", Some(ApprovalState::Issued), false),
            ("bad_denied", Some(ApprovalState::Denied), false),
        ];
        for (case, state, ok) in cases {
            let (_dir, store) = store();
            store.create_approval(&record("dd", 1)).await.unwrap();
            if matches!(state, Some(ApprovalState::Approved | ApprovalState::Issued)) {
                store.approve(&key("dd"), "operator", now).await.unwrap();
            }
            if state == Some(ApprovalState::Issued) {
                store
                    .mark_issued(&key("dd"), &Serial::from_random([3; 16]))
                    .await
                    .unwrap();
            }
            if state == Some(ApprovalState::Denied) {
                store.deny(&key("dd"), "operator", None, now).await.unwrap();
            }
            let before = store.approval(&key("dd")).await.unwrap();
            let result = store.deny(&key("dd"), "second operator", Some("late"), now).await;
            if ok {
                assert_eq!(result.unwrap().state, ApprovalState::Denied, "case {case}");
            } else {
                assert!(
                    matches!(result, Err(StoreError::Conflict(_))),
                    "case {case}: {result:?}"
                );
                assert_eq!(
                    store.approval(&key("dd")).await.unwrap(),
                    before,
                    "case {case}: unchanged"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_lost_create_leaves_the_winner_listed() {
        let cases = [("same_second", 7, 7), ("later_second", 7, 8), ("earlier_second", 7, 6)];
        for (case, first, second) in cases {
            let (_dir, store) = store();
            store.create_approval(&record("ee", first)).await.unwrap();
            let lost = store.create_approval(&record("ee", second)).await;
            assert!(matches!(lost, Err(StoreError::Conflict(_))), "case {case}: {lost:?}");
            let all = store.approvals(&ApprovalFilter::default(), 100).await.unwrap();
            assert_eq!(all.len(), 1, "case {case}: exactly one record");
            assert_eq!(all[0].created_at.unix_timestamp(), first, "case {case}: the winner's");
            assert_eq!(pending_fingerprints(&store).await, ["ee"], "case {case}: listed");
            assert_eq!(
                store.approval_trees().pending.len(),
                1,
                "case {case}: the loser's own entry is gone"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_creates_of_one_key_leave_it_listed() {
        let (_dir, store) = store();
        let store = std::sync::Arc::new(store);
        for round in 0..20 {
            let fingerprint = format!("ff{round}");
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let store = std::sync::Arc::clone(&store);
                    let record = record(&fingerprint, 100);
                    tokio::spawn(async move { store.create_approval(&record).await })
                })
                .collect();
            let mut created = 0;
            for task in tasks {
                match task.await.unwrap() {
                    Ok(()) => created += 1,
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            assert_eq!(created, 1, "round {round}");
            assert!(
                pending_fingerprints(&store).await.contains(&fingerprint),
                "round {round}: listed"
            );
        }
    }

    #[tokio::test]
    async fn a_lost_renewal_leaves_the_winner_listed() {
        // Two renewals of one issued record in the same second both write the same index
        // entry before their compare-and-swap; the loser's clean-up is `release_lost_index`.
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let cases = [("winner_same_entry", 30, true), ("loser_other_second", 31, false)];
        for (case, loser_created, listed_under_loser) in cases {
            let (_dir, store) = store();
            store.create_approval(&record("gg", 1)).await.unwrap();
            store.approve(&key("gg"), "operator", now).await.unwrap();
            let issued = store
                .mark_issued(&key("gg"), &Serial::from_random([4; 16]))
                .await
                .unwrap();
            let mut winner = record("gg", 30);
            winner.version = issued.version + 1;
            let mut loser = record("gg", loser_created);
            loser.version = issued.version + 1;
            let trees = store.approval_trees();
            // The loser wrote its entry, then the winner renewed, then the loser's CAS failed.
            trees.pending.insert(pending_key(&loser), &[]).unwrap();
            store.renew_approval(&winner).await.unwrap();
            release_lost_index(trees, &record_key(&loser.key), &pending_key(&loser)).unwrap();
            assert_eq!(pending_fingerprints(&store).await, ["gg"], "case {case}: listed");
            assert_eq!(
                trees.pending.contains_key(pending_key(&loser)).unwrap(),
                listed_under_loser,
                "case {case}"
            );
            assert_eq!(trees.pending.len(), 1, "case {case}: no stray entry");
        }
    }
}
