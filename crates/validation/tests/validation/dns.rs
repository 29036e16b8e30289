//! dns-01 and CAA against an in-process hickory authoritative server for the zone `test.`.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use certgate_core::DnsName;
use certgate_validation::{
    CaaConfig, ChallengeKind, ValidationConfig, ValidationErrorKind, ValidationRecord, Validator, dns01_digest,
};
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::caa::KeyValue;
use hickory_server::proto::rr::rdata::{CAA, CNAME, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use tokio::net::TcpListener;

use crate::{TIMEOUT, Want, check, config, dns, fail, key_authorization, run, unused_nameserver};

struct DnsServer {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    _server: Server<Catalog>,
}

fn name(text: &str) -> Name {
    Name::from_str(text).unwrap()
}

fn record(owner: &str, data: RData) -> Record {
    Record::from_rdata(name(owner), 60, data)
}

fn txt(owner: &str, value: &str) -> Record {
    record(owner, RData::TXT(TXT::new(vec![value.to_owned()])))
}

fn issue(owner: &str, ca: Option<&str>, params: &[(&str, &str)]) -> Record {
    let params = params.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect();
    record(owner, RData::CAA(CAA::new_issue(false, ca.map(name), params)))
}

fn issuewild(owner: &str, ca: Option<&str>) -> Record {
    record(owner, RData::CAA(CAA::new_issuewild(false, ca.map(name), vec![])))
}

async fn dns_server(records: Vec<Record>) -> DnsServer {
    let origin = name("test.");
    let mut zone =
        InMemoryZoneHandler::<TokioRuntimeProvider>::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    let soa = SOA::new(name("ns.test."), name("hostmaster.test."), 1, 3600, 600, 86400, 60);
    zone.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1);
    for record in records {
        zone.upsert_mut(record, 1);
    }
    let zone = Arc::new(zone);
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::from(origin), vec![zone.clone() as Arc<dyn ZoneHandler>]);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut server = Server::new(catalog);
    server.register_socket(socket);
    // TCP on the same port, for truncated answers; best effort (the port may be taken for TCP).
    if let Ok(listener) = TcpListener::bind(addr).await {
        server.register_listener(listener, TIMEOUT, 4096);
    }
    DnsServer {
        addr,
        zone,
        _server: server,
    }
}

#[tokio::test]
async fn dns01() {
    let server = dns_server(vec![
        txt("_acme-challenge.pass.test.", &dns01_digest(&key_authorization("pass"))),
        txt("_acme-challenge.pass.test.", "an unrelated value"),
        txt("_acme-challenge.wrong.test.", "value-1"),
        txt("_acme-challenge.wrong.test.", "value-2"),
        txt("_acme-challenge.wrong.test.", "value-3"),
        txt("_acme-challenge.wrong.test.", "value-4"),
        record(
            "_acme-challenge.cname.test.",
            RData::CNAME(CNAME(name("delegated.validation.test."))),
        ),
        txt("delegated.validation.test.", &dns01_digest(&key_authorization("cname"))),
        txt("_acme-challenge.wild.test.", &dns01_digest(&key_authorization("wild"))),
        txt("exists.test.", "a TXT record that is not a challenge"),
    ])
    .await;
    let validator = Validator::new(config(80, 443, server.addr)).unwrap();
    let cases: Vec<(&str, &str, &str, Want)> = vec![
        ("good", "pass.test", "pass", Want::Pass),
        (
            "bad_wrong_values",
            "wrong.test",
            "wrong",
            fail(
                ValidationErrorKind::IncorrectResponse,
                &["_acme-challenge.wrong.test", "\"value-", "and 1 more"],
            ),
        ),
        (
            "bad_missing",
            "missing.test",
            "missing",
            fail(
                ValidationErrorKind::Dns,
                &["no TXT record at _acme-challenge.missing.test"],
            ),
        ),
        ("good_cname", "cname.test", "cname", Want::Pass),
        ("good_wildcard_uses_base_name", "*.wild.test", "wild", Want::Pass),
        (
            "bad_wildcard_other_key",
            "*.wild.test",
            "other",
            fail(ValidationErrorKind::IncorrectResponse, &["_acme-challenge.wild.test"]),
        ),
    ];
    for (case, identifier, token, want) in &cases {
        let got = run(&validator, &dns(identifier), ChallengeKind::Dns01, token).await;
        check(case, &got, want);
    }
    let record = run(&validator, &dns("pass.test"), ChallengeKind::Dns01, "pass")
        .await
        .unwrap();
    assert_eq!(record.hostname, "pass.test");

    // No cache: each retry sees the zone as it is now.
    let later = dns("later.test");
    let owner = "_acme-challenge.later.test.";
    let got = run(&validator, &later, ChallengeKind::Dns01, "later").await;
    check(
        "later_missing",
        &got,
        &fail(ValidationErrorKind::Dns, &["no TXT record"]),
    );
    server.zone.upsert(txt(owner, "stale"), 2).await;
    let got = run(&validator, &later, ChallengeKind::Dns01, "later").await;
    check(
        "later_wrong",
        &got,
        &fail(ValidationErrorKind::IncorrectResponse, &["\"stale\""]),
    );
    server
        .zone
        .upsert(txt(owner, &dns01_digest(&key_authorization("later"))), 3)
        .await;
    let got = run(&validator, &later, ChallengeKind::Dns01, "later").await;
    check("later_present", &got, &Want::Pass);
}

