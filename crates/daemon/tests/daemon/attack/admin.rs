//! The admin API and `/metrics` under attack: missing, wrong and foreign credentials, a
//! read-only token writing, the API on the plain-HTTP listener, oversized, nested and
//! truncated bodies, absurd queries, spreadsheet formulas in the CSV export, and metrics from
//! a network that is not allowed.

use std::sync::Arc;

use super::acme_client::serial_hex;
use super::harness::{Area, Case, Expect, Listener, Outcome, SendOptions, Target, basic, case, finish, run_cases};
use super::{est, hostile};

/// A subject and an owner label that a spreadsheet would run as formulas.
const FORMULA: &str = "=cmd|' /C calc'!A0";

/// The embedded endpoints, `/metrics` open to no network without a token, and an EST
/// endpoint `formula` whose owner label is a spreadsheet formula.
fn config() -> String {
    format!(
        "[metrics]\nallow_networks = []\n\
         [[endpoints]]\nprotocol = \"acme\"\nname = \"default\"\n\
         [[endpoints]]\nprotocol = \"est\"\nname = \"default\"\nprofiles = [\"device\"]\n\
         [[endpoints]]\nprotocol = \"scep\"\nname = \"default\"\nprofiles = [\"device\"]\n\
         [[endpoints]]\nprotocol = \"est\"\nname = \"formula\"\nprofiles = [\"device\"]\n\
         owner_labels = {{ \"{FORMULA}\" = \"+SUM(1,2)\", team = \"@attack\" }}\n"
    )
}

/// The daemon, a read-only token, and a certificate the cases try to revoke.
pub struct Ctx {
    target: Target,
    read_only: String,
    serial: String,
}

impl Area for Ctx {
    fn target(&self) -> &Target {
        &self.target
    }

    fn target_mut(&mut self) -> &mut Target {
        &mut self.target
    }
}

impl Ctx {
    async fn start() -> Arc<Self> {
        let target = Target::start(&config());
        let (ok, out, err) = target.cli(&["admin", "token", "create", "--name", "viewer", "--role", "read-only"]);
        assert!(ok, "read-only token: {out}{err}");
        est::add_user(&target, None, "device", "device-pass");
        est::add_user(&target, Some("formula"), "device", "device-pass");
        let key = rcgen::KeyPair::generate().expect("P-256 key");
        let leaf = est::enroll(&target, None, "device", "device-pass", &key, "revocation-target").await;
        let key = rcgen::KeyPair::generate().expect("P-256 key");
        est::enroll(&target, Some("formula"), "device", "device-pass", &key, FORMULA).await;
        Arc::new(Self {
            target,
            read_only: format!("Bearer {}", out.trim()),
            serial: serial_hex(&leaf),
        })
    }

    /// A request on the HTTPS listener with this `Authorization` (none when `None`).
    async fn call(&self, method: &str, path: &str, authorization: Option<&str>, body: &[u8]) -> Outcome {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(value) = authorization {
            headers.push(("authorization", value));
        }
        self.target.request(Listener::Https, method, path, &headers, body).await
    }

    /// The same with the admin token.
    async fn admin(&self, method: &str, path: &str, body: &[u8]) -> Outcome {
        self.call(method, path, Some(&self.target.bearer()), body).await
    }

    fn revoke_path(&self) -> String {
        format!("/admin/v1/certificates/{}/revoke", self.serial)
    }

    /// `outcome` was `expect`, and the certificate was not revoked.
    async fn still_valid(&self, expect: Expect, outcome: Outcome) -> Outcome {
        let answer = super::harness::check(expect, &outcome);
        Outcome::Checked(answer.and(self.target.not_revoked(&self.serial).await))
    }
}

/// Parses RFC 4180 CSV (quoted fields may hold commas, quotes and line breaks).
fn csv_fields(text: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, other) => field.push(other),
            (false, '"') => quoted = true,
            (false, ',' | '\n') => fields.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, other) => field.push(other),
        }
    }
    fields.push(field);
    fields
}

