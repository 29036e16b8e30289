//! The ACME client: nonce bookkeeping, signed POSTs, and the RFC 8555 flows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use hyper::body::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::jws::{JwsParts, Payload, Signer, eab_jws, key_change_inner};
use super::key::{AccountKey, b64};
use super::transport::{Connection, Connector};
use super::types::{Account, Authorization, Challenge, Directory, Order, Response};
use crate::Error;

/// The content type of every signed ACME request.
pub const JOSE_JSON: &str = "application/jose+json";

/// Who signs a revocation (RFC 8555 section 7.6).
#[derive(Clone, Copy, Debug)]
pub enum RevokeBy<'a> {
    /// The client's account (`kid`).
    Account,
    /// The certificate's own key (`jwk`), e.g. from [`super::CsrKey::key`].
    CertKey(&'a AccountKey),
}

/// The longest `Retry-After` the poller honours; longer ones are ignored and polling goes on
/// with the short backoff, since a benchmark measures the server, not its advice.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The backoff cap between polls.
pub const MAX_POLL_BACKOFF: Duration = Duration::from_millis(50);

/// One ACME client: one account key, one kept-alive connection, one nonce.
///
/// Methods take `&mut self`: a client does one request at a time, as one HTTP/1.1 connection
/// does. Run many clients for concurrency.
#[derive(Debug)]
pub struct Client {
    conn: Connection,
    directory_url: String,
    directory: Option<Arc<Directory>>,
    nonce: Option<String>,
    key: AccountKey,
    account_url: Option<String>,
    retry_bad_nonce: bool,
    poll_timeout: Duration,
    requests: u64,
}

impl Client {
    /// A client for the server whose directory is at `directory_url`. No I/O yet.
    pub fn new(connector: &Connector, directory_url: &str, key: AccountKey) -> Self {
        Client {
            conn: Connection::new(connector.clone()),
            directory_url: directory_url.to_owned(),
            directory: None,
            nonce: None,
            key,
            account_url: None,
            retry_bad_nonce: true,
            poll_timeout: connector.timeout(),
            requests: 0,
        }
    }

    /// The account key.
    pub fn key(&self) -> &AccountKey {
        &self.key
    }

    /// The account URL once known.
    pub fn account_url(&self) -> Option<&str> {
        self.account_url.as_deref()
    }

    /// Uses an existing account (key and URL) from now on.
    pub fn set_account(&mut self, key: AccountKey, account_url: impl Into<String>) {
        self.key = key;
        self.account_url = Some(account_url.into());
    }

    /// Whether a `badNonce` answer is retried once with the nonce it carried (on by default,
    /// as certbot and lego do; tests of nonce handling turn it off).
    pub fn set_retry_bad_nonce(&mut self, on: bool) {
        self.retry_bad_nonce = on;
    }

    /// How long [`Client::poll_until`] polls before giving up (default: the request timeout).
    pub fn set_poll_timeout(&mut self, timeout: Duration) {
        self.poll_timeout = timeout;
    }

    /// The nonce the next signed request will use, if one is held.
    pub fn stored_nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// Replaces the held nonce (a test can replay an old one).
    pub fn set_nonce(&mut self, nonce: Option<String>) {
        self.nonce = nonce;
    }

    /// TCP connections opened so far (1 when the server keeps connections alive).
    pub fn connections_opened(&self) -> u64 {
        self.conn.connects
    }

    /// HTTP requests sent so far (a badNonce retry counts; a resend after a stale connection not).
    pub fn requests_sent(&self) -> u64 {
        self.requests
    }

    /// Sends any request and keeps the `Replay-Nonce` it answers with.
    pub async fn send(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&'static str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, Error> {
        self.requests += 1;
        let response = self.conn.request(method, url, headers, Bytes::from(body)).await?;
        if let Some(nonce) = response.nonce() {
            self.nonce = Some(nonce.to_owned());
        }
        Ok(response)
    }

