//! Client certificates certgate issued: simplereenroll through the authority's one renewal
//! rule, and no authentication with a certificate certgate revoked.

use certgate_authority::{AuthorityError, RenewalCheck, Standing};
use certgate_core::{ParsedCsr, Protocol};

use super::{Endpoint, EstRequest, EstServer, Principal};
use crate::EstError;
use crate::config::ClientAuth;
use crate::tls::TlsFacts;

impl EstServer {
    /// simplereenroll (RFC 7030 4.2.2): the TLS client certificate renews itself when the
    /// authority's renewal rule accepts it (issued through this endpoint, or one listed in
    /// `renewal_from_endpoints`; unrevoked, unexpired; the CSR's subject and subjectAltNames
    /// equal the certificate's), plus HTTP Basic when the endpoint requires both. Otherwise
    /// the request is a first enrollment: it needs the endpoint's own authentication (and
    /// approval), and without it the answer is the renewal's refusal (403).
    pub(super) async fn reenroll_principal(
        &self,
        endpoint: &Endpoint,
        request: &EstRequest<'_>,
        tls: &TlsFacts,
        csr: &ParsedCsr,
    ) -> Result<Principal, EstError> {
        let config = &endpoint.config;
        let unauthenticated = || EstError::Unauthenticated {
            realm: config.realm.clone(),
        };
        let leaf = tls.client_chain.first().ok_or_else(unauthenticated)?;
        let check = RenewalCheck {
            protocol: Protocol::Est,
            endpoint: &config.name,
            presented: leaf,
            csr,
            profile: None,
            also_from: &config.renewal_from_endpoints,
        };
        let refusal = match self.authority.check_renewal(&check).await {
            Ok(renewal) => {
                if config.auth == ClientAuth::Both && self.basic_user(endpoint, request).await?.is_none() {
                    return Err(unauthenticated());
                }
                return Ok(Principal {
                    requester: renewal.old.requester.clone(),
                    renewing: Some(renewal.old),
                });
            }
            Err(e @ AuthorityError::RenewalRefused(_)) => EstError::Authority(e),
            Err(e) => return Err(e.into()),
        };
        match self.authenticate(endpoint, request, tls).await {
            Ok(principal) => Ok(principal),
            Err(EstError::Unauthenticated { .. } | EstError::CertificateRefused(_)) => Err(refusal),
            Err(e) => Err(e),
        }
    }

    /// Refuses a client certificate chain that verified against the endpoint's anchors when
    /// its leaf is one certgate issued and has since revoked, or that has expired (webpki
    /// cannot know the first; the inventory does). A certificate the inventory does not hold
    /// (another CA's) is the anchors' business alone.
    pub(super) async fn refuse_revoked_client_certificate(&self, chain: &[Vec<u8>]) -> Result<(), EstError> {
        let Some(leaf) = chain.first() else {
            return Ok(());
        };
        match self.authority.standing(leaf).await? {
            Standing::Unknown | Standing::Good(_) => Ok(()),
            Standing::Revoked(_) => Err(EstError::CertificateRefused("the client certificate is revoked")),
            Standing::OutsideValidity(_) => Err(EstError::CertificateRefused(
                "the client certificate is expired or not yet valid",
            )),
        }
    }
}
