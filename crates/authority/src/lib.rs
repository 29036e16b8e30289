//! certgate authority: the one entry point every protocol calls.
//!
//! It knows the endpoints (a protocol front end's issuer, profiles and policies), decides
//! whether a request may be issued (key, name and validity policy), has the signer build the
//! certificate, and records it durably in the store before returning it. It also records
//! revocations. It does not speak any protocol and never parses network input itself beyond
//! the already-parsed CSR it is handed.
#![warn(missing_docs)]

mod admission;
mod authority;
mod certified;
mod error;
mod policy;
mod renewal;

pub use admission::AdmissionGate;
pub use authority::{Authority, AuthorityConfig, IssueRequest, Issued};
pub use error::AuthorityError;
pub use policy::{EndpointPolicy, KeyPolicy, NamePolicy, Profile, SubjectAttributeType};
pub use renewal::{EndpointRef, EndpointRefError, RenewalCheck, RenewalOf, RenewalRefusal, Standing};
// Protocol crates never depend on the signer directly (design.md): the issuer handles they read
// and SCEP's opaque RA key handle reach them through the authority.
pub use certgate_signer::{Issuer, KeyTransport, KeyType, RaDigest, RaFiles, RaKey, RaOptions, SignerError};
