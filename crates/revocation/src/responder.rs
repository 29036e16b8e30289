//! OCSP: answering a parsed request from the store, signing with the issuer's delegated
//! signer, and caching answers to plain requests.

use std::sync::Arc;

use const_oid::db::rfc5912::ECDSA_WITH_SHA_256;
use const_oid::db::rfc6960::{ID_PKIX_OCSP_BASIC, ID_PKIX_OCSP_NONCE};
use der::asn1::{Any, BitString, GeneralizedTime, Null, OctetString};
use der::{Decode, Encode};
use time::OffsetDateTime;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::RevocationError;
use crate::asn1::{self, CertStatus, ResponseStatus, RevokedInfo, SingleResponse};
use crate::cache::CachedResponse;
use crate::request::{ParsedCertId, ParsedOcspRequest, parse_ocsp_request};
use crate::service::{IssuerState, RevocationService, lock, read, write};
use certgate_core::{Name, RevocationReason};
use certgate_signer::OcspSigner;
use certgate_store::StoreError;

/// The OCSPResponseStatus of an answer (RFC 6960 4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OcspResponseStatus {
    /// A signed BasicOCSPResponse follows.
    Successful,
    /// The request did not parse.
    MalformedRequest,
    /// certgate failed (the store, the signer).
    InternalError,
    /// No CertID names an issuer this responder serves.
    Unauthorized,
}

impl OcspResponseStatus {
    /// The name RFC 6960 uses, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Successful => "successful",
            Self::MalformedRequest => "malformedRequest",
            Self::InternalError => "internalError",
            Self::Unauthorized => "unauthorized",
        }
    }

    fn wire(self) -> ResponseStatus {
        match self {
            Self::Successful => ResponseStatus::Successful,
            Self::MalformedRequest => ResponseStatus::MalformedRequest,
            Self::InternalError => ResponseStatus::InternalError,
            Self::Unauthorized => ResponseStatus::Unauthorized,
        }
    }
}

/// An OCSP answer: always an OCSPResponse to send with HTTP 200, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspAnswer {
    /// The OCSPResponse, DER.
    pub der: Arc<Vec<u8>>,
    /// Its status.
    pub status: OcspResponseStatus,
    /// How long an HTTP cache may keep it, in seconds: set for cacheable answers (one CertID,
    /// no nonce), none otherwise.
    pub max_age: Option<u64>,
    /// Whether it came from the response cache.
    pub from_cache: bool,
}

impl OcspAnswer {
    pub(crate) fn unsigned(status: OcspResponseStatus) -> Self {
        let response = asn1::OcspResponse {
            response_status: status.wire(),
            response_bytes: None,
        };
        Self {
            // An ENUMERATED in a SEQUENCE always encodes; the fallback is the same five bytes.
            der: Arc::new(
                response
                    .to_der()
                    .unwrap_or_else(|_| vec![0x30, 0x03, 0x0a, 0x01, status.wire() as u8]),
            ),
            status,
            max_age: None,
            from_cache: false,
        }
    }
}

/// What the responder says about one certificate.
enum Status {
    Good,
    Revoked {
        at: OffsetDateTime,
        reason: RevocationReason,
    },
    Unknown,
}

