//! CertPoll, GetCert and GetCRL: answers about requests and certificates that exist already,
//! each only to the client they belong to.

use certgate_authority::IssueRequest;
use certgate_core::{ParsedCsr, Protocol, Serial};
use certgate_store::StoreError;
use certgate_store::approvals::{ApprovalKey, ApprovalRecord, ApprovalState};
use der::{Decode, Encode};
use x509_cert::Certificate;
use x509_cert::request::CertReq;

use super::{Endpoint, Reply, ReplyContext, ScepServer, Summary, approval_fingerprint, audit};
use crate::message::{self, IssuerAndSubject, MessageType, PkiMessage};
use crate::{FailInfo, ScepError};

/// The DER SubjectPublicKeyInfo of a certificate.
pub(super) fn spki_of(certificate: &[u8]) -> Result<Vec<u8>, ScepError> {
    let cert = Certificate::from_der(certificate)
        .map_err(|_| ScepError::failure(FailInfo::BadMessageCheck, "the signer certificate does not parse"))?;
    Ok(cert.tbs_certificate().subject_public_key_info().to_der()?)
}

/// The approval key of a request: its endpoint and [`approval_fingerprint`] (transactionID and
/// signer key), so only the requester that queued a request finds it again.
pub(super) fn approval_key(endpoint: &Endpoint, message: &PkiMessage) -> Result<ApprovalKey, ScepError> {
    let signer = message.signer_certificate.as_deref().ok_or_else(|| {
        ScepError::failure(
            FailInfo::BadMessageCheck,
            "the message does not carry its signer's certificate",
        )
    })?;
    ApprovalKey::new(
        Protocol::Scep,
        endpoint.config.name.clone(),
        approval_fingerprint(&message.transaction_id, signer)?,
    )
    .map_err(|_| ScepError::Internal("approval key"))
}

