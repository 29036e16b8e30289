//! Wire formats: paths, request bodies (base64, PEM or DER PKCS#10), content types, base64
//! response bodies and the degenerate certs-only PKCS#7 (RFC 7030 4.1.3, RFC 8951).

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use certgate_core::{Name, ParsedCsr};
use cms::content_info::ContentInfo;
use der::{Decode, Encode};
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::EstError;
use crate::config::{Base64Layout, DEFAULT_ENDPOINT};

/// The largest request body the daemon should read (a 64 KiB CSR as wrapped base64 fits).
pub const MAX_BODY_LEN: usize = 128 * 1024;

/// `Content-Type` of certificate responses, byte-exact (libest compares strings).
pub const CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";

/// `Content-Type` of the csrattrs response.
pub const CSRATTRS: &str = "application/csrattrs";

/// The multipart boundary of serverkeygen answers; '-' and '_' never occur in base64.
pub const MULTIPART_BOUNDARY: &str = "certgate-est_boundary";

/// Lenient base64 input: standard alphabet, padding optional.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An EST operation (RFC 7030 3.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `GET cacerts`.
    CaCerts,
    /// `POST simpleenroll`.
    SimpleEnroll,
    /// `POST simplereenroll`.
    SimpleReenroll,
    /// `GET csrattrs`.
    CsrAttrs,
    /// `POST serverkeygen`.
    ServerKeygen,
    /// `POST fullcmc` (not implemented: 501).
    FullCmc,
}

impl Operation {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CaCerts => "cacerts",
            Self::SimpleEnroll => "simpleenroll",
            Self::SimpleReenroll => "simplereenroll",
            Self::CsrAttrs => "csrattrs",
            Self::ServerKeygen => "serverkeygen",
            Self::FullCmc => "fullcmc",
        }
    }

    fn parse(segment: &str) -> Option<Self> {
        [
            Self::CaCerts,
            Self::SimpleEnroll,
            Self::SimpleReenroll,
            Self::CsrAttrs,
            Self::ServerKeygen,
            Self::FullCmc,
        ]
        .into_iter()
        .find(|op| op.as_str() == segment)
    }

    /// The method the operation is requested with.
    pub fn method(self) -> &'static str {
        match self {
            Self::CaCerts | Self::CsrAttrs => "GET",
            _ => "POST",
        }
    }
}

/// A parsed EST path: which endpoint, which operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstPath {
    /// The endpoint: the label, or [`DEFAULT_ENDPOINT`] for the unlabelled form.
    pub endpoint: Name,
    /// Whether the path carried a label.
    pub labelled: bool,
    /// The operation.
    pub operation: Operation,
}

/// Parses `/.well-known/est/<op>` and `/.well-known/est/<label>/<op>` (the query, if any,
/// already split off). `NotFound` for anything else, `UnknownEndpoint` for a label that
/// cannot be an endpoint name.
pub fn parse_path(path: &str) -> Result<EstPath, EstError> {
    let rest = path.strip_prefix("/.well-known/est/").ok_or(EstError::NotFound)?;
    let (label, op) = match rest.split_once('/') {
        Some((label, op)) => (Some(label), op),
        None => (None, rest),
    };
    let operation = Operation::parse(op).ok_or(EstError::NotFound)?;
    let endpoint = match label {
        Some(label) => Name::new(label).map_err(|_| EstError::UnknownEndpoint(printable(label)))?,
        None => Name::new(DEFAULT_ENDPOINT).map_err(|_| EstError::UnknownEndpoint(DEFAULT_ENDPOINT.into()))?,
    };
    Ok(EstPath {
        endpoint,
        labelled: label.is_some(),
        operation,
    })
}

/// At most 64 printable characters of client input, for error texts and logs.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Whether a POST body's `Content-Type` is acceptable: `application/pkcs10` (RFC 7030), and
/// leniently what real clients send instead: none, `application/x-pkcs10`,
/// `application/octet-stream`, `text/plain` and curl's default
/// `application/x-www-form-urlencoded`. Parameters are ignored.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), EstError> {
    let Some(value) = content_type else {
        return Ok(());
    };
    let media = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match media.as_str() {
        ""
        | "application/pkcs10"
        | "application/x-pkcs10"
        | "application/octet-stream"
        | "text/plain"
        | "application/x-www-form-urlencoded" => Ok(()),
        _ => Err(EstError::UnsupportedContentType(printable(value))),
    }
}

