//! Domain types shared by every certgate crate: identifiers, parsed CSRs, serial numbers,
//! names of issuers, profiles and endpoints, requester identities, error kinds and the clock.
//!
//! This crate does no I/O and has no async code. Every type here is parsed at the edge
//! ("parse, don't validate"): a value that exists is valid.
#![warn(missing_docs)]

mod clock;
mod csr;
mod error;
mod identifier;
mod ipnet;
mod names;
mod revocation;
mod serial;

pub use clock::{Clock, ManualClock, SystemClock};
pub use csr::{CsrError, KeyKind, MAX_CSR_LEN, ParsedCsr, SubjectAttribute};
pub use error::ErrorKind;
pub use identifier::{DnsName, Identifier, IdentifierError};
pub use ipnet::{IpNet, IpNetError};
pub use names::{Name, NameError, Protocol, RequesterId};
pub use revocation::RevocationReason;
pub use serial::{Serial, SerialError};
