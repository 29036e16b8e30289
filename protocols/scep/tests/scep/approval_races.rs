//! Two CertPolls of one approved request, made deterministic by an approval store that knows
//! which poll calls it (a task-local tag around each poll) and holds the first poll's first
//! read of the record until the other poll has issued and answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use certgate_core::{Protocol, Serial};
use certgate_scep::approval_fingerprint;
use certgate_scep::message::{MessageType, PkiStatus};
use certgate_scep::testclient::{self, ScepClient};
use certgate_store::approvals::{ApprovalFilter, ApprovalKey, ApprovalRecord, ApprovalState};
use certgate_store::{ApprovalStore, CertificateFilter, SledStore, StoreError};
use certgate_test_support::name;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::harness::{Harness, STATIC_CHALLENGE, options};

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

/// The sled store, except that the first poll's first `approval()` read, once made, notifies
/// `first_read` and returns what it read only after `release` (the second poll answered): a
/// record that still says "approved" although the request has been issued meanwhile.
#[derive(Debug)]
struct DelayedFirstRead {
    inner: SledStore,
    held: AtomicBool,
    first_read: Notify,
    release: Notify,
}

#[async_trait]
impl ApprovalStore for DelayedFirstRead {
    async fn create_approval(&self, record: &ApprovalRecord) -> Result<(), StoreError> {
        self.inner.create_approval(record).await
    }

    async fn approval(&self, key: &ApprovalKey) -> Result<ApprovalRecord, StoreError> {
        let record = self.inner.approval(key).await;
        if poll() == Some(Poll::First) && !self.held.swap(true, Ordering::SeqCst) {
            self.first_read.notify_one();
            self.release.notified().await;
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
async fn cert_poll_that_read_before_the_issuance_gets_the_same_certificate() {
    let mut gate = None;
    let h = Harness::with_approval_store(|store| {
        let delayed = Arc::new(DelayedFirstRead {
            inner: store.clone(),
            held: AtomicBool::new(false),
            first_read: Notify::new(),
            release: Notify::new(),
        });
        gate = Some(Arc::clone(&delayed));
        delayed
    })
    .await;
    let gate = gate.unwrap();

    const CN: &str = "race-device";
    let client = ScepClient::new(CN).unwrap();
    let csr = testclient::csr(client.key(), CN, &[], Some(STATIC_CHALLENGE)).unwrap();
    let enroll = options(MessageType::PkcsReq);
    let request = client.pki_message(&h.ra_der(), &csr, &enroll).unwrap();
    assert_eq!(
        h.exchange("approve", &client, &request, false).await.1.status,
        PkiStatus::Pending
    );
    let key = ApprovalKey::new(
        Protocol::Scep,
        name("approve"),
        approval_fingerprint(&enroll.transaction_id, &client.certificate).unwrap(),
    )
    .unwrap();
    h.ta.store
        .approve(&key, "operator", OffsetDateTime::now_utc())
        .await
        .unwrap();

    let mut poll_options = options(MessageType::CertPoll);
    poll_options.transaction_id = enroll.transaction_id.clone();
    let content = testclient::issuer_and_subject(h.ta.ca.issuer.certificate_der(), &csr).unwrap();
    let first_poll = client.pki_message(&h.ra_der(), &content, &poll_options).unwrap();
    let second_poll = client.pki_message(&h.ra_der(), &content, &poll_options).unwrap();
    // The first poll reads "approved" and stalls; the second then reads, issues and answers;
    // only then does the first poll go on with its stale record.
    let race = async {
        tokio::join!(
            POLL.scope(Poll::First, h.exchange("approve", &client, &first_poll, false)),
            async {
                gate.first_read.notified().await;
                let answer = POLL
                    .scope(Poll::Second, h.exchange("approve", &client, &second_poll, false))
                    .await;
                gate.release.notify_one();
                answer
            }
        )
    };
    let ((_, first), (_, second)) = tokio::time::timeout(Duration::from_secs(60), race)
        .await
        .expect("the polls finished");

    assert_eq!(first.status, PkiStatus::Success, "{:?}", first.fail_info_text);
    assert_eq!(second.status, PkiStatus::Success, "{:?}", second.fail_info_text);
    assert!(
        first.certificates == second.certificates,
        "one certificate per approval: the stale poll issued another"
    );
    let issued: Vec<_> = certgate_store::list_all(&h.ta.store, CertificateFilter::All)
        .await
        .unwrap()
        .into_iter()
        .filter(|record| record.subject.contains(CN))
        .collect();
    assert_eq!(issued.len(), 1, "the store holds exactly one certificate for {CN}");
    assert_eq!(issued[0].der, first.certificates[0]);
    let record = h.ta.store.approval(&key).await.unwrap();
    assert_eq!(record.state, ApprovalState::Issued);
    assert_eq!(record.certificate, Some(issued[0].serial.clone()));
}