impl ScepServer {
    /// CertPoll (RFC 8894 3.3.3): the request is found by its transactionID and the key that
    /// signed it (part of the approval key), and its IssuerAndSubject must name this CA (or
    /// its RA) and the queued request's subject. Any mismatch answers as an unknown
    /// transaction, so a poll by anyone else learns nothing.
    pub(super) async fn poll(
        &self,
        endpoint: &Endpoint,
        message: &PkiMessage,
        context: &mut ReplyContext,
        summary: &mut Summary,
    ) -> Result<Reply, ScepError> {
        let plain = self.open(endpoint, message, context).await?;
        let wanted = message::parse_issuer_and_subject(&plain)?;
        let unknown = || ScepError::failure(FailInfo::BadCertId, "no request with this transactionID is known");
        let key = approval_key(endpoint, message)?;
        let record = match self.stores.approvals.approval(&key).await {
            Ok(record) => record,
            Err(StoreError::NotFound) => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        if !poll_names_match(endpoint, &wanted, &record)? {
            return Err(unknown());
        }
        summary.requester = Some(record.requester.clone());
        self.approval_state(endpoint, record, summary).await
    }

    /// Answers for a queued request: PENDING, FAILURE (denied), or the certificate (issued
    /// now, once, for an approved request; the same one again afterwards).
    pub(super) async fn approval_state(
        &self,
        endpoint: &Endpoint,
        record: ApprovalRecord,
        summary: &mut Summary,
    ) -> Result<Reply, ScepError> {
        match record.state {
            ApprovalState::Pending => Ok(Reply::Pending),
            ApprovalState::Denied => Err(ScepError::failure(
                FailInfo::BadRequest,
                "the request was denied by an operator",
            )),
            ApprovalState::Approved => {
                let Some(_guard) = self.issuing.claim(&record.key) else {
                    return Ok(Reply::Pending);
                };
                // Another poll may have issued between our read and the claim: only the
                // record as it stands under the guard decides (one certificate per approval).
                let fresh = self.stores.approvals.approval(&record.key).await?;
                if fresh.state != ApprovalState::Approved || fresh.version != record.version {
                    return Box::pin(self.approval_state(endpoint, fresh, summary)).await;
                }
                let csr = ParsedCsr::from_der(&record.csr_der)?;
                let issue = IssueRequest::new(
                    Protocol::Scep,
                    endpoint.config.name.clone(),
                    csr,
                    record.requester.clone(),
                );
                let issued = self.authority.issue(issue).await?;
                if let Err(e) = self
                    .stores
                    .approvals
                    .mark_issued(&record.key, &issued.record.serial)
                    .await
                {
                    tracing::warn!(approval = %record.key, error = %e, "issued an approved request but could not mark it issued");
                }
                audit(MessageType::CertPoll, &endpoint.config.name, &issued.record);
                summary.serial = Some(issued.record.serial.clone());
                self.certificates_reply(endpoint, &issued.record.der)
            }
            ApprovalState::Issued => {
                let serial = record
                    .certificate
                    .ok_or(ScepError::Internal("an issued approval names no certificate"))?;
                let cert = self.authority.store().certificate(&serial).await?;
                summary.serial = Some(cert.serial.clone());
                self.certificates_reply(endpoint, &cert.der)
            }
        }
    }

    /// GetCert (RFC 8894 3.3.4) for the certificate's own holder only: the message's signer
    /// key must be the requested certificate's key. Anything else answers as an unknown
    /// certificate.
    pub(super) async fn get_cert(
        &self,
        endpoint: &Endpoint,
        message: &PkiMessage,
        context: &mut ReplyContext,
        summary: &mut Summary,
    ) -> Result<Reply, ScepError> {
        let plain = self.open(endpoint, message, context).await?;
        let wanted = message::parse_issuer_and_serial(&plain)?;
        let not_found = || ScepError::failure(FailInfo::BadCertId, "no certificate with this issuer and serial");
        let serial = Serial::from_der_integer(wanted.serial_number.as_bytes()).map_err(|_| not_found())?;
        let record = match self.authority.store().certificate(&serial).await {
            Ok(record) => record,
            Err(StoreError::NotFound) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        let cert = Certificate::from_der(&record.der)?;
        if *cert.tbs_certificate().issuer() != wanted.issuer {
            return Err(not_found());
        }
        let signer = message.signer_certificate.as_deref().ok_or_else(not_found)?;
        if spki_of(signer)? != cert.tbs_certificate().subject_public_key_info().to_der()? {
            return Err(not_found());
        }
        summary.serial = Some(record.serial.clone());
        self.certificates_reply(endpoint, &record.der)
    }

    pub(super) async fn get_crl(
        &self,
        endpoint: &Endpoint,
        message: &PkiMessage,
        context: &mut ReplyContext,
    ) -> Result<Reply, ScepError> {
        let plain = self.open(endpoint, message, context).await?;
        let _wanted = message::parse_issuer_and_serial(&plain)?;
        match self.crl.crl(&endpoint.config.name, &endpoint.issuer).await? {
            Some(crl) => Ok(Reply::Success(message::degenerate(&[], &[&crl])?)),
            None => Err(ScepError::failure(FailInfo::BadRequest, "CRL not available yet")),
        }
    }
}

/// Whether a CertPoll's IssuerAndSubject names this endpoint's CA (or its RA, which some
/// clients put there) and the queued request's subject.
fn poll_names_match(
    endpoint: &Endpoint,
    wanted: &IssuerAndSubject,
    record: &ApprovalRecord,
) -> Result<bool, ScepError> {
    let issuer = Certificate::from_der(endpoint.issuer.certificate_der())?;
    let ra = Certificate::from_der(endpoint.config.ra.certificate_der())?;
    let issuer_ok =
        wanted.issuer == *issuer.tbs_certificate().subject() || wanted.issuer == *ra.tbs_certificate().subject();
    let request = CertReq::from_der(&record.csr_der)?;
    Ok(issuer_ok && wanted.subject == request.info.subject)
}
