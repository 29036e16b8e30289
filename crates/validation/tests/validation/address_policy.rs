//! The validation address policy: the table of what it refuses, and refusals on the network
//! (redirect hops, IP identifiers, names resolving to refused addresses) that happen before any
//! connection is made.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certgate_core::{Identifier, IpNet};
use certgate_validation::{AddressPolicy, ChallengeKind, ValidationConfig, ValidationErrorKind, Validator};

use crate::http::{Handler, Reply, http_server, http_server_on};
use crate::{check, config, dns, fail, key_authorization, run, unused_nameserver};

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| IpNet::parse(n).unwrap()).collect()
}

#[test]
fn address_policy_table() {
    let default = AddressPolicy::default();
    let lab = AddressPolicy::new(nets(&["169.254.10.0/24", "fe80::/10"]), vec![]);
    let strict = AddressPolicy::new(
        nets(&["10.1.0.0/16"]),
        nets(&["10.0.0.0/8", "127.0.0.0/8", "::1/128", "fd00::/8"]),
    );
    let cases: Vec<(&str, &AddressPolicy, &str, bool)> = vec![
        // IPv4 defaults.
        ("good_public_v4", &default, "93.184.216.34", true),
        ("good_private_v4", &default, "10.1.2.3", true),
        ("good_private_192", &default, "192.168.1.1", true),
        ("good_loopback_v4", &default, "127.0.0.1", true),
        ("good_cgnat_v4", &default, "100.64.1.1", true),
        ("bad_link_local_v4", &default, "169.254.1.1", false),
        ("bad_aws_gcp_azure_metadata", &default, "169.254.169.254", false),
        ("bad_ecs_metadata", &default, "169.254.170.2", false),
        ("bad_alibaba_metadata", &default, "100.100.100.200", false),
        ("bad_azure_wireserver", &default, "168.63.129.16", false),
        ("bad_oracle_metadata", &default, "192.0.0.192", false),
        ("good_oracle_neighbour", &default, "192.0.0.193", true),
        ("bad_unspecified_v4", &default, "0.0.0.0", false),
        ("bad_this_network_v4", &default, "0.1.2.3", false),
        ("bad_multicast_v4", &default, "224.0.0.1", false),
        ("bad_multicast_v4_top", &default, "239.255.255.250", false),
        ("bad_broadcast", &default, "255.255.255.255", false),
        // IPv6 defaults.
        ("good_public_v6", &default, "2001:db8::1", true),
        ("good_loopback_v6", &default, "::1", true),
        ("good_ula_v6", &default, "fd12:3456::1", true),
        ("bad_unspecified_v6", &default, "::", false),
        ("bad_link_local_v6", &default, "fe80::1", false),
        ("bad_aws_metadata_v6", &default, "fd00:ec2::254", false),
        ("bad_multicast_v6", &default, "ff02::1", false),
        // IPv6 forms of IPv4 addresses are judged by the IPv4 address.
        ("bad_mapped_metadata", &default, "::ffff:169.254.169.254", false),
        ("bad_mapped_alibaba", &default, "::ffff:100.100.100.200", false),
        ("bad_compatible_metadata", &default, "::169.254.169.254", false),
        ("bad_nat64_metadata", &default, "64:ff9b::a9fe:a9fe", false),
        ("bad_nat64_local_use_metadata", &default, "64:ff9b:1::a9fe:a9fe", false),
        ("bad_6to4_metadata", &default, "2002:a9fe:a9fe::1", false),
        ("good_mapped_private", &default, "::ffff:10.1.2.3", true),
        ("good_nat64_public", &default, "64:ff9b::5db8:d822", true),
        // An allow entry lifts the default denial inside it, and only there.
        ("good_allowed_link_local", &lab, "169.254.10.7", true),
        ("good_allowed_link_local_mapped", &lab, "::ffff:169.254.10.7", true),
        ("bad_link_local_outside_allow", &lab, "169.254.169.254", false),
        ("good_allowed_link_local_v6", &lab, "fe80::1", true),
        ("bad_allow_does_not_lift_other_defaults", &lab, "100.100.100.200", false),
        // Configured denials, which an allow entry cannot lift.
        ("bad_denied_private", &strict, "10.9.9.9", false),
        ("bad_deny_wins_over_allow", &strict, "10.1.2.3", false),
        ("bad_denied_loopback", &strict, "127.0.0.1", false),
        ("bad_denied_loopback_mapped", &strict, "::ffff:127.0.0.1", false),
        ("bad_denied_loopback_nat64", &strict, "64:ff9b::7f00:1", false),
        ("bad_denied_loopback_v6", &strict, "::1", false),
        ("bad_denied_ula", &strict, "fd00::5", false),
        ("good_outside_denials", &strict, "192.168.1.1", true),
    ];
    for (case, policy, address, allowed) in cases {
        let address: IpAddr = address.parse().unwrap();
        let got = policy.check(address);
        assert_eq!(got.is_ok(), allowed, "case {case}: {got:?}");
        if let Err(refusal) = got {
            assert_eq!(refusal.address, address, "case {case}");
            assert!(
                refusal.to_string().starts_with(&address.to_string()),
                "case {case}: {refusal}"
            );
        }
    }
    let refusal = default.check("::ffff:169.254.169.254".parse().unwrap()).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "::ffff:169.254.169.254 (which carries 169.254.169.254) is in 169.254.0.0/16 (link-local, where cloud \
         metadata services answer), denied by default"
    );
    let refusal = strict.check("10.1.2.3".parse().unwrap()).unwrap_err();
    assert_eq!(refusal.to_string(), "10.1.2.3 is in the denied range 10.0.0.0/8");
}

