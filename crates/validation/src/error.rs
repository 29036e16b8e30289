use crate::ValidationRecord;

/// Why a validation failed, in terms the ACME crate maps to RFC 8555 problem types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValidationErrorKind {
    /// A DNS lookup failed: no such name, no record of the needed type, SERVFAIL, or a timeout
    /// (ACME `dns`).
    Dns,
    /// A TCP connection could not be made or broke, the response was not valid HTTP, the whole
    /// attempt timed out, or a redirect pointed somewhere not allowed (ACME `connection`).
    Connection,
    /// The server answered, but not with what the challenge requires: a wrong HTTP status or
    /// body, a wrong TXT value, a wrong tls-alpn-01 certificate (ACME `incorrectResponse`).
    IncorrectResponse,
    /// The TLS handshake failed or negotiated the wrong protocol (ACME `tls`).
    Tls,
    /// A CAA record forbids this CA from issuing (ACME `caa`).
    Caa,
    /// The response shows the identifier is controlled by someone else (ACME `unauthorized`).
    /// Reserved for the ACME crate's own mapping; this crate reports such cases as
    /// `IncorrectResponse`.
    Unauthorized,
    /// The input cannot be used: a bad token, an unparseable redirect target
    /// (ACME `malformed`).
    Malformed,
    /// This challenge type cannot validate this identifier, e.g. http-01 for a wildcard or
    /// dns-01 for an IP address (ACME `rejectedIdentifier`).
    RejectedIdentifier,
}

/// A failed validation: its kind, a message for the ACME client's operator, and what was
/// contacted when it failed (if anything was).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ValidationError {
    /// What kind of failure.
    pub kind: ValidationErrorKind,
    /// What was tried and what came back, safe to show to the client.
    pub detail: String,
    /// What was contacted, when the failure happened after a name was resolved.
    pub record: Option<ValidationRecord>,
}

impl ValidationError {
    /// An error without a validation record.
    pub fn new(kind: ValidationErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            record: None,
        }
    }

    /// Attaches the record of what was contacted, unless one is already attached.
    pub(crate) fn with_record(mut self, record: &ValidationRecord) -> Self {
        if self.record.is_none() {
            self.record = Some(record.clone());
        }
        self
    }
}

/// How many bytes of a peer's data an error message quotes.
pub(crate) const EXCERPT_LEN: usize = 64;

/// The first [`EXCERPT_LEN`] bytes of untrusted data, escaped so that it is printable ASCII
/// (no control characters or invalid UTF-8 reach a problem document or a log).
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let cut = bytes.len().min(EXCERPT_LEN);
    let mut out = bytes.get(..cut).unwrap_or_default().escape_ascii().to_string();
    if bytes.len() > cut {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts() {
        let cases: [(&str, &[u8], &str); 4] = [
            ("plain", b"hello", "hello"),
            ("control_and_quote", b"a\"\n\x00", "a\\\"\\n\\x00"),
            ("invalid_utf8", b"\xff\xfe", "\\xff\\xfe"),
            (
                "long",
                &[b'x'; 100],
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...",
            ),
        ];
        for (case, input, want) in cases {
            assert_eq!(excerpt(input), want, "case {case}");
        }
    }
}
