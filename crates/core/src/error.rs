/// What kind of failure happened, in terms every protocol edge can map to its own vocabulary
/// (an ACME problem type, an EST HTTP status, a SCEP failInfo). Crates carry their own error
/// enums and expose their kind through this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request could not be parsed (garbage bytes, truncated DER, bad encoding).
    Malformed,
    /// The CSR's signature does not verify: no proof of possession.
    BadSignature,
    /// The key type, curve or size is not allowed.
    BadPublicKey,
    /// A name (DNS, IP, email, URI) is outside the endpoint's policy.
    RejectedIdentifier,
    /// The requested validity is not allowed.
    BadValidity,
    /// The request is well formed but refused by policy for another reason.
    PolicyRefused,
    /// The caller is not authenticated.
    Unauthenticated,
    /// The caller is authenticated but not allowed to do this.
    Unauthorized,
    /// The thing asked for does not exist.
    NotFound,
    /// The request conflicts with the current state (already revoked, duplicate).
    Conflict,
    /// The server is shedding load for now; the same request later may succeed.
    Unavailable,
    /// Something failed inside certgate; the client is not at fault.
    Internal,
}