/// A redirect to a metadata service is refused at once: no connection is attempted (one would
/// hang or fail only after a timeout, since nothing answers there in a test environment).
#[tokio::test]
async fn redirects_to_refused_addresses_are_not_followed() {
    let handler: Handler = Arc::new(|path: &str| match path.rsplit('/').next().unwrap_or_default() {
        "metadata" => Reply::redirect(302, "http://169.254.169.254/latest/meta-data/"),
        "mapped" => Reply::redirect(302, "http://[::ffff:169.254.169.254]/latest/meta-data/"),
        "alibaba" => Reply::redirect(302, "http://100.100.100.200/latest/meta-data/"),
        token => Reply::ok(key_authorization(token)),
    });
    let http = http_server(None, handler).await;
    let validator = Validator::new(ValidationConfig {
        timeout: Duration::from_secs(5),
        ..config(http.port, 443, unused_nameserver())
    })
    .unwrap();
    let cases = [
        ("bad_metadata", "metadata", "169.254.169.254:80"),
        ("bad_mapped_metadata", "mapped", "[::ffff:169.254.169.254]:80"),
        ("bad_alibaba", "alibaba", "100.100.100.200:80"),
    ];
    for (case, token, address) in cases {
        let started = Instant::now();
        let got = run(&validator, &dns("localhost"), ChallengeKind::Http01, token).await;
        check(
            case,
            &got,
            &fail(
                ValidationErrorKind::Connection,
                &[
                    &format!("not connecting to {address}"),
                    "refused by the validation address policy",
                    "denied by default",
                ],
            ),
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "case {case}: no connect was tried"
        );
        let record = got.unwrap_err().record.unwrap();
        assert_eq!(record.address_used, None, "case {case}");
    }
}