/// The CSV export holds the formula certificate, and no cell starts with a character that
/// makes a spreadsheet evaluate it (OWASP CSV injection: `=`, `+`, `-`, `@`, tab, CR).
async fn csv_neutralised(c: &Ctx) -> Result<(), String> {
    let answer = match c.admin("GET", "/admin/v1/certificates/export?format=csv", b"").await {
        Outcome::Answer(answer) if answer.status == 200 => answer,
        other => return Err(format!("CSV export: {other:?}")),
    };
    let text = answer.text();
    if !text.contains("cmd|") {
        return Err(format!("the formula certificate is not in the export: {text}"));
    }
    let dangerous: Vec<String> = csv_fields(&text)
        .into_iter()
        .filter(|f| f.starts_with(['=', '+', '-', '@', '\t', '\r']))
        .collect();
    if dangerous.is_empty() {
        Ok(())
    } else {
        Err(format!("cells a spreadsheet would evaluate: {dangerous:?}"))
    }
}

/// Every admin API and metrics case.
pub fn cases() -> Vec<Case<Ctx>> {
    let mut all = credential_cases();
    all.extend(listener_cases());
    all.extend(request_cases());
    all
}

/// Credentials: none, wrong, foreign, read-only.
fn credential_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("admin_without_token", Expect::Status(401), |c| c
            .call("GET", "/admin/v1/certificates", None, b"")
            .await),
        case!("admin_unknown_token", Expect::Status(401), |c| {
            c.call(
                "GET",
                "/admin/v1/certificates",
                Some("Bearer cgt_0123456789abcdef_nope"),
                b"",
            )
            .await
        }),
        case!("admin_bearer_garbage", Expect::Status(401), |c| {
            c.call("GET", "/admin/v1/certificates", Some("Bearer ../../etc;--'\"%00"), b"")
                .await
        }),
        case!("admin_bearer_32k", Expect::Status(401), |c| {
            let token = format!("Bearer cgt_{}", "f".repeat(32 * 1024));
            c.call("GET", "/admin/v1/certificates", Some(&token), b"").await
        }),
        case!("admin_token_in_query_only", Expect::Status(401), |c| {
            let path = format!("/admin/v1/certificates?token={}", c.target.token);
            c.call("GET", &path, None, b"").await
        }),
        case!("admin_est_basic_credentials", Expect::Status(401), |c| {
            c.call(
                "GET",
                "/admin/v1/certificates",
                Some(&basic("device", "device-pass")),
                b"",
            )
            .await
        }),
        case!("admin_read_only_token_revokes", Expect::Checked, |c| {
            let outcome = c
                .call(
                    "POST",
                    &c.revoke_path(),
                    Some(&c.read_only),
                    br#"{"reason":"keyCompromise"}"#,
                )
                .await;
            c.still_valid(Expect::Status(403), outcome).await
        }),
        case!("admin_read_only_token_creates_token", Expect::Status(403), |c| {
            let body = br#"{"name":"escalated","role":"admin"}"#;
            c.call("POST", "/admin/v1/tokens", Some(&c.read_only), body).await
        }),
        case!("admin_read_only_token_creates_eab_key", Expect::Status(403), |c| {
            c.call(
                "POST",
                "/admin/v1/acme/eab",
                Some(&c.read_only),
                br#"{"endpoint":"default"}"#,
            )
            .await
        }),
    ]
}

/// The admin API on the plain-HTTP listener, and `/metrics` for the wrong client.
fn listener_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("admin_api_on_plain_http_listener", Expect::Status(404), |c| {
            let bearer = c.target.bearer();
            let headers = [("authorization", bearer.as_str())];
            c.target
                .request(Listener::Http, "GET", "/admin/v1/certificates", &headers, b"")
                .await
        }),
        case!("admin_revoke_on_plain_http_listener", Expect::Checked, |c| {
            let bearer = c.target.bearer();
            let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
            let body = br#"{"reason":"keyCompromise"}"#;
            let outcome = c
                .target
                .request(Listener::Http, "POST", &c.revoke_path(), &headers, body)
                .await;
            c.still_valid(Expect::Status(404), outcome).await
        }),
        case!("metrics_from_network_not_allowed", Expect::Status(403), |c| {
            c.target.request(Listener::Https, "GET", "/metrics", &[], b"").await
        }),
        case!("metrics_with_admin_token", Expect::Status(403), |c| {
            let bearer = c.target.bearer();
            c.target
                .request(Listener::Http, "GET", "/metrics", &[("authorization", &bearer)], b"")
                .await
        }),
    ]
}

