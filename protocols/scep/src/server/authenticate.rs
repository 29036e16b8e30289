//! Who is enrolling: renewal by the signer certificate (the authority's one renewal rule),
//! else a challenge validator (static, one-time, webhook).

use certgate_authority::{AuthorityError, RenewalCheck, RenewalOf, RenewalRefusal};
use certgate_core::{ParsedCsr, Protocol};
use certgate_store::StoreError;

use super::{Endpoint, Principal, ScepServer, printable, requester_of};
use crate::challenge::{WebhookRequest, binding_candidates, challenge_id, static_matches};
use crate::message::{MessageType, PkiMessage};
use crate::{FailInfo, ScepError};

impl ScepServer {
    /// Who is enrolling. A request signed by a certificate certgate issued is a renewal when
    /// the authority's renewal rule accepts it (same protocol and endpoint, or one listed in
    /// `renewal_from_endpoints`; unrevoked, unexpired; the same subject and subjectAltNames):
    /// then no challenge is needed and no approval. Otherwise the request needs a challenge,
    /// exactly as a first enrollment; without a valid one, the renewal's refusal is the answer.
    pub(super) async fn authenticate(
        &self,
        endpoint: &Endpoint,
        message: &PkiMessage,
        csr: &ParsedCsr,
    ) -> Result<Principal, ScepError> {
        let config = &endpoint.config;
        let renewal_req = message.message_type == MessageType::RenewalReq;
        if renewal_req && !config.renewal {
            return Err(ScepError::failure(
                FailInfo::BadRequest,
                "renewal is not enabled on this endpoint",
            ));
        }
        let mut refused = None;
        if config.renewal {
            match self.renewal(endpoint, message, csr).await {
                Ok(renewal) => {
                    return Ok(Principal {
                        requester: requester_of(&config.name, &renewal.replaces().to_hex())?,
                        renewing: Some(renewal.old),
                    });
                }
                // A PKCSReq signed by a certificate certgate never issued (the usual self-signed
                // one) is a first enrollment, not a refused renewal.
                Err(AuthorityError::RenewalRefused(RenewalRefusal::NotIssuedHere)) if !renewal_req => {}
                Err(e @ AuthorityError::RenewalRefused(_)) => refused = Some(ScepError::Authority(e)),
                Err(e) => return Err(e.into()),
            }
        }
        let Some(challenge) = csr.challenge_password() else {
            return Err(refused
                .unwrap_or_else(|| ScepError::failure(FailInfo::BadRequest, "the CSR carries no challenge password")));
        };
        if let Some(secret) = &config.challenge.static_challenge
            && static_matches(secret, challenge)
        {
            return self.challenged(endpoint, "static");
        }
        if config.challenge.one_time && self.consume_one_time(endpoint, message, csr, challenge).await? {
            return self.challenged(endpoint, "one-time");
        }
        if let Some(webhook) = &endpoint.webhook {
            let request = WebhookRequest::new(
                &config.name,
                &message.transaction_id,
                message.message_type.as_str(),
                challenge,
                csr,
            );
            if webhook.allows(&request).await? {
                return self.challenged(endpoint, "webhook");
            }
        }
        Err(refused.unwrap_or_else(|| ScepError::failure(FailInfo::BadRequest, "wrong or expired challenge password")))
    }

    fn challenged(&self, endpoint: &Endpoint, how: &str) -> Result<Principal, ScepError> {
        Ok(Principal {
            requester: requester_of(&endpoint.config.name, how)?,
            renewing: None,
        })
    }

    /// The authority's renewal rule for the request's signer certificate.
    async fn renewal(
        &self,
        endpoint: &Endpoint,
        message: &PkiMessage,
        csr: &ParsedCsr,
    ) -> Result<RenewalOf, AuthorityError> {
        let Some(signer) = message.signer_certificate.as_deref() else {
            return Err(AuthorityError::RenewalRefused(RenewalRefusal::NotIssuedHere));
        };
        self.authority
            .check_renewal(&RenewalCheck {
                protocol: Protocol::Scep,
                endpoint: &endpoint.config.name,
                presented: signer,
                csr,
                profile: None,
                also_from: &endpoint.config.renewal_from_endpoints,
            })
            .await
    }

    /// Uses up a one-time challenge: true when `challenge` was an unused, unexpired one-time
    /// challenge of this endpoint, unbound or bound to exactly this request's subject (see
    /// [`binding_candidates`]). Of two enrollments racing with one challenge, exactly one
    /// gets true; a challenge bound to another subject stays unused.
    async fn consume_one_time(
        &self,
        endpoint: &Endpoint,
        message: &PkiMessage,
        csr: &ParsedCsr,
        challenge: &str,
    ) -> Result<bool, ScepError> {
        let candidates = binding_candidates(csr);
        let subjects: Vec<&str> = candidates.iter().map(String::as_str).collect();
        match self
            .stores
            .challenges
            .consume_scep_challenge(
                &endpoint.config.name,
                &challenge_id(challenge),
                &subjects,
                self.clock.now(),
            )
            .await
        {
            Ok(record) => {
                tracing::info!(
                    target: "certgate::audit",
                    event = "scep_challenge_used",
                    endpoint = %endpoint.config.name,
                    challenge_id = %record.id,
                    transaction_id = %printable(&message.transaction_id),
                    "SCEP one-time challenge used"
                );
                Ok(true)
            }
            Err(StoreError::NotFound | StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
