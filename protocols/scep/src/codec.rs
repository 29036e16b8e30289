//! The HTTP surface of SCEP: paths, the `operation` / `message` query, lenient decoding of
//! GET messages (RFC 8894 4.1 and the interop notes), content types and GetCACaps.

use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use certgate_core::Name;

use crate::ScepError;

/// The name of the endpoint served at `/cgi-bin/pkiclient.exe`.
pub const DEFAULT_ENDPOINT: &str = "default";

/// The largest PKIOperation certgate reads (real ones are a few KiB).
pub const MAX_MESSAGE_LEN: usize = 256 * 1024;

/// `application/x-pki-message`: PKIOperation requests and CertReps.
pub const PKI_MESSAGE: &str = "application/x-pki-message";
/// GetCACert with an RA: a degenerate PKCS#7 of the RA certificate and the CA chain.
pub const CA_RA_CERT: &str = "application/x-x509-ca-ra-cert";
/// GetCACert without an RA: the DER CA certificate.
pub const CA_CERT: &str = "application/x-x509-ca-cert";
/// GetNextCACert: a SignedData holding the next CA's certificates.
pub const NEXT_CA_CERT: &str = "application/x-x509-next-ca-cert";

/// A SCEP operation (the `operation` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// GetCACaps.
    GetCaCaps,
    /// GetCACert.
    GetCaCert,
    /// GetNextCACert.
    GetNextCaCert,
    /// PKIOperation (GET with `message=` or POST with the DER message as body).
    PkiOperation,
}

impl Operation {
    /// The operation named `name` (case-insensitively, as some clients vary the case).
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::GetCaCaps,
            Self::GetCaCert,
            Self::GetNextCaCert,
            Self::PkiOperation,
        ]
        .into_iter()
        .find(|op| op.as_str().eq_ignore_ascii_case(name))
    }

    /// The operation's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GetCaCaps => "GetCACaps",
            Self::GetCaCert => "GetCACert",
            Self::GetNextCaCert => "GetNextCACert",
            Self::PkiOperation => "PKIOperation",
        }
    }
}

/// The endpoint a path names: `/scep/{name}`, `/scep/{name}/`, `/scep/{name}/pkiclient.exe`
/// (Cisco), and `/cgi-bin/pkiclient.exe` for the endpoint named [`DEFAULT_ENDPOINT`].
pub fn parse_path(path: &str) -> Result<Name, ScepError> {
    if path == "/cgi-bin/pkiclient.exe" {
        return Name::new(DEFAULT_ENDPOINT).map_err(|_| ScepError::Internal("the default endpoint name is invalid"));
    }
    let rest = path.strip_prefix("/scep/").ok_or(ScepError::NotFound)?;
    let name = rest
        .strip_suffix("/pkiclient.exe")
        .or_else(|| rest.strip_suffix('/'))
        .unwrap_or(rest);
    if name.is_empty() || name.contains('/') {
        return Err(ScepError::NotFound);
    }
    Name::new(name).map_err(|_| ScepError::UnknownEndpoint(crate::server::printable(name)))
}

/// The `operation` and raw (still percent-encoded) `message` parameters of a query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query<'a> {
    /// `operation`, percent-decoded.
    pub operation: Option<String>,
    /// `message` exactly as it appears in the query.
    pub message: Option<&'a str>,
}

/// Splits a raw query string. Other parameters are ignored.
pub fn parse_query(query: Option<&str>) -> Query<'_> {
    let mut parsed = Query::default();
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "operation" if parsed.operation.is_none() => {
                parsed.operation = Some(String::from_utf8_lossy(&percent_decode(value)).into_owned());
            }
            "message" if parsed.message.is_none() => parsed.message = Some(value),
            _ => {}
        }
    }
    parsed
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            // Two hex digits: at most 0xFF.
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes a GET `message=` value to the DER PKIMessage, accepting what real clients send:
/// percent-encoding (`%2B`, `%2F`, `%3D`, Cisco's `%0A` line breaks), `+` and `/` unescaped
/// (macOS), `+` turned into a space by form encoding, URL-safe base64 (`-`, `_`), missing
/// padding, and CR/LF/whitespace anywhere.
pub fn decode_message_param(raw: &str) -> Result<Vec<u8>, ScepError> {
    if raw.len() > MAX_MESSAGE_LEN * 2 {
        return Err(ScepError::BodyTooLarge);
    }
    let decoded = percent_decode(raw);
    let cleaned: Vec<u8> = decoded
        .iter()
        .filter_map(|&b| match b {
            b' ' | b'-' => Some(b'+'),
            b'_' => Some(b'/'),
            b'\r' | b'\n' | b'\t' | b'=' => None,
            other => Some(other),
        })
        .collect();
    if cleaned.is_empty() {
        return Err(ScepError::EmptyMessage);
    }
    LENIENT
        .decode(&cleaned)
        .map_err(|_| ScepError::Malformed("the message parameter is not base64"))
}

