//! EST request text: the path (`/.well-known/est/[<label>/]<op>`), the Content-Type header,
//! and the CSR's challengePassword as the channel-binding check reads it.
#![no_main]

use std::sync::LazyLock;

use certgate_est::codec::{self, Operation};
use certgate_est::tls::{TlsFacts, TlsVersion};
use certgate_est::{DEFAULT_ENDPOINT, check_channel_binding, parse_path};
use libfuzzer_sys::fuzz_target;

static TLS13: LazyLock<TlsFacts> = LazyLock::new(|| TlsFacts {
    version: Some(TlsVersion::Tls13),
    client_chain: Vec::new(),
    exporter: Some([7u8; 32]),
    tls_unique: None,
});

static TLS12: LazyLock<TlsFacts> = LazyLock::new(|| TlsFacts {
    version: Some(TlsVersion::Tls12),
    client_chain: Vec::new(),
    exporter: None,
    tls_unique: Some(vec![9u8; 12]),
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = parse_path(text) {
        // A parsed path names its operation exactly and round-trips.
        let op = path.operation.as_str();
        assert!(text.ends_with(op));
        let rebuilt = if path.labelled {
            format!("/.well-known/est/{}/{op}", path.endpoint)
        } else {
            assert_eq!(path.endpoint.as_str(), DEFAULT_ENDPOINT);
            format!("/.well-known/est/{op}")
        };
        assert_eq!(rebuilt, text);
        let _ = matches!(path.operation, Operation::FullCmc) || !path.operation.method().is_empty();
    }
    let _ = codec::check_content_type(Some(text));
    let _ = check_channel_binding(&TLS13, Some(text));
    let _ = check_channel_binding(&TLS12, Some(text));
});