#[tokio::test]
async fn dns01_server_down() {
    // Nothing answers: a Dns error within the timeout, not a hang.
    let validator = Validator::new(ValidationConfig {
        timeout: Duration::from_millis(500),
        ..config(80, 443, unused_nameserver())
    })
    .unwrap();
    let got = run(&validator, &dns("pass.test"), ChallengeKind::Dns01, "pass").await;
    check(
        "bad_no_server",
        &got,
        &fail(ValidationErrorKind::Dns, &["_acme-challenge.pass.test"]),
    );
}

// ---------------------------------------------------------------------------------------------
// CAA

#[tokio::test]
async fn caa() {
    let account = "https://ca.test/acme/acct/1";
    let mut unknown_critical = CAA::new_issue(true, None, vec![]);
    unknown_critical.tag = "tbs".to_owned();
    unknown_critical.value = b"future".to_vec();
    let server = dns_server(vec![
        issue("good.test.", Some("certgate.test"), &[]),
        issue("other.test.", Some("other.example"), &[]),
        issue("wild.test.", Some("certgate.test"), &[]),
        issuewild("wild.test.", None),
        issue("wildok.test.", None, &[]),
        issuewild("wildok.test.", Some("certgate.test")),
        issue("acct.test.", Some("certgate.test"), &[("accounturi", account)]),
        issue(
            "methods.test.",
            Some("certgate.test"),
            &[("validationmethods", "dns-01,tls-alpn-01")],
        ),
        issue("critical.test.", Some("certgate.test"), &[]),
        record("critical.test.", RData::CAA(unknown_critical)),
        issue("parent.test.", Some("other.example"), &[]),
        issue("child.parent.test.", Some("certgate.test"), &[]),
        txt("www.nocaa.test.", "some other record"),
    ])
    .await;
    let validator = Validator::new(ValidationConfig {
        caa: Some(CaaConfig {
            identities: vec!["certgate.test".to_owned()],
        }),
        ..config(80, 443, server.addr)
    })
    .unwrap();
    let http = ChallengeKind::Http01;
    let dns01 = ChallengeKind::Dns01;
    let refused = |fragments: &[&str]| fail(ValidationErrorKind::Caa, fragments);
    let cases: Vec<(&str, &str, bool, &str, ChallengeKind, Want)> = vec![
        ("good_no_caa", "www.nocaa.test", false, account, http, Want::Pass),
        (
            "good_no_caa_wildcard",
            "*.nocaa.test",
            false,
            account,
            dns01,
            Want::Pass,
        ),
        ("good_issue", "good.test", false, account, http, Want::Pass),
        ("good_issue_climbed", "a.b.good.test", false, account, http, Want::Pass),
        (
            "bad_other_ca",
            "other.test",
            false,
            account,
            http,
            refused(&["at other.test", "\"other.example\""]),
        ),
        (
            "good_issuewild_not_for_plain",
            "www.wild.test",
            false,
            account,
            http,
            Want::Pass,
        ),
        (
            "bad_issuewild_for_wildcard",
            "*.wild.test",
            false,
            account,
            dns01,
            refused(&["issuewild"]),
        ),
        (
            "bad_issuewild_flag",
            "wild.test",
            true,
            account,
            dns01,
            refused(&["issuewild"]),
        ),
        (
            "good_issuewild_allows_wildcard",
            "*.wildok.test",
            false,
            account,
            dns01,
            Want::Pass,
        ),
        (
            "bad_issue_none_for_plain",
            "wildok.test",
            false,
            account,
            dns01,
            refused(&["no issue record"]),
        ),
        ("good_accounturi", "acct.test", false, account, http, Want::Pass),
        (
            "bad_accounturi",
            "acct.test",
            false,
            "https://ca.test/acme/acct/2",
            http,
            refused(&["accounturi names another account"]),
        ),
        (
            "good_validationmethods",
            "methods.test",
            false,
            account,
            dns01,
            Want::Pass,
        ),
        (
            "bad_validationmethods",
            "methods.test",
            false,
            account,
            http,
            refused(&["validationmethods does not include http-01"]),
        ),
        (
            "bad_unknown_critical",
            "critical.test",
            false,
            account,
            http,
            refused(&["128 tbs \"future\""]),
        ),
        (
            "bad_parent_found_by_climbing",
            "x.y.parent.test",
            false,
            account,
            http,
            refused(&["at parent.test"]),
        ),
        (
            "good_child_overrides_parent",
            "www.child.parent.test",
            false,
            account,
            http,
            Want::Pass,
        ),
    ];
    for (case, target, wildcard, account_uri, method, want) in &cases {
        let got = validator
            .check_caa(&DnsName::new(target).unwrap(), *wildcard, account_uri, *method)
            .await
            .map(|()| dummy_record());
        check(case, &got, want);
    }

    // Without a CaaConfig nothing is looked up.
    let off = Validator::new(config(80, 443, unused_nameserver())).unwrap();
    let name = DnsName::new("other.test").unwrap();
    off.check_caa(&name, false, account, http).await.unwrap();
}

fn dummy_record() -> ValidationRecord {
    ValidationRecord {
        url: None,
        hostname: String::new(),
        port: None,
        addresses_resolved: vec![],
        address_used: None,
    }
}