/// A configured deny entry refuses a redirect hop on a host that does answer: the listener
/// there never sees a connection, and without the entry the same chain succeeds.
#[tokio::test]
async fn configured_denials_refuse_before_connecting() {
    // The hop target on 127.0.0.2 (all of 127/8 is loopback on Linux); the redirecting server
    // on the same port of 127.0.0.1, since redirects may only go to the validation ports.
    let (target, redirecting) = loop {
        let target = http_server_on(
            SocketAddr::from(([127, 0, 0, 2], 0)),
            None,
            Arc::new(|path: &str| Reply::ok(key_authorization(path.rsplit('/').next().unwrap_or_default()))),
        )
        .await;
        let port = target.port;
        // Another test may hold the port on 127.0.0.1: then draw another.
        if tokio::net::TcpListener::bind(("127.0.0.1", port)).await.is_err() {
            continue;
        }
        let redirecting = http_server_on(
            SocketAddr::from(([127, 0, 0, 1], port)),
            None,
            Arc::new(move |path: &str| {
                let token = path.rsplit('/').next().unwrap_or_default().to_owned();
                Reply::redirect(302, format!("http://127.0.0.2:{port}/moved/{token}"))
            }),
        )
        .await;
        break (target, redirecting);
    };
    let port = target.port;
    let open = Validator::new(config(port, 443, unused_nameserver())).unwrap();
    run(&open, &dns("localhost"), ChallengeKind::Http01, "hop")
        .await
        .unwrap();
    assert_eq!(
        target.requests.lock().unwrap().len(),
        1,
        "the control run reached the hop"
    );

    let denying = Validator::new(ValidationConfig {
        address_policy: AddressPolicy::new(vec![], nets(&["127.0.0.2/32"])),
        ..config(port, 443, unused_nameserver())
    })
    .unwrap();
    let got = run(&denying, &dns("localhost"), ChallengeKind::Http01, "hop").await;
    check(
        "bad_denied_hop",
        &got,
        &fail(
            ValidationErrorKind::Connection,
            &[
                &format!("not connecting to 127.0.0.2:{port}"),
                "127.0.0.2 is in the denied range 127.0.0.2/32",
            ],
        ),
    );
    assert_eq!(
        target.requests.lock().unwrap().len(),
        1,
        "the denied hop was never contacted"
    );
    assert_eq!(redirecting.requests.lock().unwrap().len(), 2);
}

/// IP identifiers in refused ranges, and names that resolve only to refused addresses, fail
/// for http-01 and tls-alpn-01 alike without a connection.
#[tokio::test]
async fn refused_identifiers_and_resolved_addresses() {
    let http = http_server(None, Arc::new(|path: &str| Reply::ok(key_authorization(path)))).await;
    let validator = Validator::new(config(http.port, http.port, unused_nameserver())).unwrap();
    let metadata = Identifier::Ip(IpAddr::from([169, 254, 169, 254]));
    for kind in [ChallengeKind::Http01, ChallengeKind::TlsAlpn01] {
        let got = run(&validator, &metadata, kind, "tok").await;
        let case = format!("bad_metadata_ip_{kind}");
        check(
            &case,
            &got,
            &fail(
                ValidationErrorKind::Connection,
                &[
                    "not connecting to 169.254.169.254",
                    "refused by the validation address policy",
                ],
            ),
        );
    }
    let no_loopback = Validator::new(ValidationConfig {
        address_policy: AddressPolicy::new(vec![], nets(&["127.0.0.0/8", "::1/128"])),
        ..config(http.port, http.port, unused_nameserver())
    })
    .unwrap();
    for kind in [ChallengeKind::Http01, ChallengeKind::TlsAlpn01] {
        let got = run(&no_loopback, &dns("localhost"), kind, "tok").await;
        let case = format!("bad_localhost_denied_{kind}");
        check(
            &case,
            &got,
            &fail(
                ValidationErrorKind::Connection,
                &["127.0.0.1 is in the denied range 127.0.0.0/8"],
            ),
        );
        let record = got.unwrap_err().record.unwrap();
        assert!(
            record.addresses_resolved.contains(&IpAddr::from([127, 0, 0, 1])),
            "case {case}"
        );
        assert_eq!(record.address_used, None, "case {case}");
    }
    assert!(http.requests.lock().unwrap().is_empty(), "nothing was contacted");
}
