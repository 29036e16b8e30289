//! [`NotificationStore`] on sled. Trees:
//! - `notify_alerts`: alert key -> claim (JSON: claimed-at, until);
//! - `notify_alerts_by_until`: until (8 bytes, big-endian) || alert key, for sweeping;
//! - `notify_deliveries`: at (8 bytes) || id || NUL || attempt (4 bytes), for time order and
//!   sweeping by age;
//! - `notify_deployments`: target -> latest observation.
//!
//! Trees are opened per call: `open_tree` is a map lookup once a tree exists, and it keeps
//! this module out of the backend's open path.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::StoreError;
use crate::notifications::{
    DeliveryQuery, DeliveryRecord, DeploymentObservation, NotificationStore, NotificationSweep, valid_delivery_id,
};
use crate::sled_backend::{SledStore, expiry_prefix};

const MAX_LIST: usize = 1000;
const MAX_KEY: usize = 1024;

#[derive(Debug, Serialize, Deserialize)]
struct AlertClaim {
    #[serde(with = "time::serde::rfc3339")]
    claimed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    until: OffsetDateTime,
}

struct Trees {
    alerts: sled::Tree,
    alerts_by_until: sled::Tree,
    deliveries: sled::Tree,
    deployments: sled::Tree,
}

impl SledStore {
    fn notification_trees(&self) -> Result<Trees, StoreError> {
        let db = self.db();
        Ok(Trees {
            alerts: db.open_tree("notify_alerts")?,
            alerts_by_until: db.open_tree("notify_alerts_by_until")?,
            deliveries: db.open_tree("notify_deliveries")?,
            deployments: db.open_tree("notify_deployments")?,
        })
    }
}

fn until_key(until: OffsetDateTime, key: &[u8]) -> Vec<u8> {
    let mut index = expiry_prefix(until).to_vec();
    index.extend_from_slice(key);
    index
}

fn delivery_key(record: &DeliveryRecord) -> Vec<u8> {
    let mut key = expiry_prefix(record.at).to_vec();
    key.extend_from_slice(record.id.as_bytes());
    key.push(0);
    key.extend_from_slice(&record.attempt.to_be_bytes());
    key
}

fn check_key(key: &str, what: &'static str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(StoreError::Conflict(what));
    }
    Ok(())
}

#[async_trait]
impl NotificationStore for SledStore {
    async fn claim_alert(&self, key: &str, at: OffsetDateTime, until: OffsetDateTime) -> Result<bool, StoreError> {
        check_key(key, "alert key must be 1 to 1024 bytes")?;
        let trees = self.notification_trees()?;
        let claim = serde_json::to_vec(&AlertClaim { claimed_at: at, until })?;
        loop {
            let current = trees.alerts.get(key)?;
            if let Some(bytes) = &current {
                let held: AlertClaim = serde_json::from_slice(bytes)?;
                if held.until > at {
                    return Ok(false);
                }
            }
            // Index first: a crash in between leaves an index entry the sweep skips, never a
            // claim the sweep cannot find.
            trees.alerts_by_until.insert(until_key(until, key.as_bytes()), &[])?;
            match trees.alerts.compare_and_swap(key, current, Some(claim.as_slice()))? {
                Ok(()) => {
                    self.durable().await?;
                    return Ok(true);
                }
                // Another scheduler claimed (or re-claimed) it in between: look again.
                Err(_) => continue,
            }
        }
    }