/// Decodes a request body to DER: base64 (wrapped or not, CRLF or LF, padding optional), PEM
/// (`CERTIFICATE REQUEST` or `NEW CERTIFICATE REQUEST` armour) or raw DER.
/// Content-Transfer-Encoding is irrelevant: the bytes decide (RFC 8951).
pub fn decode_body(body: &[u8]) -> Result<Vec<u8>, EstError> {
    if body.len() > MAX_BODY_LEN {
        return Err(EstError::BodyTooLarge);
    }
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or(EstError::MalformedBody("the body is empty"))?;
    let body = body.get(start..).unwrap_or_default();
    // A DER SEQUENCE starts with 0x30 ('0'), which no base64 of a DER structure starts with.
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let text = if body.starts_with(b"-----BEGIN") {
        pem_payload(body)?
    } else {
        body
    };
    let compact: Vec<u8> = text.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    LENIENT
        .decode(&compact)
        .map_err(|_| EstError::MalformedBody("the body is not base64, PEM or DER"))
}

/// The base64 lines between the first `-----BEGIN …-----` line and its `-----END` line.
fn pem_payload(body: &[u8]) -> Result<&[u8], EstError> {
    let malformed = EstError::MalformedBody("malformed PEM armour");
    let header_end = body
        .windows(5)
        .skip(10)
        .position(|w| w == b"-----")
        .map(|p| p + 15)
        .ok_or(EstError::MalformedBody("malformed PEM armour"))?;
    let label = body
        .get(11..header_end - 5)
        .ok_or(EstError::MalformedBody("malformed PEM armour"))?;
    if label != b"CERTIFICATE REQUEST" && label != b"NEW CERTIFICATE REQUEST" {
        return Err(EstError::MalformedBody("PEM armour is not a CERTIFICATE REQUEST"));
    }
    let rest = body.get(header_end..).ok_or(malformed)?;
    let end = rest
        .windows(8)
        .position(|w| w == b"-----END")
        .ok_or(EstError::MalformedBody("PEM armour has no END line"))?;
    Ok(rest.get(..end).unwrap_or_default())
}

/// Decodes an EST request body (see [`decode_body`]) and parses the PKCS#10 request in it,
/// verifying its signature. The entry point for fuzzing untrusted bodies.
pub fn decode_csr_body(body: &[u8]) -> Result<ParsedCsr, EstError> {
    let der = decode_body(body)?;
    Ok(ParsedCsr::from_der(&der)?)
}