/// Bodies and queries: oversized, nested, truncated, absurd; the CSV export.
fn request_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("admin_body_over_64k", Expect::Checked, |c| {
            let outcome = c.admin("POST", &c.revoke_path(), &vec![b' '; 65 * 1024]).await;
            c.still_valid(Expect::Status(413), outcome).await
        }),
        case!("admin_body_nested_10000", Expect::Checked, |c| {
            let body = hostile::deep_json_array(10_000);
            let outcome = c.admin("POST", &c.revoke_path(), body.as_bytes()).await;
            c.still_valid(Expect::Status(400), outcome).await
        }),
        case!("admin_token_create_nested_10000", Expect::Status(400), |c| {
            c.admin("POST", "/admin/v1/tokens", hostile::deep_json_array(10_000).as_bytes())
                .await
        }),
        case!(
            "admin_body_truncated_stream",
            Expect::StatusOrClosed(&[400, 413]),
            |c| {
                let mut bytes = format!(
                    "POST {} HTTP/1.1\r\nhost: {}\r\nauthorization: {}\r\ncontent-type: application/json\r\n\
                 content-length: 500\r\nconnection: close\r\n\r\n{{\"reason\":",
                    c.revoke_path(),
                    c.target.host(Listener::Https),
                    c.target.bearer()
                )
                .into_bytes();
                bytes.extend_from_slice(b"\"keyComp");
                let send = SendOptions {
                    half_close: true,
                    ..SendOptions::default()
                };
                c.target.exchange_with(Listener::Https, bytes, &send).await
            }
        ),
        case!("admin_revoke_unknown_reason", Expect::Checked, |c| {
            let outcome = c
                .admin("POST", &c.revoke_path(), br#"{"reason":"becauseISaidSo"}"#)
                .await;
            c.still_valid(Expect::Status(400), outcome).await
        }),
        case!("admin_revoke_unknown_serial", Expect::Status(404), |c| {
            c.admin(
                "POST",
                "/admin/v1/certificates/0BADC0DE0BADC0DE/revoke",
                br#"{"reason":"keyCompromise"}"#,
            )
            .await
        }),
        case!("admin_revoke_serial_not_hex", Expect::Status(400), |c| {
            c.admin(
                "POST",
                "/admin/v1/certificates/..%2F..%2Fetc/revoke",
                br#"{"reason":"keyCompromise"}"#,
            )
            .await
        }),
        case!("admin_list_absurd_limit", Expect::Status(400), |c| {
            c.admin("GET", "/admin/v1/certificates?limit=99999999999999999999999", b"")
                .await
        }),
        case!("admin_list_absurd_expiry_window", Expect::Status(400), |c| {
            c.admin("GET", "/admin/v1/certificates?expiring_within_days=4000000000", b"")
                .await
        }),
        case!("admin_export_unknown_format", Expect::Status(400), |c| {
            c.admin("GET", "/admin/v1/certificates/export?format=xlsx", b"").await
        }),
        case!("admin_path_traversal", Expect::Status(404), |c| {
            c.admin("GET", "/admin/v1/../../../etc/passwd", b"").await
        }),
        case!("admin_csv_export_neutralises_formulas", Expect::Checked, |c| {
            Outcome::Checked(csv_neutralised(&c).await)
        }),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_attacks() {
    let ctx = Ctx::start().await;
    run_cases(Arc::clone(&ctx), cases()).await;
    finish(ctx);
}
