//! [`ScepChallengeStore`] on sled: `scep_challenges` (`endpoint NUL id` -> record, JSON) and
//! the index `scep_challenges_by_expiry` (expiry (8 bytes, big-endian) || record key, for
//! sweeping). Consuming is a compare-and-swap removal of the record; the index entry follows
//! (a stale one is skipped by the sweep).

use async_trait::async_trait;
use certgate_core::Name;
use time::OffsetDateTime;

use crate::StoreError;
use crate::scep_challenges::{ScepChallengeRecord, ScepChallengeStore, valid_challenge_id};
use crate::sled_backend::{SledStore, expiry_prefix};

const MAX_LIST: usize = 1000;

/// The SCEP challenge trees, opened with the database.
#[derive(Debug)]
pub(crate) struct ScepChallengeTrees {
    /// `endpoint NUL id` -> record (JSON).
    pub(crate) challenges: sled::Tree,
    /// expires-at (8 bytes, big-endian) || record key -> empty.
    pub(crate) by_expiry: sled::Tree,
}

impl ScepChallengeTrees {
    /// Opens (or creates) the trees in `db`.
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            challenges: db.open_tree("scep_challenges")?,
            by_expiry: db.open_tree("scep_challenges_by_expiry")?,
        })
    }
}

fn record_key(endpoint: &Name, id: &str) -> Vec<u8> {
    let mut key = endpoint.as_str().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

fn expiry_key(record: &ScepChallengeRecord) -> Vec<u8> {
    let mut key = expiry_prefix(record.expires_at).to_vec();
    key.extend_from_slice(&record_key(&record.endpoint, &record.id));
    key
}

#[async_trait]
impl ScepChallengeStore for SledStore {
    async fn create_scep_challenge(&self, record: &ScepChallengeRecord) -> Result<(), StoreError> {
        if !valid_challenge_id(&record.id) {
            return Err(StoreError::Conflict("malformed challenge id"));
        }
        let trees = self.scep_challenge_trees();
        // Index first: a crash in between leaves an index entry without a record, which the
        // sweep skips; never a record the sweep cannot find.
        trees.by_expiry.insert(expiry_key(record), &[])?;
        if trees
            .challenges
            .compare_and_swap(
                record_key(&record.endpoint, &record.id),
                None::<&[u8]>,
                Some(serde_json::to_vec(record)?),
            )?
            .is_err()
        {
            return Err(StoreError::Conflict("a challenge with this id exists"));
        }
        self.durable().await
    }

    async fn consume_scep_challenge(
        &self,
        endpoint: &Name,
        id: &str,
        subjects: &[&str],
        now: OffsetDateTime,
    ) -> Result<ScepChallengeRecord, StoreError> {
        if !valid_challenge_id(id) {
            return Err(StoreError::NotFound);
        }
        let trees = self.scep_challenge_trees();
        let key = record_key(endpoint, id);
        let Some(old) = trees.challenges.get(&key)? else {
            return Err(StoreError::NotFound);
        };
        let record: ScepChallengeRecord = serde_json::from_slice(&old)?;
        let expired = record.expires_at <= now;
        if !expired
            && let Some(bound) = &record.subject
            && !subjects.contains(&bound.as_str())
        {
            return Err(StoreError::Conflict("the challenge is bound to another subject"));
        }
        if trees
            .challenges
            .compare_and_swap(&key, Some(old), None::<&[u8]>)?
            .is_err()
        {
            // Someone else used (or removed) it in between.
            return Err(StoreError::NotFound);
        }
        trees.by_expiry.remove(expiry_key(&record))?;
        self.durable().await?;
        if expired {
            return Err(StoreError::NotFound);
        }
        Ok(record)
    }

    async fn scep_challenges(
        &self,
        endpoint: Option<&Name>,
        limit: usize,
    ) -> Result<Vec<ScepChallengeRecord>, StoreError> {
        let limit = limit.clamp(1, MAX_LIST);
        let tree = &self.scep_challenge_trees().challenges;
        let entries = match endpoint {
            Some(endpoint) => {
                let mut prefix = endpoint.as_str().as_bytes().to_vec();
                prefix.push(0);
                tree.scan_prefix(prefix)
            }
            None => tree.iter(),
        };
        let mut found = Vec::new();
        for entry in entries {
            let (_, bytes) = entry?;
            found.push(serde_json::from_slice(&bytes)?);
            if found.len() >= limit {
                break;
            }
        }
        Ok(found)
    }

    async fn remove_scep_challenge(&self, endpoint: &Name, id: &str) -> Result<(), StoreError> {
        let trees = self.scep_challenge_trees();
        let Some(old) = trees.challenges.remove(record_key(endpoint, id))? else {
            return Err(StoreError::NotFound);
        };
        let record: ScepChallengeRecord = serde_json::from_slice(&old)?;
        trees.by_expiry.remove(expiry_key(&record))?;
        self.durable().await
    }

    async fn sweep_scep_challenges(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let trees = self.scep_challenge_trees();
        let mut swept = 0;
        for entry in trees.by_expiry.range(..expiry_prefix(now).to_vec()) {
            let (index, _) = entry?;
            if let Some(key) = index.get(8..)
                && trees.challenges.remove(key)?.is_some()
            {
                swept += 1;
            }
            trees.by_expiry.remove(index)?;
        }
        if swept > 0 {
            self.durable().await?;
        }
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn record(endpoint: &str, id: &str, subject: Option<&str>, expires: OffsetDateTime) -> ScepChallengeRecord {
        ScepChallengeRecord {
            endpoint: name(endpoint),
            id: id.into(),
            subject: subject.map(str::to_owned),
            created_by: Some("operator".into()),
            created_at: expires - Duration::hours(1),
            expires_at: expires,
        }
    }

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn consume_once_expiry_binding_and_sweep() {
        let (_dir, store) = store();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let later = now + Duration::hours(1);
        store
            .create_scep_challenge(&record("default", "aa", None, later))
            .await
            .unwrap();
        store
            .create_scep_challenge(&record("default", "bb", Some("CN=dev1"), later))
            .await
            .unwrap();
        store
            .create_scep_challenge(&record("default", "cc", None, now))
            .await
            .unwrap();
        store
            .create_scep_challenge(&record("other", "aa", None, later))
            .await
            .unwrap();
        assert!(matches!(
            store.create_scep_challenge(&record("default", "aa", None, later)).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.create_scep_challenge(&record("default", "A!", None, later)).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            store.scep_challenges(Some(&name("default")), 100).await.unwrap().len(),
            3
        );
        assert_eq!(store.scep_challenges(None, 100).await.unwrap().len(), 4);

        type Case = (
            &'static str,
            &'static str,
            &'static str,
            &'static [&'static str],
            Result<(), &'static str>,
        );
        let cases: [Case; 7] = [
            ("good_unbound", "default", "aa", &["CN=x"], Ok(())),
            ("bad_reused", "default", "aa", &["CN=x"], Err("not_found")),
            ("bad_wrong_endpoint", "third", "aa", &[], Err("not_found")),
            (
                "bad_bound_other_subject",
                "default",
                "bb",
                &["CN=dev2", "dev2"],
                Err("conflict"),
            ),
            ("good_bound_subject", "default", "bb", &["CN=dev1", "dev1"], Ok(())),
            ("bad_expired", "default", "cc", &[], Err("not_found")),
            ("bad_unknown", "default", "zz", &[], Err("not_found")),
        ];
        for (case, endpoint, id, subjects, want) in cases {
            let got = store.consume_scep_challenge(&name(endpoint), id, subjects, now).await;
            match (got, want) {
                (Ok(record), Ok(())) => assert_eq!(record.id, id, "case {case}"),
                (Err(StoreError::NotFound), Err("not_found")) | (Err(StoreError::Conflict(_)), Err("conflict")) => {}
                (got, want) => panic!("case {case}: got {got:?}, want {want:?}"),
            }
        }
        // The expired one was removed when it was tried; the other endpoint's stays.
        assert_eq!(store.scep_challenges(None, 100).await.unwrap().len(), 1);
        store
            .create_scep_challenge(&record("default", "dd", None, now))
            .await
            .unwrap();
        assert_eq!(
            store.sweep_scep_challenges(now + Duration::seconds(1)).await.unwrap(),
            1
        );
        assert_eq!(
            store.sweep_scep_challenges(now + Duration::seconds(1)).await.unwrap(),
            0
        );
        store.remove_scep_challenge(&name("other"), "aa").await.unwrap();
        assert!(matches!(
            store.remove_scep_challenge(&name("other"), "aa").await,
            Err(StoreError::NotFound)
        ));
        assert!(store.scep_challenges(None, 100).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_used_challenge_stays_used_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .create_scep_challenge(&record("default", "ee", None, now + Duration::hours(1)))
                .await
                .unwrap();
            store
                .consume_scep_challenge(&name("default"), "ee", &[], now)
                .await
                .unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.consume_scep_challenge(&name("default"), "ee", &[], now).await,
            Err(StoreError::NotFound)
        ));
    }
}
