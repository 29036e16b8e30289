//! certgate revocation status: CRLs (RFC 5280) and an OCSP responder (RFC 6960) over the
//! certificate store, for every configured issuer.
//!
//! [`RevocationService`] keeps one cached CRL per issuer (regenerated after a revocation and
//! on schedule) and answers OCSP requests with responses signed by a delegated P-256 key per
//! issuer ([`certgate_signer::OcspSigner`]), caching the answers to plain requests.
//! [`RevocationServer`] maps HTTP requests (`GET /crl/{issuer}.crl`, `POST /ocsp/{issuer}`,
//! `GET /ocsp/{issuer}/{base64}`) to it, independent of the HTTP library: the daemon hands it a
//! [`StatusRequest`] and writes back the [`StatusResponse`].
//!
//! It does not revoke (the authority does), does not sign with the CA key except for CRLs and
//! the delegated signer's certificate, and does not write the store.
#![warn(missing_docs)]

mod asn1;
mod cache;
mod crl;
mod error;
mod request;
mod responder;
mod server;
mod service;

pub use error::RevocationError;
pub use request::{CertIdHash, MAX_REQUEST_LEN, MAX_REQUESTS, OcspGetRequest, ParsedCertId, ParsedOcspRequest};
pub use request::{decode_get_path, parse_ocsp_request};
pub use responder::{OcspAnswer, OcspResponseStatus};
pub use server::{RevocationServer, StatusRequest, StatusResponse};
pub use service::{RevocationDeps, RevocationService, RevocationSettings, RevocationStats};
