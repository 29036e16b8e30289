//! An in-process SCEP server over a real authority, CA, RA and sled store.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use certgate_authority::EndpointPolicy;
use certgate_authority::{KeyType, RaKey, RaOptions};
use certgate_core::{Protocol, SystemClock};
use certgate_scep::message::{MessageType, parse_pki_message};
use certgate_scep::testclient::{self, CertRepView, RequestOptions, ScepClient};
use certgate_scep::{
    ChallengeConfig, ChallengeWebhook, CompatSwitches, NextCa, ScepEndpointConfig, ScepError, ScepRequest,
    ScepResponse, ScepServer, ScepStores, Secret, WebhookRequest,
};
use certgate_store::{ApprovalStore, SledStore};
use certgate_test_support::{TestAuthority, name, test_endpoint};

pub const STATIC_CHALLENGE: &str = "s3cret-challenge";
pub const HOOK_OK: &str = "hook-allows-this";

/// DNS names at or below this are refused by the `strict` endpoint's policy.
pub const DENIED_SUFFIX: &str = "denied.example";

pub const ENDPOINTS: [&str; 9] = [
    "default", "legacy", "approve", "hook", "rollover", "norenew", "strict", "nortc", "fromest",
];

/// An EST endpoint of the same authority (no EST server runs): its certificates are what SCEP
/// renewals must not accept, except on `fromest`, which lists it in `renewal_from_endpoints`.
pub const EST_ENDPOINT: &str = "factory";

fn policy(endpoint: &str) -> EndpointPolicy {
    let mut policy = test_endpoint();
    policy.protocol = Protocol::Scep;
    policy.name = name(endpoint);
    policy.profiles = vec![name("device"), name("tls-client")];
    if endpoint == "strict" {
        // Refuses names under DENIED_SUFFIX and P-256 keys.
        policy.names.denied_dns_suffixes = vec![DENIED_SUFFIX.to_owned()];
        policy.keys.allow_p256 = false;
    }
    policy
}

pub struct Harness {
    pub server: ScepServer,
    pub ta: TestAuthority,
    pub ra: Arc<RaKey>,
}

/// A challenge webhook that allows exactly the challenge [`HOOK_OK`], judging the JSON
/// document a receiver gets. (The HTTP client is the daemon's, over certgate-lifecycle's
/// outbound client; the daemon's end-to-end tests drive it over http and https.)
#[derive(Debug)]
struct HookAllowsOk;