    async fn record_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        if !valid_delivery_id(&record.id) {
            return Err(StoreError::Conflict("malformed delivery id"));
        }
        let trees = self.notification_trees()?;
        if trees
            .deliveries
            .compare_and_swap(delivery_key(record), None::<&[u8]>, Some(serde_json::to_vec(record)?))?
            .is_err()
        {
            return Err(StoreError::Conflict("this delivery attempt is already recorded"));
        }
        Ok(())
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryRecord>, StoreError> {
        let limit = if query.limit == 0 {
            MAX_LIST
        } else {
            query.limit.min(MAX_LIST)
        };
        let trees = self.notification_trees()?;
        let mut found = Vec::new();
        for entry in trees.deliveries.iter().rev() {
            let (_, bytes) = entry?;
            let record: DeliveryRecord = serde_json::from_slice(&bytes)?;
            let wanted = query.webhook.as_ref().is_none_or(|w| *w == record.webhook)
                && query.alert_key.as_ref().is_none_or(|k| *k == record.alert_key)
                && !(query.failed_only && record.outcome.is_delivered());
            if wanted {
                found.push(record);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    async fn record_deployment(&self, observation: &DeploymentObservation) -> Result<(), StoreError> {
        check_key(&observation.target, "deployment target must be 1 to 1024 bytes")?;
        let trees = self.notification_trees()?;
        trees
            .deployments
            .insert(observation.target.as_bytes(), serde_json::to_vec(observation)?)?;
        Ok(())
    }

    async fn deployments(&self) -> Result<Vec<DeploymentObservation>, StoreError> {
        let trees = self.notification_trees()?;
        let mut found = Vec::new();
        for entry in trees.deployments.iter() {
            let (_, bytes) = entry?;
            found.push(serde_json::from_slice(&bytes)?);
        }
        Ok(found)
    }

    async fn sweep_notifications(
        &self,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<NotificationSweep, StoreError> {
        let trees = self.notification_trees()?;
        let mut swept = NotificationSweep::default();
        for entry in trees.deliveries.range(..expiry_prefix(before).to_vec()) {
            let (key, _) = entry?;
            if trees.deliveries.remove(key)?.is_some() {
                swept.deliveries += 1;
            }
        }
        for entry in trees.alerts_by_until.range(..expiry_prefix(now).to_vec()) {
            let (index, _) = entry?;
            if let Some(key) = index.get(8..)
                && let Some(bytes) = trees.alerts.get(key)?
            {
                let claim: AlertClaim = serde_json::from_slice(&bytes)?;
                // A re-claimed key has a later `until` (and its own index entry): keep it.
                if claim.until <= now && trees.alerts.compare_and_swap(key, Some(bytes), None::<&[u8]>)?.is_ok() {
                    swept.alerts += 1;
                }
            }
            trees.alerts_by_until.remove(index)?;
        }
        for entry in trees.deployments.iter() {
            let (key, bytes) = entry?;
            let observation: DeploymentObservation = serde_json::from_slice(&bytes)?;
            if observation.observed_at < before
                && trees
                    .deployments
                    .compare_and_swap(key, Some(bytes), None::<&[u8]>)?
                    .is_ok()
            {
                swept.deployments += 1;
            }
        }
        // Not flushed: anything a crash brings back is swept again next time.
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use certgate_core::Serial;
    use time::Duration;

    use super::*;
    use crate::notifications::{DeliveryOutcome, DeploymentState, NotificationEvent};

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn delivery(id: &str, attempt: u32, at: OffsetDateTime, ok: bool) -> DeliveryRecord {
        DeliveryRecord {
            id: id.into(),
            webhook: "ops".into(),
            event: NotificationEvent::RenewalDue,
            alert_key: format!("renewal_due:{id}"),
            serial: Some(Serial::from_random([7; 16])),
            attempt,
            outcome: if ok {
                DeliveryOutcome::Delivered { status: 200 }
            } else {
                DeliveryOutcome::Failed {
                    status: None,
                    error: "connection refused".into(),
                }
            },
            at,
        }
    }

    #[tokio::test]
    async fn claim_alert_cases() {
        let (_dir, store) = store();
        let now = t0();
        let day = Duration::days(1);
        // (case, key, at, until, want)
        let cases = [
            ("good_first_claim", "renewal_due:AA", now, now + day, true),
            ("bad_second_claim", "renewal_due:AA", now, now + day, false),
            (
                "bad_second_claim_later",
                "renewal_due:AA",
                now + day - Duration::seconds(1),
                now + day * 2,
                false,
            ),
            ("good_other_key", "expiring:AA", now, now + day, true),
            (
                "good_reclaim_after_until",
                "renewal_due:AA",
                now + day,
                now + day * 3,
                true,
            ),
            (
                "bad_reclaimed_holds",
                "renewal_due:AA",
                now + day * 2,
                now + day * 4,
                false,
            ),
        ];
        for (case, key, at, until, want) in cases {
            assert_eq!(store.claim_alert(key, at, until).await.unwrap(), want, "case {case}");
        }
        for (case, key) in [("bad_empty", String::new()), ("bad_too_long", "k".repeat(1025))] {
            assert!(
                matches!(
                    store.claim_alert(&key, now, now + day).await,
                    Err(StoreError::Conflict(_))
                ),
                "case {case}"
            );
        }
    }

    #[tokio::test]
    async fn racing_claims_have_one_winner_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = t0();
        {
            let store = Arc::new(SledStore::open(dir.path()).unwrap());
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..16 {
                let store = Arc::clone(&store);
                tasks.spawn(async move {
                    store
                        .claim_alert("expiring:BB", now, now + Duration::days(1))
                        .await
                        .unwrap()
                });
            }
            let mut winners = 0;
            while let Some(won) = tasks.join_next().await {
                winners += usize::from(won.unwrap());
            }
            assert_eq!(winners, 1);
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert!(
            !store
                .claim_alert("expiring:BB", now, now + Duration::days(1))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn deliveries_are_listed_newest_first_and_swept_by_age() {
        let (_dir, store) = store();
        let now = t0();
        let old = now - Duration::days(40);
        store.record_delivery(&delivery("old1", 1, old, false)).await.unwrap();
        store
            .record_delivery(&delivery("old1", 2, old + Duration::seconds(1), true))
            .await
            .unwrap();
        store.record_delivery(&delivery("new1", 1, now, false)).await.unwrap();
        store
            .record_delivery(&delivery("new1", 2, now + Duration::seconds(2), true))
            .await
            .unwrap();
        let bad = [
            ("bad_duplicate_attempt", delivery("new1", 1, now, false)),
            ("bad_id_with_slash", delivery("a/b", 1, now, false)),
            ("bad_empty_id", delivery("", 1, now, false)),
        ];
        for (case, record) in bad {
            assert!(
                matches!(store.record_delivery(&record).await, Err(StoreError::Conflict(_))),
                "case {case}"
            );
        }

        let all = store.deliveries(&DeliveryQuery::default()).await.unwrap();
        let order: Vec<_> = all.iter().map(|r| (r.id.as_str(), r.attempt)).collect();
        assert_eq!(order, [("new1", 2), ("new1", 1), ("old1", 2), ("old1", 1)]);
        let queries = [
            (
                "failed_only",
                DeliveryQuery {
                    failed_only: true,
                    ..DeliveryQuery::default()
                },
                2,
            ),
            (
                "by_alert_key",
                DeliveryQuery {
                    alert_key: Some("renewal_due:old1".into()),
                    ..DeliveryQuery::default()
                },
                2,
            ),
            (
                "by_other_webhook",
                DeliveryQuery {
                    webhook: Some("other".into()),
                    ..DeliveryQuery::default()
                },
                0,
            ),
            (
                "limited",
                DeliveryQuery {
                    limit: 1,
                    ..DeliveryQuery::default()
                },
                1,
            ),
        ];
        for (case, query, want) in queries {
            assert_eq!(store.deliveries(&query).await.unwrap().len(), want, "case {case}");
        }

        let swept = store.sweep_notifications(now - Duration::days(30), now).await.unwrap();
        assert_eq!(swept.deliveries, 2);
        let left: Vec<_> = store
            .deliveries(&DeliveryQuery::default())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, ["new1", "new1"]);
        assert_eq!(
            store.sweep_notifications(now - Duration::days(30), now).await.unwrap(),
            NotificationSweep::default()
        );
    }

    #[tokio::test]
    async fn sweep_forgets_lapsed_claims_and_old_observations() {
        let (_dir, store) = store();
        let now = t0();
        let hour = Duration::hours(1);
        assert!(store.claim_alert("lapsed", now - hour * 3, now - hour).await.unwrap());
        assert!(store.claim_alert("holding", now, now + hour).await.unwrap());
        // Re-claimed after lapsing: the old index entry must not remove the new claim.
        assert!(
            store
                .claim_alert("reclaimed", now - hour * 3, now - hour * 2)
                .await
                .unwrap()
        );
        assert!(store.claim_alert("reclaimed", now - hour, now + hour).await.unwrap());

        let observation = |target: &str, at: OffsetDateTime, state: DeploymentState| DeploymentObservation {
            target: target.into(),
            state,
            serial: None,
            not_after: None,
            observed_at: at,
        };
        store
            .record_deployment(&observation(
                "a:443",
                now - Duration::days(60),
                DeploymentState::Unknown,
            ))
            .await
            .unwrap();
        store
            .record_deployment(&observation(
                "b:443",
                now - Duration::days(60),
                DeploymentState::Current,
            ))
            .await
            .unwrap();
        let unreachable = DeploymentState::Unreachable {
            error: "connection refused".into(),
        };
        store
            .record_deployment(&observation("b:443", now, unreachable.clone()))
            .await
            .unwrap();
        let latest = store.deployments().await.unwrap();
        assert_eq!(
            latest.iter().map(|o| (o.target.as_str(), &o.state)).collect::<Vec<_>>(),
            [("a:443", &DeploymentState::Unknown), ("b:443", &unreachable)],
            "latest per target"
        );

        let swept = store.sweep_notifications(now - Duration::days(30), now).await.unwrap();
        assert_eq!(
            swept,
            NotificationSweep {
                deliveries: 0,
                alerts: 1,
                deployments: 1
            }
        );
        let cases = [("lapsed", true), ("holding", false), ("reclaimed", false)];
        for (key, claimable) in cases {
            assert_eq!(
                store.claim_alert(key, now, now + hour).await.unwrap(),
                claimable,
                "case {key}"
            );
        }
        assert_eq!(store.deployments().await.unwrap().len(), 1);
    }

    #[test]
    fn records_round_trip_as_json() {
        let record = delivery("id-1", 3, t0(), false);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["outcome"], "failed");
        assert_eq!(json["event"], "renewal_due");
        assert_eq!(serde_json::from_value::<DeliveryRecord>(json).unwrap(), record);
        let observation = DeploymentObservation {
            target: "h:443".into(),
            state: DeploymentState::Superseded {
                successor: Serial::from_random([9; 16]),
            },
            serial: Some(Serial::from_random([8; 16])),
            not_after: Some(t0()),
            observed_at: t0(),
        };
        let json = serde_json::to_value(&observation).unwrap();
        assert_eq!(json["state"], "superseded");
        assert_eq!(
            serde_json::from_value::<DeploymentObservation>(json).unwrap(),
            observation
        );
    }
}