    /// The directory, fetched once and cached.
    pub async fn directory(&mut self) -> Result<Arc<Directory>, Error> {
        if let Some(d) = &self.directory {
            return Ok(d.clone());
        }
        let url = self.directory_url.clone();
        let response = expect_success(&url, self.send(Method::GET, &url, &[], Vec::new()).await?)?;
        let directory: Arc<Directory> = Arc::new(serde_json::from_slice(&response.body)?);
        self.directory = Some(directory.clone());
        Ok(directory)
    }

    /// A nonce for the next request: the held one, else a fresh one from `HEAD newNonce`.
    pub async fn fresh_nonce(&mut self) -> Result<String, Error> {
        if let Some(n) = self.nonce.take() {
            return Ok(n);
        }
        let url = self.directory().await?.new_nonce.clone();
        let response = self.send(Method::HEAD, &url, &[], Vec::new()).await?;
        let response = expect_success(&url, response)?;
        let nonce = response.nonce().map(str::to_owned);
        self.nonce = None;
        nonce.ok_or(Error::Missing {
            url,
            what: "Replay-Nonce",
        })
    }

    /// A signed POST whose body `build` makes from a nonce; the hook for forged requests that
    /// still want nonce handling. A `badNonce` answer is retried once (see
    /// [`Client::set_retry_bad_nonce`]) with the nonce that answer carried.
    pub async fn post_with<F>(&mut self, url: &str, build: F) -> Result<Response, Error>
    where
        F: FnMut(&str) -> Result<Vec<u8>, Error>,
    {
        self.signed_post(url, &[("content-type", JOSE_JSON)], build).await
    }

