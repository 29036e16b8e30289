//! Label values: fixed enums, and names registered up front with an `other` overflow.

use std::collections::HashMap;
use std::fmt;

/// The label value anything unregistered or unknown is counted under.
pub const OTHER: &str = "other";

/// A label enum: its values in rendering order and their label strings.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in the order they are rendered.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $value,)+
                }
            }

            /// The value whose label is `name` (exactly), if any.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == name)
            }

            /// Position in [`Self::ALL`] (declaration order, so the discriminant).
            pub(crate) fn index(self) -> usize {
                self as usize
            }

            pub(crate) fn dim(label: &'static str) -> crate::family::Dim {
                crate::family::Dim::new(label, Self::ALL.iter().map(|v| v.as_str().to_owned()).collect())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// The protocol a certificate was requested through (`protocol` of
    /// `certgate_issuance_total`); the names of `certgate_core::Protocol`.
    pub enum Protocol {
        /// RFC 8555.
        Acme => "acme",
        /// RFC 7030.
        Est => "est",
        /// RFC 8894.
        Scep => "scep",
        /// An operator, or the daemon's own TLS certificate.
        Admin => "admin",
    }
}

label_enum! {
    /// How an issuance request ended (`result` of `certgate_issuance_total`).
    pub enum IssuanceResult {
        /// A certificate was issued and recorded.
        Issued => "issued",
        /// The authority refused the request (policy, name, key, validity): a client error.
        Refused => "refused",
        /// Something failed on certgate's side (store, signer).
        Error => "error",
        /// Turned away before any work because new issuance was paused (load shedding).
        Shed => "shed",
    }
}

label_enum! {
    /// The ACME challenge type (`type` of `certgate_acme_validation_total`).
    pub enum ValidationType {
        /// RFC 8555 8.3.
        Http01 => "http-01",
        /// RFC 8555 8.4.
        Dns01 => "dns-01",
        /// RFC 8737.
        TlsAlpn01 => "tls-alpn-01",
    }
}

label_enum! {
    /// How a challenge validation ended (`outcome` of `certgate_acme_validation_total`).
    /// A failure is named by the ACME problem type the client sees
    /// ([`ValidationOutcome::from_acme_problem`]), which is also what `certgate-validation`'s
    /// `ValidationErrorKind` maps to one for one.
    pub enum ValidationOutcome {
        /// The challenge was validated.
        Valid => "valid",
        /// `connection`: TCP failed or broke, not HTTP, a bad redirect, the attempt timed out.
        Connection => "connection",
        /// `dns`: a lookup failed (no such name, no record, SERVFAIL, lookup timeout).
        Dns => "dns",
        /// `tls`: the handshake failed or negotiated the wrong protocol.
        Tls => "tls",
        /// `unauthorized`: the response shows someone else controls the identifier.
        Unauthorized => "unauthorized",
        /// `incorrectResponse`: an answer, but not the one the challenge requires.
        IncorrectResponse => "incorrect_response",
        /// `caa`: a CAA record forbids issuance.
        Caa => "caa",
        /// The ACME crate's deadline for the whole validation (including waiting for a
        /// worker) passed; `certgate-validation` reports its own timeouts as `connection` or `dns`.
        Timeout => "timeout",
        /// `malformed`: the challenge input could not be used (bad token, bad redirect target).
        Malformed => "malformed",
        /// `rejectedIdentifier`: this challenge type cannot validate this identifier.
        RejectedIdentifier => "rejected_identifier",
        /// Anything else (`serverInternal`, an unknown problem type).
        Other => "other",
    }
}

impl ValidationOutcome {
    /// The outcome for a failed validation's ACME problem type, given as the full URN
    /// (`urn:ietf:params:acme:error:incorrectResponse`) or its last part (`incorrectResponse`).
    /// Unknown types are [`ValidationOutcome::Other`].
    pub fn from_acme_problem(problem_type: &str) -> Self {
        let name = problem_type
            .strip_prefix("urn:ietf:params:acme:error:")
            .unwrap_or(problem_type);
        match name {
            "connection" => Self::Connection,
            "dns" => Self::Dns,
            "tls" => Self::Tls,
            "unauthorized" => Self::Unauthorized,
            "incorrectResponse" => Self::IncorrectResponse,
            "caa" => Self::Caa,
            "malformed" => Self::Malformed,
            "rejectedIdentifier" => Self::RejectedIdentifier,
            _ => Self::Other,
        }
    }
}

label_enum! {
    /// What kind of HTTP request was served (`protocol` of `certgate_request_duration_seconds`).
    pub enum RequestProtocol {
        /// `/acme/…`.
        Acme => "acme",
        /// `/.well-known/est/…`.
        Est => "est",
        /// `/scep/…`, `/cgi-bin/pkiclient.exe`.
        Scep => "scep",
        /// OCSP responses.
        Ocsp => "ocsp",
        /// CRL downloads.
        Crl => "crl",
        /// The admin socket.
        Admin => "admin",
        /// Anything else (health, CA certificates, `/metrics`, not found).
        Other => "other",
    }
}

label_enum! {
    /// Why a client connection was closed unserved (`reason` of
    /// `certgate_connections_refused_total`).
    pub enum ConnectionRefusal {
        /// The process held as many connections as it may.
        TooManyConnections => "too_many_connections",
        /// The client address held as many as one address may.
        TooManyFromAddress => "too_many_from_address",
    }
}

label_enum! {
    /// Which size of the embedded database (`kind` of `certgate_store_bytes`).
    pub enum StoreBytes {
        /// The files on disk.
        OnDisk => "on_disk",
        /// The live data they hold, as last measured (only while the file is over
        /// `[store] shed_above_mib`: measuring walks every page).
        Live => "live",
    }
}