impl RevocationService {
    /// Answers a DER OCSPRequest. `issuer_hint` is the issuer named in the URL, if any: it
    /// picks the responding issuer when CertIDs match several, but the CertIDs' hashes decide.
    /// Never fails: a request that does not parse is answered `malformedRequest`, one about no
    /// served issuer `unauthorized`, a store or signer failure `internalError` (logged).
    pub async fn ocsp(&self, issuer_hint: Option<&Name>, request_der: &[u8]) -> OcspAnswer {
        let request = match parse_ocsp_request(request_der) {
            Ok(request) => request,
            Err(error) => {
                tracing::debug!(%error, "OCSP request refused");
                return OcspAnswer::unsigned(OcspResponseStatus::MalformedRequest);
            }
        };
        // Whole seconds, as the response's times are encoded: max-age then counts exactly.
        let now = self.clock.now();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        // Read before the store, as for CRLs: a revocation after this makes the answer stale.
        let generation = self.generation();
        let cache_key = match request.cert_ids.as_slice() {
            [only] if request.cacheable() => only.raw.to_der().ok(),
            _ => None,
        };
        if let Some(key) = &cache_key
            && let Some(hit) = lock(&self.cache).get(key, now, generation)
        {
            Self::count(&self.counters.ocsp_cache_hits);
            return OcspAnswer {
                der: hit.der,
                status: OcspResponseStatus::Successful,
                max_age: Some(seconds_until(now, hit.expires)),
                from_cache: true,
            };
        }
        let Some(state) = self.responding_issuer(issuer_hint, &request) else {
            return OcspAnswer::unsigned(OcspResponseStatus::Unauthorized);
        };
        match self.sign_response(state, &request, now).await {
            Ok((der, next_update)) => {
                let der = Arc::new(der);
                let max_age = cache_key.map(|key| {
                    // Served until a tenth of the validity remains, so a client (or HTTP
                    // cache) never gets a response about to expire.
                    let validity = self.settings.ocsp_validity;
                    let expires = (now + validity).min(next_update) - validity / 10;
                    lock(&self.cache).insert(
                        key,
                        CachedResponse {
                            der: Arc::clone(&der),
                            expires,
                        },
                        generation,
                    );
                    seconds_until(now, expires)
                });
                OcspAnswer {
                    der,
                    status: OcspResponseStatus::Successful,
                    max_age,
                    from_cache: false,
                }
            }
            Err(error) => {
                tracing::error!(issuer = %state.issuer.name(), %error, "OCSP response failed");
                OcspAnswer::unsigned(OcspResponseStatus::InternalError)
            }
        }
    }

    /// The issuer that answers: the hinted one if a CertID names it, else the first named.
    fn responding_issuer(&self, hint: Option<&Name>, request: &ParsedOcspRequest) -> Option<&IssuerState> {
        let named = |state: &IssuerState| request.cert_ids.iter().any(|id| state.hashes.matches(id));
        hint.and_then(|name| self.state(name))
            .filter(|state| named(state))
            .or_else(|| {
                request
                    .cert_ids
                    .iter()
                    .find_map(|id| self.issuers.iter().find(|s| s.hashes.matches(id)))
            })
    }

