//! Concurrent polls of one approved request, made deterministic by an approval store that
//! knows which poll calls it (a task-local set around each poll) and holds calls at chosen
//! points until another poll gets there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use certgate_core::{Serial, SystemClock};
use certgate_est::{EstEndpointConfig, EstRequest, EstResponse, EstServer, EstStores};
use certgate_store::approvals::{ApprovalFilter, ApprovalKey, ApprovalRecord, ApprovalState};
use certgate_store::{ApprovalStore, CertificateStore, SledStore, StoreError};
use certgate_test_support::name;
use rcgen::KeyPair;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::harness::*;

/// Which poll a store call comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poll {
    First,
    Second,
}

tokio::task_local! {
    static POLL: Poll;
}

fn poll() -> Option<Poll> {
    POLL.try_with(|p| *p).ok()
}

/// The sled store, with hooks: every read by the first (second) poll notifies `first_read`
/// (`second_read`); with `hold_first_mark` the first poll's `mark_issued` waits for a read by
/// the second; with `hold_second_read` the second poll's first read, once done, waits until
/// `first_done` (the first poll answered) before returning what it read.
#[derive(Debug)]
struct GatedStore {
    inner: SledStore,
    hold_first_mark: AtomicBool,
    hold_second_read: AtomicBool,
    second_reads: AtomicUsize,
    first_read: Notify,
    second_read: Notify,
    first_done: Notify,
}

#[async_trait]
impl ApprovalStore for GatedStore {
    async fn create_approval(&self, record: &ApprovalRecord) -> Result<(), StoreError> {
        self.inner.create_approval(record).await
    }

    async fn approval(&self, key: &ApprovalKey) -> Result<ApprovalRecord, StoreError> {
        let record = self.inner.approval(key).await;
        match poll() {
            Some(Poll::First) => self.first_read.notify_one(),
            Some(Poll::Second) => {
                self.second_read.notify_one();
                if self.second_reads.fetch_add(1, Ordering::SeqCst) == 0 && self.hold_second_read.load(Ordering::SeqCst)
                {
                    self.first_done.notified().await;
                }
            }
            None => {}
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
        if poll() == Some(Poll::First) && self.hold_first_mark.load(Ordering::SeqCst) {
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

/// Two polls of one approved request, the second started once the first has read the record,
/// the first poll's `mark_issued` held until the second has read it; with `hold_second_read`
/// the second's read is answered only after the first poll finished (the record it returns
/// is then stale: still approved, though the first poll has issued and marked it).
struct Race {
    first: EstResponse,
    second: EstResponse,
    record: ApprovalRecord,
    /// The certificate the record names, DER.
    recorded_der: Option<Vec<u8>>,
    certificates_issued: u64,
}

async fn race(hold_second_read: bool) -> Race {
    let h = Harness::new().await;
    let gated = Arc::new(GatedStore {
        inner: h.ta.store.clone(),
        hold_first_mark: AtomicBool::new(false),
        hold_second_read: AtomicBool::new(hold_second_read),
        second_reads: AtomicUsize::new(0),
        first_read: Notify::new(),
        second_read: Notify::new(),
        first_done: Notify::new(),
    });
    let mut config = EstEndpointConfig::new(name("approve"));
    config.require_approval = true;
    config.approval_retry_after = 30;
    let stores = EstStores {
        users: Arc::new(h.ta.store.clone()),
        approvals: gated.clone(),
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
    let approval = pending[0].key.clone();
    h.ta.store
        .approve(&approval, "operator", OffsetDateTime::now_utc())
        .await
        .unwrap();

    let before = h.ta.store.journal_status().await.unwrap().certificates;
    gated.hold_first_mark.store(true, Ordering::SeqCst);
    let (first, second) = tokio::join!(
        async {
            let response = POLL.scope(Poll::First, server.handle(&request)).await;
            gated.first_done.notify_one();
            response
        },
        async {
            gated.first_read.notified().await;
            POLL.scope(Poll::Second, server.handle(&request)).await
        }
    );
    let after = h.ta.store.journal_status().await.unwrap().certificates;
    let record = h.ta.store.approval(&approval).await.unwrap();
    let recorded_der = match &record.certificate {
        Some(serial) => Some(h.ta.store.certificate(serial).await.unwrap().der),
        None => None,
    };
    Race {
        first,
        second,
        record,
        recorded_der,
        certificates_issued: after - before,
    }
}

#[tokio::test]
async fn approval_poll_while_issuing_answers_one_retry_after() {
    let Race { first, second, .. } = race(false).await;
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

#[tokio::test]
async fn approval_poll_that_read_before_the_issuance_gets_the_same_certificate() {
    // The second poll read "approved" before the first marked it issued, and claims the
    // issuing guard only after the first released it: it must answer the issued certificate,
    // not issue a second one.
    let Race {
        first,
        second,
        record,
        recorded_der,
        certificates_issued,
    } = race(true).await;
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200);
    let leaf = certs_of(&first.body).remove(0);
    assert!(
        certs_of(&second.body).remove(0) == leaf,
        "one certificate for one approval: the second poll got another"
    );
    assert_eq!(certificates_issued, 1);
    assert_eq!(record.state, ApprovalState::Issued);
    assert_eq!(
        recorded_der,
        Some(leaf),
        "the approval names the certificate both polls got"
    );
}