#[async_trait::async_trait]
impl ChallengeWebhook for HookAllowsOk {
    async fn allows(&self, request: &WebhookRequest<'_>) -> Result<bool, ScepError> {
        let body: serde_json::Value = serde_json::from_slice(&request.to_json()?).unwrap();
        Ok(body["challenge"] == HOOK_OK
            && body["endpoint"] == "hook"
            && body["subject"].as_str().unwrap().starts_with("CN=")
            && body["transaction_id"].is_string()
            && body["message_type"] == "PKCSReq"
            && body["key_type"].is_string()
            && body["sans"].is_array())
    }
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_approval_store(|store| Arc::new(store.clone())).await
    }

    /// The same, with the approval queue `approvals(store)` (a test double around the store).
    pub async fn with_approval_store(approvals: impl FnOnce(&SledStore) -> Arc<dyn ApprovalStore>) -> Self {
        let mut policies: Vec<EndpointPolicy> = ENDPOINTS.iter().map(|e| policy(e)).collect();
        policies.push(EndpointPolicy {
            protocol: Protocol::Est,
            ..policy(EST_ENDPOINT)
        });
        let ta = TestAuthority::new(KeyType::P256, policies);
        let ra = Arc::new(
            RaKey::load_or_create(
                &ta.ca.dir.path().join("ra"),
                &ta.ca.issuer,
                &RaOptions::default(),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap(),
        );
        let configs = ENDPOINTS
            .iter()
            .map(|e| {
                let mut config = ScepEndpointConfig::new(name(e), Arc::clone(&ra));
                config.challenge = ChallengeConfig {
                    static_challenge: Some(Secret::new(STATIC_CHALLENGE)),
                    one_time: true,
                    webhook: None,
                };
                match *e {
                    "legacy" => {
                        config.compat = CompatSwitches {
                            certrep_include_ca: true,
                            getcacert_include_root: true,
                            getcacert_exclude_intermediate: false,
                            allow_sha1: true,
                            allow_des_reply: true,
                        }
                    }
                    "approve" => config.require_approval = true,
                    "hook" => {
                        config.challenge = ChallengeConfig {
                            static_challenge: None,
                            one_time: false,
                            webhook: Some(Arc::new(HookAllowsOk)),
                        }
                    }
                    "rollover" => {
                        config.next_ca = Some(NextCa {
                            certificates: vec![ta.ca.issuer.root_der().to_vec()],
                        })
                    }
                    "norenew" => config.renewal = false,
                    // A device without a real-time clock: signingTime is not checked.
                    "nortc" => config.max_clock_skew = None,
                    "fromest" => {
                        config.renewal_from_endpoints = vec![format!("est:{EST_ENDPOINT}").parse().unwrap()];
                    }
                    _ => {}
                }
                config
            })
            .collect();
        let stores = ScepStores {
            approvals: approvals(&ta.store),
            challenges: Arc::new(ta.store.clone()),
        };
        let server = ScepServer::new(configs, stores, Arc::clone(&ta.authority), Arc::new(SystemClock)).unwrap();
        Self { server, ta, ra }
    }

    pub fn ra_der(&self) -> Vec<u8> {
        self.ra.certificate_der().to_vec()
    }

    pub async fn get(&self, path: &str, query: &str) -> ScepResponse {
        self.server
            .handle(&ScepRequest {
                method: "GET",
                path,
                query: Some(query),
                body: &[],
                body_too_large: false,
                peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            })
            .await
    }

    pub async fn post(&self, path: &str, query: Option<&str>, body: &[u8]) -> ScepResponse {
        self.server
            .handle(&ScepRequest {
                method: "POST",
                path,
                query,
                body,
                body_too_large: false,
                peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            })
            .await
    }

    /// Sends a PKIMessage (POST or GET), checks the CertRep's envelope fields (transactionID
    /// echoed, recipientNonce = our senderNonce, fresh senderNonce) and opens it.
    pub async fn exchange(
        &self,
        endpoint: &str,
        client: &ScepClient,
        message: &[u8],
        via_get: bool,
    ) -> (Vec<u8>, CertRepView) {
        let path = format!("/scep/{endpoint}");
        let response = if via_get {
            let query = format!(
                "operation=PKIOperation&message={}",
                testclient::get_message_param(message)
            );
            self.get(&path, &query).await
        } else {
            self.post(&path, Some("operation=PKIOperation"), message).await
        };
        assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
        assert_eq!(response.header_value("content-type"), Some("application/x-pki-message"));
        let view = client.open_cert_rep(&response.body, self.ra.certificate_der()).unwrap();
        let request = parse_pki_message(message).unwrap();
        assert_eq!(view.transaction_id, request.transaction_id);
        assert_eq!(view.recipient_nonce.as_deref(), Some(request.sender_nonce.as_slice()));
        assert_ne!(view.sender_nonce, request.sender_nonce);
        assert_eq!(view.sender_nonce.len(), 16);
        (response.body, view)
    }

    /// A PKCSReq for CN=`cn` on the client's own key with `challenge`.
    pub async fn enroll(
        &self,
        endpoint: &str,
        client: &ScepClient,
        cn: &str,
        challenge: Option<&str>,
        options: &RequestOptions,
    ) -> CertRepView {
        let csr = testclient::csr(client.key(), cn, &[], challenge).unwrap();
        let message = client.pki_message(self.ra.certificate_der(), &csr, options).unwrap();
        self.exchange(endpoint, client, &message, false).await.1
    }
}

pub fn options(message_type: MessageType) -> RequestOptions {
    RequestOptions::new(message_type)
}
