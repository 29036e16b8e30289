//! Concurrent polls of one approved request, made deterministic by an approval store that
//! holds the first `mark_issued` until the second poll has read the record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use certgate_core::{Serial, SystemClock};
use certgate_est::{EstEndpointConfig, EstRequest, EstServer, EstStores};
use certgate_store::approvals::{ApprovalFilter, ApprovalKey, ApprovalRecord};
use certgate_store::{ApprovalStore, SledStore, StoreError};
use certgate_test_support::name;
use rcgen::KeyPair;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::harness::*;

/// The sled store, with the first `mark_issued` (once armed) waiting for the second read.
#[derive(Debug)]
struct HeldStore {
    inner: SledStore,
    armed: AtomicBool,
    reads: AtomicUsize,
    marks: AtomicUsize,
    first_read: Notify,
    second_read: Notify,
}

#[async_trait]
impl ApprovalStore for HeldStore {
    async fn create_approval(&self, record: &ApprovalRecord) -> Result<(), StoreError> {
        self.inner.create_approval(record).await
    }

    async fn approval(&self, key: &ApprovalKey) -> Result<ApprovalRecord, StoreError> {
        let record = self.inner.approval(key).await;
        if self.armed.load(Ordering::SeqCst) {
            match self.reads.fetch_add(1, Ordering::SeqCst) {
                0 => self.first_read.notify_one(),
                1 => self.second_read.notify_one(),
                _ => {}
            }
        }
        record
    }

    async fn approvals(&self, filter: &ApprovalFilter, limit: usize) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.inner.approvals(filter, limit).await
    }

    async fn approve(&self, key: &ApprovalKey, by: &str, at: OffsetDateTime) -> Result<ApprovalRecord, StoreError> {
        self.inner.approve(key, by, at).await
    }

    async fn deny(
        &self,
        key: &ApprovalKey,
        by: &str,
        reason: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<ApprovalRecord, StoreError> {
        self.inner.deny(key, by, reason, at).await
    }

    async fn mark_issued(&self, key: &ApprovalKey, serial: &Serial) -> Result<ApprovalRecord, StoreError> {
        if self.armed.load(Ordering::SeqCst) && self.marks.fetch_add(1, Ordering::SeqCst) == 0 {
            self.second_read.notified().await;
        }
        self.inner.mark_issued(key, serial).await
    }

    async fn renew_approval(&self, record: &ApprovalRecord) -> Result<(), StoreError> {
        self.inner.renew_approval(record).await
    }

    async fn remove_approval(&self, key: &ApprovalKey) -> Result<(), StoreError> {
        self.inner.remove_approval(key).await
    }
}

#[tokio::test]
async fn approval_poll_while_issuing_answers_one_retry_after() {
    let h = Harness::new().await;
    let held = Arc::new(HeldStore {
        inner: h.ta.store.clone(),
        armed: AtomicBool::new(false),
        reads: AtomicUsize::new(0),
        marks: AtomicUsize::new(0),
        first_read: Notify::new(),
        second_read: Notify::new(),
    });
    let mut config = EstEndpointConfig::new(name("approve"));
    config.require_approval = true;
    config.approval_retry_after = 30;
    let stores = EstStores {
        users: Arc::new(h.ta.store.clone()),
        approvals: held.clone(),
    };
    let server = EstServer::new(vec![config], stores, Arc::clone(&h.ta.authority), Arc::new(SystemClock)).unwrap();

    let tls = tls13();
    let key = KeyPair::generate().unwrap();
    let body = csr_b64(&key, "polled-device", &["polled.example.com"], None);
    let authorization = basic(USER, PASSWORD);
    let request = EstRequest {
        method: "POST",
        path: "/.well-known/est/approve/simpleenroll",
        query: None,
        content_type: Some("application/pkcs10"),
        authorization: authorization.as_deref(),
        body: &body,
        body_too_large: false,
        peer: "127.0.0.1".parse().unwrap(),
        tls: Some(&tls),
    };
    assert_eq!(server.handle(&request).await.status, 202);
    let pending = h.ta.store.approvals(&ApprovalFilter::pending(), 10).await.unwrap();
    h.ta.store
        .approve(&pending[0].key, "operator", OffsetDateTime::now_utc())
        .await
        .unwrap();

    // The first poll issues and is held in mark_issued; the second, started once the first has
    // read the record, finds the issuance running.
    held.armed.store(true, Ordering::SeqCst);
    let (first, second) = tokio::join!(server.handle(&request), async {
        held.first_read.notified().await;
        server.handle(&request).await
    });
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 202);
    let retry_after: Vec<&str> = second
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(retry_after, ["2"], "exactly one Retry-After");
}
