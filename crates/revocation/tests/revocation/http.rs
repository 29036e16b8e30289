//! The HTTP mapping: routes, methods, limits and the leniencies, table-driven.

use super::*;

/// One request and what must come back.
struct Case<'a> {
    name: &'a str,
    method: &'a str,
    path: &'a str,
    content_type: Option<&'a str>,
    body: &'a [u8],
    too_large: bool,
    status: u16,
    /// The Allow header of a 405.
    allow: Option<&'a str>,
    /// What the body starts with.
    starts: &'a [u8],
}

/// A body-less request expecting `status` and nothing in particular in the body.
fn case<'a>(name: &'a str, method: &'a str, path: &'a str, status: u16) -> Case<'a> {
    Case {
        name,
        method,
        path,
        content_type: None,
        body: b"",
        too_large: false,
        status,
        allow: None,
        starts: b"",
    }
}

#[tokio::test]
async fn routes_methods_and_limits() {
    let f = Fixture::new(KeyType::P256, RevocationSettings::default());
    let serial = f.issue("leaf").await;
    let request_file = f.path("req.der");
    let serial_arg = format!("0x{serial}");
    let (ok, text) = openssl(&[
        "ocsp",
        "-issuer",
        s(&f.path("issuer.pem")),
        "-serial",
        &serial_arg,
        "-no_nonce",
        "-reqout",
        s(&request_file),
    ]);
    assert!(ok, "{text}");
    let valid = std::fs::read(&request_file).unwrap();
    let huge_get = format!("/ocsp/default/{}", "A".repeat(70_000));
    let oversize = vec![0x30; 16 * 1024 + 1];
    const SUCCESSFUL: &[u8] = &[0x30, 0x82]; // a signed response: longer than 255 bytes
    const MALFORMED: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x01];

    let post = |name, path, body, status| Case {
        body,
        starts: if status == 200 { SUCCESSFUL } else { b"" },
        ..case(name, "POST", path, status)
    };
    let cases = [
        Case {
            starts: &[0x30],
            ..case("crl_get", "GET", "/crl/default.crl", 200)
        },
        Case {
            starts: &[0x30],
            ..case("crl_with_query", "GET", "/crl/default.crl?x=1", 200)
        },
        case("crl_head_has_no_body", "HEAD", "/crl/default.crl", 200),
        Case {
            starts: b"unknown issuer",
            ..case("crl_unknown_issuer", "GET", "/crl/other.crl", 404)
        },
        Case {
            starts: b"unknown issuer",
            ..case("crl_invalid_name", "GET", "/crl/Bad!.crl", 404)
        },
        Case {
            starts: b"not found",
            ..case("crl_nested_path", "GET", "/crl/a/default.crl", 404)
        },
        Case {
            allow: Some("GET, HEAD"),
            ..case("crl_post", "POST", "/crl/default.crl", 405)
        },
        Case {
            content_type: Some("application/ocsp-request"),
            ..post("ocsp_post", "/ocsp/default", &valid, 200)
        },
        post("ocsp_post_trailing_slash", "/ocsp/default/", &valid, 200),
        Case {
            content_type: Some("text/plain"),
            ..post("ocsp_post_lenient_type", "/ocsp/default", &valid, 200)
        },
        post("ocsp_post_without_issuer", "/ocsp", &valid, 200),
        post("ocsp_post_unserved_issuer_name", "/ocsp/other", &valid, 200),
        Case {
            too_large: true,
            ..post("ocsp_post_too_large", "/ocsp/default", b"", 413)
        },
        post("ocsp_post_over_limit", "/ocsp/default", &oversize, 413),
        Case {
            allow: Some("POST"),
            ..case("ocsp_get_on_post_url", "GET", "/ocsp/default", 405)
        },
        Case {
            allow: Some("POST"),
            ..case("ocsp_put", "PUT", "/ocsp/default", 405)
        },
        Case {
            allow: Some("GET, HEAD"),
            ..post("ocsp_post_on_get_url", "/ocsp/default/MEIw", &valid, 405)
        },
        Case {
            starts: MALFORMED,
            ..case("ocsp_get_bad_base64", "GET", "/ocsp/default/M%%%", 200)
        },
        case("ocsp_get_too_long", "GET", &huge_get, 414),
        Case {
            starts: b"not found",
            ..case("unknown_path", "GET", "/nothing", 404)
        },
        Case {
            starts: b"not found",
            ..case("root", "GET", "/", 404)
        },
    ];
    for c in cases {
        let case = c.name;
        let response = f
            .server
            .handle(&StatusRequest {
                method: c.method,
                path: c.path,
                content_type: c.content_type,
                body: c.body,
                body_too_large: c.too_large,
            })
            .await;
        assert_eq!(
            response.status,
            c.status,
            "case {case}: {:?}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(response.header_value("allow"), c.allow, "case {case}");
        assert!(response.body.starts_with(c.starts), "case {case}: {:?}", response.body);
        assert!(response.header_value("content-type").is_some(), "case {case}");
    }
}
