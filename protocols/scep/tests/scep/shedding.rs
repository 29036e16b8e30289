//! While the authority sheds new issuance, PKIOperations that would start one are answered
//! with HTTP 503 and `Retry-After` before the envelope is opened, so nothing is used up.

use std::time::Duration;

use certgate_scep::create_one_time_challenge;
use certgate_scep::message::{MessageType, PkiStatus};
use certgate_scep::testclient::{self, ScepClient};
use certgate_store::CertificateStore;
use certgate_test_support::name;

use crate::harness::{Harness, options};

#[tokio::test]
async fn a_paused_authority_sheds_pkcsreq_without_using_the_challenge() {
    let h = Harness::new().await;
    let (challenge, _) = create_one_time_challenge(
        &h.ta.store,
        &name("default"),
        None,
        time::Duration::hours(1),
        None,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let client = ScepClient::new("shed-device").unwrap();
    let csr = testclient::csr(client.key(), "shed-device", &[], Some(&challenge)).unwrap();
    let message = client
        .pki_message(h.ra.certificate_der(), &csr, &options(MessageType::PkcsReq))
        .unwrap();
    let before = h.ta.store.journal_status().await.unwrap().certificates;

    h.ta.authority.admission().pause(Duration::from_secs(7));
    let response = h.post("/scep/default", Some("operation=PKIOperation"), &message).await;
    assert_eq!(response.status, 503, "{}", String::from_utf8_lossy(&response.body));
    assert_eq!(response.header_value("retry-after"), Some("7"));
    assert_eq!(h.ta.store.journal_status().await.unwrap().certificates, before);

    // The same request once the pause is over: the one-time challenge was not used up.
    h.ta.authority.admission().resume();
    let (_, view) = h.exchange("default", &client, &message, false).await;
    assert_eq!(view.status, PkiStatus::Success, "{:?}", view.fail_info_text);
    assert_eq!(h.ta.store.journal_status().await.unwrap().certificates, before + 1);
}
