//! certgate-scep: the Simple Certificate Enrollment Protocol (RFC 8894) for certgate.
//!
//! [`ScepServer`] serves `/scep/<name>` (also `/scep/<name>/pkiclient.exe`, and
//! `/cgi-bin/pkiclient.exe` for the endpoint named [`DEFAULT_ENDPOINT`]): GetCACaps,
//! GetCACert, GetNextCACert and PKIOperation (PKCSReq, RenewalReq, CertPoll, GetCert,
//! GetCRL) over GET and POST. It is independent of the HTTP library: the daemon hands it a
//! [`ScepRequest`] and writes back the [`ScepResponse`].
//!
//! What it does: decode GET messages leniently ([`codec`]), parse and verify PKIMessages
//! (signature, then signingTime against the endpoint's `max_clock_skew`) and open their
//! envelopes with the RA key ([`message`], through the opaque [`certgate_authority::RaKey`],
//! off the reactor), authenticate (static, one-time and webhook challenges, the webhook a
//! [`ChallengeWebhook`] the caller supplies; renewal by signer certificate) before the authority's policy check, queue requests for manual approval, have
//! the authority issue, and answer with signed (and encrypted) CertReps. What it does not do:
//! decide issuance policy (the authority does), hold CA keys, speak HTTP itself (neither as
//! a server nor to webhooks), publish CRLs
//! (GetCRL asks a [`CrlSource`]).
//!
//! Fuzzing entry points (untrusted bytes, never panic): [`parse_pki_message`],
//! [`parse_envelope`], [`decode_message_param`], [`decode_post_body`], [`parse_path`], and
//! the hidden `fuzz_envelope` (the envelope and BER fallback decoders one by one).
#![warn(missing_docs)]

pub mod challenge;
pub mod codec;
pub mod config;
pub mod crypto;
mod error;
pub mod message;
mod server;
#[cfg(feature = "test-client")]
pub mod testclient;

pub use challenge::{ChallengeWebhook, WebhookRequest, challenge_id, create_one_time_challenge};
pub use codec::{DEFAULT_ENDPOINT, MAX_MESSAGE_LEN, Operation, decode_message_param, decode_post_body, parse_path};
pub use config::{ChallengeConfig, CompatSwitches, DEFAULT_MAX_CLOCK_SKEW, NextCa, ScepEndpointConfig, Secret};
pub use error::{FailInfo, ScepError};
#[doc(hidden)]
pub use message::fuzz_envelope;
pub use message::{MessageType, PkiMessage, PkiStatus, parse_envelope, parse_pki_message};
pub use server::{
    CrlSource, NoCrl, ScepRequest, ScepResponse, ScepServer, ScepStores, approval_fingerprint, requester_of,
};
