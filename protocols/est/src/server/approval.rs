//! The manual-approval queue on the EST side: a request that needs an operator's approval is
//! queued, answered 202 until decided, and issued once when approved.

use certgate_authority::IssueRequest;
use certgate_core::{Identifier, ParsedCsr, Protocol};
use certgate_store::StoreError;
use certgate_store::approvals::{ApprovalKey, ApprovalRecord, ApprovalState};

use super::{Endpoint, EstResponse, EstServer, Summary, acquire, approval_fingerprint};
use crate::EstError;
use crate::codec::{self, CERTS_ONLY, Operation};

/// How often one poll of an approved request re-reads a record that changed under it before
/// answering "being issued" (two suffice: approved, then issued).
const APPROVAL_PASSES: usize = 3;

/// The names of a set of identifiers, order and duplicates ignored, case-folded.
fn identifier_set(identifiers: &[Identifier]) -> Vec<String> {
    let mut set: Vec<String> = identifiers
        .iter()
        .map(|i| format!("{}:{}", i.kind(), i.to_string().to_ascii_lowercase()))
        .collect();
    set.sort();
    set.dedup();
    set
}

impl EstServer {
    /// simpleenroll on an endpoint that needs an operator's approval: queue the request, answer
    /// 202 until it is decided, then issue the approved CSR once.
    pub(super) async fn enroll_with_approval(
        &self,
        endpoint: &Endpoint,
        issue: IssueRequest,
        summary: &mut Summary,
    ) -> Result<EstResponse, EstError> {
        let approvals = &self.stores.approvals;
        let key = ApprovalKey::new(
            Protocol::Est,
            endpoint.config.name.clone(),
            approval_fingerprint(&issue.csr),
        )
        .map_err(|e| EstError::Encoding(e.to_string()))?;
        let retry = endpoint.config.approval_retry_after;
        let pending = || {
            EstResponse::text(202, "the request awaits an operator's approval; retry later\n".into())
                .header("retry-after", retry.to_string())
        };
        let fresh = |version: u64| {
            let mut record = ApprovalRecord::pending(
                key.clone(),
                issue.requester.clone(),
                issue.csr.subject_text().to_owned(),
                issue.csr.sans().to_vec(),
                issue.csr.key(),
                issue.csr.der().to_vec(),
                self.clock.now(),
            );
            record.version = version;
            record
        };
        let being_issued =
            || EstResponse::text(202, "the request is being issued; retry shortly\n".into()).header("retry-after", "2");
        // Each pass answers from one read of the record. A pass that finds the record changed
        // once it holds the issuing guard (another poll issued, or an operator acted, between
        // its read and the claim) goes round again with the fresh record.
        let mut fresh_read: Option<ApprovalRecord> = None;
        for _ in 0..APPROVAL_PASSES {
            let record = match fresh_read.take() {
                Some(record) => record,
                None => match approvals.approval(&key).await {
                    Ok(record) => record,
                    Err(StoreError::NotFound) => {
                        match approvals.create_approval(&fresh(1)).await {
                            Ok(()) => {
                                tracing::info!(
                                    target: "certgate::audit",
                                    event = "approval_requested",
                                    approval = %key,
                                    requester = %issue.requester,
                                    subject = issue.csr.subject_text(),
                                    "certificate request queued for approval"
                                );
                            }
                            // A concurrent first request queued it: the same answer.
                            Err(StoreError::Conflict(_)) => {}
                            Err(e) => return Err(e.into()),
                        }
                        return Ok(pending());
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            if record.requester != issue.requester {
                return Err(EstError::ApprovalRefused(
                    "a request for this key was made by another requester",
                ));
            }
            match record.state {
                ApprovalState::Pending => return Ok(pending()),
                ApprovalState::Denied => {
                    return Err(EstError::ApprovalRefused("the request was denied by an operator"));
                }
                ApprovalState::Approved => {
                    let approved = ParsedCsr::from_der(&record.csr_der)?;
                    if approved.subject_text() != issue.csr.subject_text()
                        || identifier_set(approved.sans()) != identifier_set(issue.csr.sans())
                    {
                        return Err(EstError::ApprovalRefused(
                            "the request's names differ from the approved request's",
                        ));
                    }
                    let Some(guard) = self.issuing.claim(&key) else {
                        // Another poll of the same request is issuing right now.
                        return Ok(being_issued());
                    };
                    // The record read above may predate another poll's issuance that released
                    // the guard just before this claim: issue only if it is still the approved
                    // record we read.
                    match approvals.approval(&key).await {
                        Ok(current)
                            if current.state == ApprovalState::Approved && current.version == record.version => {}
                        Ok(current) => {
                            drop(guard);
                            fresh_read = Some(current);
                            continue;
                        }
                        Err(StoreError::NotFound) => {
                            drop(guard);
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                    let _slot = acquire(endpoint)?;
                    let mut approved_issue = issue;
                    approved_issue.csr = approved;
                    let issued = self.authority.issue(approved_issue).await?;
                    if let Err(e) = approvals.mark_issued(&key, &issued.record.serial).await {
                        tracing::warn!(approval = %key, error = %e, "issued an approved request but could not mark it issued");
                    }
                    drop(guard);
                    return self.issued_response(endpoint, Operation::SimpleEnroll, issued, summary);
                }
                ApprovalState::Issued => {
                    let now = self.clock.now();
                    if let Some(serial) = &record.certificate {
                        match self.authority.store().certificate(serial).await {
                            Ok(cert) if cert.revocation.is_none() && cert.not_after > now => {
                                // The client asked again (a lost answer): the same certificate.
                                summary.serial = Some(cert.serial.clone());
                                let body =
                                    codec::encode_base64(&codec::certs_only(&[&cert.der])?, endpoint.config.base64);
                                return Ok(EstResponse::with_body(200, CERTS_ONLY, body));
                            }
                            Ok(_) | Err(StoreError::NotFound) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    // Its certificate is revoked or expired: the key asks again, from scratch.
                    return match approvals.renew_approval(&fresh(record.version + 1)).await {
                        Ok(()) | Err(StoreError::Conflict(_)) => Ok(pending()),
                        Err(e) => Err(e.into()),
                    };
                }
            }
        }
        // The record kept changing under this poll: let the client come back.
        Ok(being_issued())
    }
}