    async fn signed_post<F>(
        &mut self,
        url: &str,
        headers: &[(&'static str, &str)],
        mut build: F,
    ) -> Result<Response, Error>
    where
        F: FnMut(&str) -> Result<Vec<u8>, Error>,
    {
        let mut retried = false;
        loop {
            let nonce = self.fresh_nonce().await?;
            let body = build(&nonce)?;
            let response = self.send(Method::POST, url, headers, body).await?;
            if self.retry_bad_nonce && !retried && response.is_acme_error("badNonce") {
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }

    /// A POST signed as RFC 8555 wants it.
    pub async fn post(&mut self, url: &str, payload: Payload, signer: &Signer<'_>) -> Result<Response, Error> {
        self.post_with(url, |nonce| {
            Ok(JwsParts::new(url, Some(nonce), &payload, signer)
                .sign(signer.key())?
                .to_body())
        })
        .await
    }

    /// A POST signed by the client's account (`kid`).
    pub async fn post_as_account(&mut self, url: &str, payload: Payload) -> Result<Response, Error> {
        let key = self.key.clone();
        let kid = self.account_url.clone().ok_or(Error::NoAccount)?;
        self.post(url, payload, &Signer::Kid(&key, &kid)).await
    }

    /// A POST of arbitrary bytes with the given content type: no signing, no nonce handling.
    pub async fn post_raw(&mut self, url: &str, body: Vec<u8>, content_type: &str) -> Result<Response, Error> {
        self.send(Method::POST, url, &[("content-type", content_type)], body)
            .await
    }

    /// newAccount; keeps the account URL for later requests. `eab` is (key identifier, MAC key).
    pub async fn new_account(
        &mut self,
        contact: &[String],
        terms_of_service_agreed: bool,
        eab: Option<(&str, &[u8])>,
    ) -> Result<Account, Error> {
        let url = self.directory().await?.new_account.clone();
        let mut payload = Map::new();
        payload.insert("termsOfServiceAgreed".into(), terms_of_service_agreed.into());
        if !contact.is_empty() {
            payload.insert("contact".into(), json!(contact));
        }
        if let Some((kid, mac_key)) = eab {
            payload.insert(
                "externalAccountBinding".into(),
                eab_jws(&self.key, kid, mac_key, &url).to_value(),
            );
        }
        let key = self.key.clone();
        let response = self
            .post(&url, Payload::Json(Value::Object(payload)), &Signer::Jwk(&key))
            .await?;
        let response = expect_success(&url, response)?;
        let location = location(&url, &response)?;
        let mut account: Account = parse(&response)?;
        account.url = location.clone();
        self.account_url = Some(location);
        Ok(account)
    }

    /// newOrder for `(type, value)` identifiers; `extra` adds members (notBefore, profile, ...).
    pub async fn new_order(
        &mut self,
        identifiers: &[(&str, &str)],
        extra: Option<Map<String, Value>>,
    ) -> Result<Order, Error> {
        let url = self.directory().await?.new_order.clone();
        let mut payload = extra.unwrap_or_default();
        let ids: Vec<Value> = identifiers
            .iter()
            .map(|(kind, value)| json!({"type": kind, "value": value}))
            .collect();
        payload.insert("identifiers".into(), Value::Array(ids));
        let response = self
            .post_as_account(&url, Payload::Json(Value::Object(payload)))
            .await?;
        let response = expect_success(&url, response)?;
        let location = location(&url, &response)?;
        let mut order: Order = parse(&response)?;
        order.url = location;
        Ok(order)
    }

    /// Fetches an order (POST-as-GET).
    pub async fn order(&mut self, url: &str) -> Result<Order, Error> {
        let response = expect_success(url, self.post_as_account(url, Payload::Empty).await?)?;
        let mut order: Order = parse(&response)?;
        order.url = url.to_owned();
        Ok(order)
    }

    /// Fetches an authorization (POST-as-GET).
    pub async fn authorization(&mut self, url: &str) -> Result<Authorization, Error> {
        let response = expect_success(url, self.post_as_account(url, Payload::Empty).await?)?;
        let mut authz: Authorization = parse(&response)?;
        authz.url = url.to_owned();
        Ok(authz)
    }

    /// Tells the server to validate a challenge (POST `{}`).
    pub async fn respond(&mut self, challenge_url: &str) -> Result<Challenge, Error> {
        let response = self.post_as_account(challenge_url, Payload::Json(json!({}))).await?;
        parse(&expect_success(challenge_url, response)?)
    }

    /// POST-as-GETs `url` until `done` accepts the object. Honours `Retry-After` only up to
    /// [`MAX_RETRY_AFTER`]; otherwise yields, then waits 1, 2, 4 ... ms up to
    /// [`MAX_POLL_BACKOFF`]. An object in a final state `done` rejects (invalid, deactivated,
    /// revoked, expired) ends the poll with [`Error::Failed`].
    pub async fn poll_until<F>(&mut self, url: &str, mut done: F) -> Result<Value, Error>
    where
        F: FnMut(&Value) -> bool,
    {
        let deadline = Instant::now() + self.poll_timeout;
        let mut backoff = Duration::ZERO;
        loop {
            let response = expect_success(url, self.post_as_account(url, Payload::Empty).await?)?;
            let object = response.json()?;
            if done(&object) {
                return Ok(object);
            }
            let status = object
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("(none)")
                .to_owned();
            if matches!(status.as_str(), "invalid" | "deactivated" | "revoked" | "expired") {
                return Err(Error::Failed {
                    url: url.to_owned(),
                    status,
                    body: object,
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::PollTimeout {
                    url: url.to_owned(),
                    status,
                    timeout: self.poll_timeout,
                });
            }
            match response.retry_after() {
                Some(wait) if wait <= MAX_RETRY_AFTER => tokio::time::sleep(wait).await,
                _ if backoff.is_zero() => {
                    tokio::task::yield_now().await;
                    backoff = Duration::from_millis(1);
                }
                _ => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_POLL_BACKOFF);
                }
            }
        }
    }

    /// Polls until the object's status is one of `wanted`.
    pub async fn poll_status(&mut self, url: &str, wanted: &[&str]) -> Result<Value, Error> {
        self.poll_until(url, |v| {
            v.get("status")
                .and_then(Value::as_str)
                .is_some_and(|s| wanted.contains(&s))
        })
        .await
    }

    /// Sends the CSR to the order's finalize URL; the answer may still be `processing`.
    pub async fn finalize(&mut self, order: &Order, csr_der: &[u8]) -> Result<Order, Error> {
        let response = self
            .post_as_account(&order.finalize, Payload::Json(json!({"csr": b64(csr_der)})))
            .await?;
        let response = expect_success(&order.finalize, response)?;
        let mut updated: Order = parse(&response)?;
        updated.url = response.location().map_or_else(|| order.url.clone(), str::to_owned);
        Ok(updated)
    }

    /// Downloads the certificate chain as PEM.
    pub async fn download(&mut self, cert_url: &str) -> Result<String, Error> {
        let key = self.key.clone();
        let kid = self.account_url.clone().ok_or(Error::NoAccount)?;
        let signer = Signer::Kid(&key, &kid);
        let headers = [
            ("content-type", JOSE_JSON),
            ("accept", "application/pem-certificate-chain"),
        ];
        let response = self
            .signed_post(cert_url, &headers, |nonce| {
                Ok(JwsParts::new(cert_url, Some(nonce), &Payload::Empty, &signer)
                    .sign(&key)?
                    .to_body())
            })
            .await?;
        let response = expect_success(cert_url, response)?;
        String::from_utf8(response.body.to_vec()).map_err(|_| Error::Missing {
            url: cert_url.to_owned(),
            what: "a UTF-8 PEM body",
        })
    }

    /// revokeCert for a DER certificate, with an optional RFC 5280 reason code.
    pub async fn revoke(&mut self, cert_der: &[u8], reason: Option<u8>, by: RevokeBy<'_>) -> Result<(), Error> {
        let url = self
            .directory()
            .await?
            .revoke_cert
            .clone()
            .ok_or_else(|| Error::Missing {
                url: self.directory_url.clone(),
                what: "revokeCert",
            })?;
        let mut payload = json!({"certificate": b64(cert_der)});
        if let Some(reason) = reason {
            payload["reason"] = reason.into();
        }
        let response = match by {
            RevokeBy::Account => self.post_as_account(&url, Payload::Json(payload)).await?,
            RevokeBy::CertKey(key) => self.post(&url, Payload::Json(payload), &Signer::Jwk(key)).await?,
        };
        expect_success(&url, response).map(drop)
    }

    /// Rolls the account over to `new_key` (RFC 8555 section 7.3.5); later requests use it.
    pub async fn key_change(&mut self, new_key: AccountKey) -> Result<(), Error> {
        let url = self
            .directory()
            .await?
            .key_change
            .clone()
            .ok_or_else(|| Error::Missing {
                url: self.directory_url.clone(),
                what: "keyChange",
            })?;
        let kid = self.account_url.clone().ok_or(Error::NoAccount)?;
        let inner = key_change_inner(&new_key, &self.key, &kid, &url)?;
        let response = self.post_as_account(&url, Payload::Json(inner.to_value())).await?;
        expect_success(&url, response)?;
        self.key = new_key;
        Ok(())
    }

    /// Deactivates the account (RFC 8555 section 7.3.6).
    pub async fn deactivate(&mut self) -> Result<Account, Error> {
        let url = self.account_url.clone().ok_or(Error::NoAccount)?;
        let response = self
            .post_as_account(&url, Payload::Json(json!({"status": "deactivated"})))
            .await?;
        let mut account: Account = parse(&expect_success(&url, response)?)?;
        account.url = url;
        Ok(account)
    }
}

/// A 2xx answer passes; anything else becomes [`Error::Server`] with its problem document.
pub fn expect_success(url: &str, response: Response) -> Result<Response, Error> {
    if response.status.is_success() {
        Ok(response)
    } else {
        Err(Error::Server {
            url: url.to_owned(),
            status: response.status,
            problem: response.problem().map(Box::new),
            retry_after: response.retry_after(),
        })
    }
}

fn location(url: &str, response: &Response) -> Result<String, Error> {
    response.location().map(str::to_owned).ok_or_else(|| Error::Missing {
        url: url.to_owned(),
        what: "Location",
    })
}

fn parse<T: DeserializeOwned>(response: &Response) -> Result<T, Error> {
    Ok(serde_json::from_slice(&response.body)?)
}