    async fn sign_response(
        &self,
        state: &IssuerState,
        request: &ParsedOcspRequest,
        now: OffsetDateTime,
    ) -> Result<(Vec<u8>, OffsetDateTime), RevocationError> {
        let signer = self.signer(state, now).await?;
        let next_update = (now + self.settings.ocsp_validity).min(signer.not_after());
        let next_update_time = next_update;
        let (this_update, next_update) = (generalized_time(now)?, generalized_time(next_update)?);
        let mut responses = Vec::with_capacity(request.cert_ids.len());
        for id in &request.cert_ids {
            let cert_status = match self.status(state, id).await? {
                Status::Good => CertStatus::Good(Null),
                Status::Unknown => CertStatus::Unknown(Null),
                Status::Revoked { at, reason } => CertStatus::Revoked(RevokedInfo {
                    revocation_time: generalized_time(at)?,
                    // RFC 5280 5.3.1 (which RFC 6960 follows): omit rather than say unspecified.
                    revocation_reason: crl_reason(reason),
                }),
            };
            responses.push(SingleResponse {
                cert_id: id.raw.clone(),
                cert_status,
                this_update,
                next_update: Some(next_update),
                single_extensions: None,
            });
        }
        let response_extensions = match &request.nonce {
            Some(nonce) => Some(vec![Extension {
                extn_id: ID_PKIX_OCSP_NONCE,
                critical: false,
                extn_value: OctetString::new(nonce.clone())?,
            }]),
            None => None,
        };
        let tbs = asn1::ResponseData {
            version: asn1::Version::V1,
            responder_id: asn1::ResponderId::ByKey(OctetString::new(signer.key_hash_sha1().to_vec())?),
            produced_at: this_update,
            responses,
            response_extensions,
        };
        let tbs_der = tbs.to_der()?;
        let signature = signer.sign(&tbs_der)?;
        Self::count(&self.counters.ocsp_signatures);
        let basic = asn1::BasicOcspResponse {
            tbs_response_data: Any::from_der(&tbs_der)?,
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: ECDSA_WITH_SHA_256,
                parameters: None,
            },
            signature: BitString::from_bytes(&signature)?,
            certs: Some(vec![Any::from_der(signer.certificate_der())?]),
        };
        let response = asn1::OcspResponse {
            response_status: ResponseStatus::Successful,
            response_bytes: Some(asn1::ResponseBytes {
                response_type: ID_PKIX_OCSP_BASIC,
                response: OctetString::new(basic.to_der()?)?,
            }),
        };
        Ok((response.to_der()?, next_update_time))
    }

    async fn status(&self, state: &IssuerState, id: &ParsedCertId) -> Result<Status, RevocationError> {
        if !state.hashes.matches(id) {
            return Ok(Status::Unknown);
        }
        let Some(serial) = &id.serial else {
            return Ok(Status::Unknown);
        };
        match self.store.certificate(serial).await {
            Ok(record) if record.issuer != *state.issuer.name() => Ok(Status::Unknown),
            Ok(record) => Ok(match record.revocation {
                Some(revocation) => Status::Revoked {
                    at: revocation.revoked_at,
                    reason: revocation.reason,
                },
                None => Status::Good,
            }),
            Err(StoreError::NotFound) => Ok(Status::Unknown),
            Err(error) => Err(error.into()),
        }
    }

    /// The issuer's OCSP signer, rotated first if it is due. A failed rotation is logged and
    /// the old signer kept while it still outlives a response.
    pub(crate) async fn signer(
        &self,
        state: &IssuerState,
        now: OffsetDateTime,
    ) -> Result<Arc<OcspSigner>, RevocationError> {
        let current = read(&state.signer);
        if !current.needs_rotation(now) {
            return Ok(current);
        }
        let _rotation = state.signer_rotation.lock().await;
        let current = read(&state.signer);
        if !current.needs_rotation(now) {
            return Ok(current);
        }
        let (dir, issuer, lifetime) = (
            state.signer_dir.clone(),
            Arc::clone(&state.issuer),
            self.settings.ocsp_signer_lifetime,
        );
        let rotated = tokio::task::spawn_blocking(move || OcspSigner::rotate(&dir, &issuer, now, lifetime))
            .await
            .map_err(|e| RevocationError::Task(e.to_string()))
            .and_then(|r| r.map_err(RevocationError::from));
        match rotated {
            Ok(signer) => {
                let signer = Arc::new(signer);
                write(&state.signer, Arc::clone(&signer));
                Self::count(&self.counters.signer_rotations);
                tracing::info!(issuer = %state.issuer.name(), not_after = %signer.not_after(), "OCSP signer rotated");
                Ok(signer)
            }
            Err(error) if current.not_after() > now + self.settings.ocsp_validity => {
                tracing::error!(issuer = %state.issuer.name(), %error, "OCSP signer rotation failed; keeping the current one");
                Ok(current)
            }
            Err(error) => Err(error),
        }
    }
}

fn crl_reason(reason: RevocationReason) -> Option<CrlReason> {
    Some(match reason {
        RevocationReason::Unspecified => return None,
        RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
        RevocationReason::CaCompromise => CrlReason::CaCompromise,
        RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
        RevocationReason::Superseded => CrlReason::Superseded,
        RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise => CrlReason::AaCompromise,
    })
}

fn generalized_time(at: OffsetDateTime) -> Result<GeneralizedTime, RevocationError> {
    let seconds = u64::try_from(at.unix_timestamp())
        .map_err(|_| RevocationError::Encoding(der::Error::from(der::ErrorKind::DateTime)))?;
    Ok(GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(
        seconds,
    ))?)
}

fn seconds_until(now: OffsetDateTime, then: OffsetDateTime) -> u64 {
    u64::try_from((then - now).whole_seconds()).unwrap_or(0)
}