/// Base64 (standard alphabet, padded) in the endpoint's layout: lines of 64 or 76
/// characters each ending in CRLF, or a single line with no line break.
pub fn encode_base64(bytes: &[u8], layout: Base64Layout) -> Vec<u8> {
    let text = STANDARD.encode(bytes);
    let width = match layout {
        Base64Layout::Wrap64 => 64,
        Base64Layout::Wrap76 => 76,
        Base64Layout::SingleLine => return text.into_bytes(),
    };
    let mut out = Vec::with_capacity(text.len() + 2 * (text.len() / width + 1));
    for line in text.as_bytes().chunks(width) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// [`encode_base64`] for secrets (a private key): the result and every intermediate buffer
/// are zeroed when dropped.
pub fn encode_base64_secret(bytes: &[u8], layout: Base64Layout) -> Zeroizing<Vec<u8>> {
    let text = Zeroizing::new(STANDARD.encode(bytes));
    let width = match layout {
        Base64Layout::Wrap64 => 64,
        Base64Layout::Wrap76 => 76,
        Base64Layout::SingleLine => return Zeroizing::new(text.as_bytes().to_vec()),
    };
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() + 2 * (text.len() / width + 1)));
    for line in text.as_bytes().chunks(width) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A degenerate certs-only SignedData (RFC 5652 with no signers, as OpenSSL writes it: an
/// empty CRL set included) holding `certificates`, DER.
pub fn certs_only(certificates: &[&[u8]]) -> Result<Vec<u8>, EstError> {
    let encoding = |e: der::Error| EstError::Encoding(e.to_string());
    let certs = certificates
        .iter()
        .map(|der| Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(encoding)?;
    let info = ContentInfo::try_from(certs).map_err(encoding)?;
    info.to_der().map_err(encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Endpoint, labelled, operation.
    type Want = Option<(&'static str, bool, Operation)>;

    #[test]
    fn paths() {
        let cases: [(&str, &str, Want); 11] = [
            (
                "good_default_cacerts",
                "/.well-known/est/cacerts",
                Some(("default", false, Operation::CaCerts)),
            ),
            (
                "good_labelled_enroll",
                "/.well-known/est/factory/simpleenroll",
                Some(("factory", true, Operation::SimpleEnroll)),
            ),
            (
                "good_default_label",
                "/.well-known/est/default/csrattrs",
                Some(("default", true, Operation::CsrAttrs)),
            ),
            (
                "good_fullcmc",
                "/.well-known/est/fullcmc",
                Some(("default", false, Operation::FullCmc)),
            ),
            ("bad_prefix", "/est/cacerts", None),
            ("bad_unknown_op", "/.well-known/est/enroll", None),
            ("bad_trailing_slash", "/.well-known/est/cacerts/", None),
            ("bad_too_deep", "/.well-known/est/a/b/cacerts", None),
            ("bad_label_case", "/.well-known/est/Factory/cacerts", None),
            ("bad_empty_label", "/.well-known/est//cacerts", None),
            ("bad_root", "/.well-known/est/", None),
        ];
        for (case, path, want) in cases {
            let got = parse_path(path)
                .ok()
                .map(|p| (p.endpoint.to_string(), p.labelled, p.operation));
            let want = want.map(|(e, l, o)| (e.to_owned(), l, o));
            assert_eq!(got, want, "case {case}");
        }
        assert!(matches!(
            parse_path("/.well-known/est/Factory/cacerts"),
            Err(EstError::UnknownEndpoint(_))
        ));
    }

    #[test]
    fn content_types() {
        let cases = [
            ("good_none", None, true),
            ("good_pkcs10", Some("application/pkcs10"), true),
            ("good_pkcs10_params", Some("Application/PKCS10; charset=binary"), true),
            ("good_x_pkcs10", Some("application/x-pkcs10"), true),
            ("good_curl_default", Some("application/x-www-form-urlencoded"), true),
            ("good_octet_stream", Some("application/octet-stream"), true),
            ("bad_json", Some("application/json"), false),
            ("bad_pkcs7", Some("application/pkcs7-mime"), false),
        ];
        for (case, value, ok) in cases {
            assert_eq!(check_content_type(value).is_ok(), ok, "case {case}");
        }
    }

    #[test]
    fn bodies() {
        let der: Vec<u8> = (0u8..=200).map(|i| i.wrapping_mul(7)).collect();
        let mut der = der;
        der[0] = 0x30;
        let b64 = STANDARD.encode(&der);
        let wrap = |width: usize, eol: &str| {
            b64.as_bytes()
                .chunks(width)
                .map(|c| format!("{}{eol}", std::str::from_utf8(c).unwrap()))
                .collect::<String>()
        };
        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}-----END CERTIFICATE REQUEST-----\n",
            wrap(64, "\n")
        );
        let new_pem = pem.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("good_der", der.clone(), true),
            ("good_base64_single_line", b64.clone().into_bytes(), true),
            ("good_base64_crlf_64", wrap(64, "\r\n").into_bytes(), true),
            ("good_base64_lf_76", wrap(76, "\n").into_bytes(), true),
            (
                "good_base64_unpadded",
                b64.trim_end_matches('=').as_bytes().to_vec(),
                true,
            ),
            (
                "good_base64_leading_space",
                format!("  \r\n{b64}\r\n").into_bytes(),
                true,
            ),
            ("good_pem", pem.into_bytes(), true),
            ("good_new_pem", new_pem.into_bytes(), true),
            ("bad_empty", Vec::new(), false),
            ("bad_whitespace", b" \r\n".to_vec(), false),
            ("bad_not_base64", b"hello, world!".to_vec(), false),
            (
                "bad_pem_certificate",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
                false,
            ),
            (
                "bad_pem_no_end",
                b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n".to_vec(),
                false,
            ),
            ("bad_pem_truncated_header", b"-----BEGIN".to_vec(), false),
        ];
        for (case, body, ok) in cases {
            let got = decode_body(&body);
            assert_eq!(got.is_ok(), ok, "case {case}: {got:?}");
            if let Ok(decoded) = got {
                assert_eq!(decoded, der, "case {case}");
            }
        }
        assert!(matches!(
            decode_body(&vec![b'A'; MAX_BODY_LEN + 1]),
            Err(EstError::BodyTooLarge)
        ));
    }

    #[test]
    fn base64_layouts() {
        let bytes = vec![0xabu8; 100]; // 136 base64 characters
        let cases = [
            ("wrap64", Base64Layout::Wrap64, vec![64usize, 64, 8]),
            ("wrap76", Base64Layout::Wrap76, vec![76, 60]),
            ("single_line", Base64Layout::SingleLine, vec![136]),
        ];
        for (case, layout, lines) in cases {
            let out = String::from_utf8(encode_base64(&bytes, layout)).unwrap();
            let got: Vec<usize> = if layout == Base64Layout::SingleLine {
                assert!(!out.contains('\n') && !out.contains('\r'), "case {case}");
                vec![out.len()]
            } else {
                assert!(out.ends_with("\r\n"), "case {case}");
                assert!(!out.replace("\r\n", "").contains('\n'), "case {case}: LF only with CR");
                out.trim_end_matches("\r\n").split("\r\n").map(str::len).collect()
            };
            assert_eq!(got, lines, "case {case}");
            assert_eq!(decode_body(out.as_bytes()).unwrap(), bytes, "case {case}");
            assert_eq!(
                encode_base64_secret(&bytes, layout).as_slice(),
                out.as_bytes(),
                "case {case}: the secret variant lays out the same"
            );
        }
    }
}
