use certgate_core::ErrorKind;

/// A storage failure, in terms any backend can produce.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record does not exist.
    #[error("not found")]
    NotFound,
    /// The write conflicts with what is stored (duplicate serial, already revoked).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The backend failed (I/O, corruption, a record that does not decode).
    #[error("storage backend: {0}")]
    Backend(String),
}

impl StoreError {
    /// The cross-crate meaning of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::Backend(_) => ErrorKind::Internal,
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        Self::Backend(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Backend(format!("record does not decode: {e}"))
    }
}