/// The DER PKIMessage of a POST body: raw DER as RFC 8894 says, or (leniently) base64.
pub fn decode_post_body(body: &[u8]) -> Result<Vec<u8>, ScepError> {
    if body.is_empty() {
        return Err(ScepError::EmptyMessage);
    }
    if body.len() > MAX_MESSAGE_LEN {
        return Err(ScepError::BodyTooLarge);
    }
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let text = std::str::from_utf8(body).map_err(|_| ScepError::Malformed("the body is neither DER nor base64"))?;
    decode_message_param(text.trim())
}

/// What an endpoint really does, for GetCACaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// SHA-1 signatures are accepted.
    pub sha1: bool,
    /// A next CA is configured (GetNextCACert).
    pub next_ca: bool,
    /// Renewal is accepted (RenewalReq, or PKCSReq signed by an issued certificate).
    pub renewal: bool,
}

/// The GetCACaps body: one capability per line, each ending in LF.
pub fn render_caps(caps: Capabilities) -> String {
    let mut lines = vec!["POSTPKIOperation"];
    if caps.renewal {
        lines.push("Renewal");
    }
    if caps.sha1 {
        lines.push("SHA-1");
    }
    lines.extend(["SHA-256", "SHA-512", "AES", "DES3"]);
    if caps.next_ca {
        lines.push("GetNextCACert");
    }
    lines.push("SCEPStandard");
    lines.into_iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD as B64;

    use super::*;

    #[test]
    fn paths() {
        let cases: [(&str, &str, Option<&str>); 9] = [
            ("good_plain", "/scep/default", Some("default")),
            ("good_slash", "/scep/mdm/", Some("mdm")),
            ("good_cisco", "/scep/routers/pkiclient.exe", Some("routers")),
            ("good_cgi_bin", "/cgi-bin/pkiclient.exe", Some("default")),
            ("bad_empty", "/scep/", None),
            ("bad_nested", "/scep/a/b", None),
            ("bad_prefix", "/est/default", None),
            ("bad_upper", "/scep/Default", None),
            ("bad_cgi_other", "/cgi-bin/other.exe", None),
        ];
        for (case, path, want) in cases {
            assert_eq!(parse_path(path).ok().as_ref().map(Name::as_str), want, "case {case}");
        }
    }

    #[test]
    fn get_messages_decode_leniently() {
        let der: Vec<u8> = (0u8..=255).cycle().take(300).collect();
        let b64 = B64.encode(&der);
        assert!(b64.contains('+') && b64.contains('/'));
        let escaped = b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
        let cisco: String = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("%0A");
        let cases = [
            ("escaped", escaped),
            ("unescaped_macos", b64.clone()),
            ("form_plus_as_space", b64.replace('+', " ")),
            ("form_plus_as_encoded_space", b64.replace('+', "%20")),
            ("url_safe", b64.replace('+', "-").replace('/', "_").replace('=', "")),
            ("cisco_line_breaks", cisco),
            ("no_padding", b64.trim_end_matches('=').to_owned()),
        ];
        for (case, raw) in cases {
            assert_eq!(decode_message_param(&raw).unwrap(), der, "case {case}");
        }
        assert!(matches!(decode_message_param(""), Err(ScepError::EmptyMessage)));
        assert!(matches!(decode_message_param("%0A"), Err(ScepError::EmptyMessage)));
        assert!(matches!(decode_message_param("!!!"), Err(ScepError::Malformed(_))));
        assert!(matches!(decode_post_body(b""), Err(ScepError::EmptyMessage)));
        assert_eq!(decode_post_body(&[0x30, 0x00]).unwrap(), [0x30, 0x00]);
    }

    #[test]
    fn queries_and_caps() {
        let q = parse_query(Some("operation=GetCACert&message=router1&x=y"));
        assert_eq!(q.operation.as_deref(), Some("GetCACert"));
        assert_eq!(q.message, Some("router1"));
        assert_eq!(Operation::parse("getcacaps"), Some(Operation::GetCaCaps));
        assert_eq!(Operation::parse("Other"), None);
        let caps = render_caps(Capabilities {
            sha1: false,
            next_ca: false,
            renewal: true,
        });
        assert_eq!(
            caps,
            "POSTPKIOperation\nRenewal\nSHA-256\nSHA-512\nAES\nDES3\nSCEPStandard\n"
        );
        let all = render_caps(Capabilities {
            sha1: true,
            next_ca: true,
            renewal: true,
        });
        assert!(all.contains("SHA-1\n") && all.contains("GetNextCACert\n"));
    }
}