label_enum! {
    /// Where a certificate in the inventory stands (`status` of `certgate_certificates`).
    pub enum CertificateStatus {
        /// Not expired, not revoked, not replaced, and not yet due for renewal.
        Valid => "valid",
        /// Not expired, not revoked, not replaced, but past its renewal point.
        RenewalDue => "renewal_due",
        /// Past notAfter (and not revoked).
        Expired => "expired",
        /// Revoked.
        Revoked => "revoked",
        /// Replaced by a newer certificate (a renewal recorded `replaces`), not revoked.
        Superseded => "superseded",
    }
}

/// The CRLReason names certgate revokes with (`certgate_core::RevocationReason::as_str`).
pub const REVOCATION_REASONS: [&str; 8] = [
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "aACompromise",
];

/// Label values registered up front, plus [`OTHER`] last for everything else, so the number
/// of series is fixed when the registry is built.
#[derive(Debug)]
pub(crate) struct Registered {
    values: Vec<String>,
    index: HashMap<String, usize>,
}

impl Registered {
    /// `names` in first-seen order, duplicates and `other` dropped, then `other`.
    pub(crate) fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let mut values = Vec::new();
        let mut index = HashMap::new();
        for name in names {
            let name = name.as_ref();
            if name != OTHER && !index.contains_key(name) {
                index.insert(name.to_owned(), values.len());
                values.push(name.to_owned());
            }
        }
        values.push(OTHER.to_owned());
        Self { values, index }
    }

    /// The position of `value`, or that of `other`.
    pub(crate) fn lookup(&self, value: &str) -> usize {
        // `new` always pushes `other` last, so `values` is never empty.
        self.index.get(value).copied().unwrap_or(self.values.len() - 1)
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.values
    }

    pub(crate) fn dim(&self, label: &'static str) -> crate::family::Dim {
        crate::family::Dim::new(label, self.values.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values() {
        let cases: [(&str, &[&str], &str, &str); 5] = [
            ("registered", &["default", "iot"], "iot", "iot"),
            ("unregistered_is_other", &["default"], "attacker-chosen", OTHER),
            ("empty_registry", &[], "default", OTHER),
            (
                "registered_other_is_the_overflow",
                &["other", "default"],
                "other",
                OTHER,
            ),
            ("case_sensitive", &["default"], "Default", OTHER),
        ];
        for (case, names, lookup, want) in cases {
            let registered = Registered::new(names.iter().copied());
            let index = registered.lookup(lookup);
            assert_eq!(registered.names()[index], want, "case {case}");
            assert_eq!(
                registered.names().last().map(String::as_str),
                Some(OTHER),
                "case {case}"
            );
            assert_eq!(
                registered.names().iter().filter(|n| *n == OTHER).count(),
                1,
                "case {case}"
            );
        }
    }

    #[test]
    fn outcomes_from_acme_problem_types() {
        let cases = [
            ("urn:ietf:params:acme:error:connection", ValidationOutcome::Connection),
            ("urn:ietf:params:acme:error:dns", ValidationOutcome::Dns),
            ("urn:ietf:params:acme:error:tls", ValidationOutcome::Tls),
            (
                "urn:ietf:params:acme:error:unauthorized",
                ValidationOutcome::Unauthorized,
            ),
            (
                "urn:ietf:params:acme:error:incorrectResponse",
                ValidationOutcome::IncorrectResponse,
            ),
            ("urn:ietf:params:acme:error:caa", ValidationOutcome::Caa),
            ("urn:ietf:params:acme:error:malformed", ValidationOutcome::Malformed),
            (
                "urn:ietf:params:acme:error:rejectedIdentifier",
                ValidationOutcome::RejectedIdentifier,
            ),
            ("incorrectResponse", ValidationOutcome::IncorrectResponse),
            ("urn:ietf:params:acme:error:serverInternal", ValidationOutcome::Other),
            ("urn:example:unknown", ValidationOutcome::Other),
            ("", ValidationOutcome::Other),
        ];
        for (problem, want) in cases {
            assert_eq!(ValidationOutcome::from_acme_problem(problem), want, "case {problem:?}");
        }
    }

    #[test]
    fn enum_names_round_trip_and_index_matches_all() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            as_str: fn(T) -> &'static str,
            from: fn(&str) -> Option<T>,
            index: fn(T) -> usize,
        ) {
            for (i, value) in all.iter().copied().enumerate() {
                assert_eq!(from(as_str(value)), Some(value));
                assert_eq!(index(value), i, "{value:?}");
            }
        }
        check(Protocol::ALL, Protocol::as_str, Protocol::from_name, Protocol::index);
        check(
            IssuanceResult::ALL,
            IssuanceResult::as_str,
            IssuanceResult::from_name,
            IssuanceResult::index,
        );
        check(
            ValidationType::ALL,
            ValidationType::as_str,
            ValidationType::from_name,
            ValidationType::index,
        );
        check(
            ValidationOutcome::ALL,
            ValidationOutcome::as_str,
            ValidationOutcome::from_name,
            ValidationOutcome::index,
        );
        check(
            RequestProtocol::ALL,
            RequestProtocol::as_str,
            RequestProtocol::from_name,
            RequestProtocol::index,
        );
        check(
            ConnectionRefusal::ALL,
            ConnectionRefusal::as_str,
            ConnectionRefusal::from_name,
            ConnectionRefusal::index,
        );
        check(
            CertificateStatus::ALL,
            CertificateStatus::as_str,
            CertificateStatus::from_name,
            CertificateStatus::index,
        );
    }
}
