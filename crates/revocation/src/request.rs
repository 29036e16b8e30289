//! Parsing untrusted OCSP requests: the DER OCSPRequest (POST body, or decoded GET path) and
//! the GET path of RFC 6960 A.1 (`{url}/{url-encoding of base64 of the DER}`).

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use const_oid::db::rfc5912::{ID_SHA_1, ID_SHA_256};
use const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE;
use der::Decode;
use der::asn1::OctetString;

use crate::RevocationError;
use crate::asn1::{self, CertId};
use certgate_core::{Name, Serial};

/// The largest OCSP request accepted, DER (a POST body or a decoded GET path).
pub const MAX_REQUEST_LEN: usize = 16 * 1024;

/// The most CertIDs one request may ask about.
pub const MAX_REQUESTS: usize = 16;

/// The largest nonce accepted (RFC 9654 raised RFC 8954's 32 octets to 128).
const MAX_NONCE_LEN: usize = 128;

/// Lenient base64 for GET paths: padding optional, stray trailing bits tolerated.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The hash algorithm of a CertID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertIdHash {
    /// SHA-1 (what most clients, and OpenSSL by default, send).
    Sha1,
    /// SHA-256.
    Sha256,
}

/// One CertID of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCertId {
    /// The hash algorithm; `None` for one certgate does not support (answered `unknown`, or
    /// `unauthorized` when nothing else matches).
    pub hash: Option<CertIdHash>,
    /// Hash of the issuer's subject name, DER.
    pub issuer_name_hash: Vec<u8>,
    /// Hash of the issuer's subjectPublicKey BIT STRING contents.
    pub issuer_key_hash: Vec<u8>,
    /// The serial; `None` when it cannot be a certgate serial (zero, negative, over 20 bytes).
    pub serial: Option<Serial>,
    pub(crate) raw: CertId,
}

/// A parsed OCSPRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedOcspRequest {
    /// The CertIDs, 1 to [`MAX_REQUESTS`], in request order.
    pub cert_ids: Vec<ParsedCertId>,
    /// The nonce extension's extnValue as received (echoed byte for byte), if any.
    pub nonce: Option<Vec<u8>>,
}

impl ParsedOcspRequest {
    /// Whether the answer may be cached and shared: one CertID and no nonce.
    pub fn cacheable(&self) -> bool {
        self.cert_ids.len() == 1 && self.nonce.is_none()
    }
}

/// Parses a DER OCSPRequest. Never panics; any structure it does not accept is
/// [`RevocationError::MalformedRequest`], a request over [`MAX_REQUEST_LEN`] bytes
/// [`RevocationError::RequestTooLarge`]. The request signature is not checked (certgate does
/// not require signed requests, RFC 6960 4.1.2).
pub fn parse_ocsp_request(der: &[u8]) -> Result<ParsedOcspRequest, RevocationError> {
    if der.len() > MAX_REQUEST_LEN {
        return Err(RevocationError::RequestTooLarge);
    }
    let request = asn1::OcspRequest::from_der(der).map_err(|_| RevocationError::MalformedRequest("not DER"))?;
    let tbs = request.tbs_request;
    if tbs.request_list.is_empty() {
        return Err(RevocationError::MalformedRequest("empty requestList"));
    }
    if tbs.request_list.len() > MAX_REQUESTS {
        return Err(RevocationError::MalformedRequest("more than 16 requests"));
    }
    let mut nonce = None;
    for extension in tbs.request_extensions.iter().flatten() {
        if extension.extn_id != ID_PKIX_OCSP_NONCE {
            continue;
        }
        if nonce.is_some() {
            return Err(RevocationError::MalformedRequest("two nonce extensions"));
        }
        let value = extension.extn_value.as_bytes();
        // RFC 9654 4.4.1: extnValue holds an OCTET STRING, the nonce. Older clients put the
        // raw bytes there; accept those too, and bound either by the nonce length.
        let inner_len = OctetString::from_der(value).map_or(value.len(), |o| o.as_bytes().len());
        if inner_len == 0 || inner_len > MAX_NONCE_LEN {
            return Err(RevocationError::MalformedRequest("nonce length out of range"));
        }
        nonce = Some(value.to_vec());
    }
    let cert_ids = tbs
        .request_list
        .into_iter()
        .map(|r| {
            let id = r.req_cert;
            let hash = match id.hash_algorithm.oid {
                oid if oid == ID_SHA_1 => Some(CertIdHash::Sha1),
                oid if oid == ID_SHA_256 => Some(CertIdHash::Sha256),
                _ => None,
            };
            ParsedCertId {
                hash,
                issuer_name_hash: id.issuer_name_hash.as_bytes().to_vec(),
                issuer_key_hash: id.issuer_key_hash.as_bytes().to_vec(),
                serial: Serial::from_der_integer(id.serial_number.as_bytes()).ok(),
                raw: id,
            }
        })
        .collect();
    Ok(ParsedOcspRequest { cert_ids, nonce })
}

/// A decoded OCSP GET path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspGetRequest {
    /// The issuer named in the path (`/ocsp/{issuer}/{base64}`), or none (`/ocsp/{base64}`).
    pub issuer: Option<Name>,
    /// The DER OCSPRequest.
    pub der: Vec<u8>,
}

/// Decodes an OCSP GET path: `/ocsp/{issuer}/{request}` or `/ocsp/{request}`, where the
/// request is base64 of the DER OCSPRequest, URL-encoded (RFC 6960 A.1). Lenient about what
/// clients and proxies do to it: percent-encoding of any character, '/' of the base64 left
/// raw (so it spans path segments, which are joined back), missing padding, a space for '+',
/// line breaks, and the URL-safe alphabet. An issuer segment is recognised because base64 of
/// a DER SEQUENCE starts with an upper-case 'M', which no issuer name can.
pub fn decode_get_path(path: &str) -> Result<OcspGetRequest, RevocationError> {
    let rest = path
        .strip_prefix("/ocsp/")
        .ok_or(RevocationError::MalformedRequest("not an OCSP path"))?;
    let (issuer, encoded) = match rest.split_once('/') {
        Some((first, encoded)) => match Name::new(first) {
            Ok(name) => (Some(name), encoded),
            Err(_) => (None, rest),
        },
        None => (None, rest),
    };
    // Base64 grows 4/3, percent-encoding up to 3x: anything longer cannot fit the limit.
    if encoded.len() > MAX_REQUEST_LEN.div_ceil(3) * 4 * 3 {
        return Err(RevocationError::RequestTooLarge);
    }
    let base64 = percent_decode(encoded)?;
    let der = LENIENT_BASE64
        .decode(&base64)
        .map_err(|_| RevocationError::MalformedRequest("GET path is not base64"))?;
    if der.len() > MAX_REQUEST_LEN {
        return Err(RevocationError::RequestTooLarge);
    }
    if der.is_empty() {
        return Err(RevocationError::MalformedRequest("empty GET request"));
    }
    Ok(OcspGetRequest { issuer, der })
}

/// Percent-decodes into base64 text in the standard alphabet, dropping line breaks and
/// mapping a space to '+' and the URL-safe '-' '_' to '+' '/'.
fn percent_decode(encoded: &str) -> Result<Vec<u8>, RevocationError> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let byte = if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(RevocationError::MalformedRequest("bad percent-encoding"))?;
            i += 3;
            hex
        } else {
            i += 1;
            b
        };
        match byte {
            b'\r' | b'\n' => {}
            b' ' | b'-' => out.push(b'+'),
            b'_' => out.push(b'/'),
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // openssl ocsp -issuer ca.pem -serial 0x4ABC -no_nonce -reqout req.der, for a P-256 CA:
    // a fixed SEQUENCE built here instead, so the test does not depend on a CA.
    fn request_der(serial: &[u8], nonce: Option<&[u8]>, count: usize) -> Vec<u8> {
        use der::Encode;
        use der::asn1::Int;
        use x509_cert::spki::AlgorithmIdentifierOwned;
        let id = CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: ID_SHA_1,
                parameters: Some(der::asn1::Null.into()),
            },
            issuer_name_hash: OctetString::new(vec![1u8; 20]).unwrap(),
            issuer_key_hash: OctetString::new(vec![2u8; 20]).unwrap(),
            serial_number: Int::new(serial).unwrap(),
        };
        let request = asn1::OcspRequest {
            tbs_request: asn1::TbsRequest {
                version: asn1::Version::V1,
                requestor_name: None,
                request_list: (0..count)
                    .map(|_| asn1::Request {
                        req_cert: id.clone(),
                        single_request_extensions: None,
                    })
                    .collect(),
                request_extensions: nonce.map(|n| {
                    vec![asn1::RequestExtension {
                        extn_id: ID_PKIX_OCSP_NONCE,
                        critical: None,
                        extn_value: OctetString::new(n.to_vec()).unwrap(),
                    }]
                }),
            },
            optional_signature: None,
        };
        request.to_der().unwrap()
    }

    #[test]
    fn parse_requests() {
        let wrapped_nonce = OctetString::new(vec![7u8; 16]).unwrap();
        let wrapped_nonce = der::Encode::to_der(&wrapped_nonce).unwrap();
        let empty_nonce = der::Encode::to_der(&OctetString::new(Vec::new()).unwrap()).unwrap();
        let long_nonce = der::Encode::to_der(&OctetString::new(vec![1u8; 129]).unwrap()).unwrap();
        let good = request_der(&[0x4a, 0xbc], None, 1);
        let mut trailing = good.clone();
        trailing.push(0);
        let mut truncated = good.clone();
        truncated.pop();
        // Ok((CertIDs, nonce present)) or the MalformedRequest text.
        type Want = Result<(usize, bool), &'static str>;
        let cases: Vec<(&str, Vec<u8>, Want)> = vec![
            ("good_single", good.clone(), Ok((1, false))),
            ("good_sixteen", request_der(&[1], None, 16), Ok((16, false))),
            (
                "good_nonce_octet_string",
                request_der(&[1], Some(&wrapped_nonce), 1),
                Ok((1, true)),
            ),
            (
                "good_nonce_raw_bytes",
                request_der(&[1], Some(&[9u8; 16]), 1),
                Ok((1, true)),
            ),
            (
                "bad_seventeen",
                request_der(&[1], None, 17),
                Err("more than 16 requests"),
            ),
            ("bad_empty_list", request_der(&[1], None, 0), Err("empty requestList")),
            (
                "bad_empty_nonce",
                request_der(&[1], Some(&empty_nonce), 1),
                Err("nonce length out of range"),
            ),
            (
                "bad_long_nonce",
                request_der(&[1], Some(&long_nonce), 1),
                Err("nonce length out of range"),
            ),
            ("bad_trailing_byte", trailing, Err("not DER")),
            ("bad_truncated", truncated, Err("not DER")),
            ("bad_empty", Vec::new(), Err("not DER")),
            ("bad_garbage", b"\x30\x03\x02\x01".to_vec(), Err("not DER")),
        ];
        for (case, der, want) in cases {
            match (parse_ocsp_request(&der), want) {
                (Ok(parsed), Ok((count, nonce))) => {
                    assert_eq!(parsed.cert_ids.len(), count, "case {case}");
                    assert_eq!(parsed.nonce.is_some(), nonce, "case {case}");
                    assert_eq!(parsed.cacheable(), count == 1 && !nonce, "case {case}");
                }
                (Err(RevocationError::MalformedRequest(got)), Err(want)) => assert_eq!(got, want, "case {case}"),
                (got, want) => panic!("case {case}: got {got:?}, want {want:?}"),
            }
        }
        let too_large = vec![0x30; MAX_REQUEST_LEN + 1];
        assert!(matches!(
            parse_ocsp_request(&too_large),
            Err(RevocationError::RequestTooLarge)
        ));
    }

    #[test]
    fn cert_id_fields() {
        for (case, serial, want) in [
            ("good_positive", vec![0x4a, 0xbc], Some("4ABC")),
            ("good_high_bit_padded", vec![0x00, 0x80], Some("80")),
            ("unusable_negative", vec![0xff], None),
            ("unusable_zero", vec![0x00], None),
            ("unusable_too_long", vec![0x01; 21], None),
        ] {
            let parsed = parse_ocsp_request(&request_der(&serial, None, 1)).unwrap();
            let id = &parsed.cert_ids[0];
            assert_eq!(id.serial.as_ref().map(Serial::to_hex).as_deref(), want, "case {case}");
            assert_eq!(id.hash, Some(CertIdHash::Sha1), "case {case}");
            assert_eq!(id.issuer_name_hash, vec![1u8; 20], "case {case}");
        }
    }

    #[test]
    fn decode_get_paths() {
        use base64::engine::general_purpose::STANDARD;
        // A request whose base64 has '+', '/' and '=' in it.
        let der = (0u16..301).map(|i| (i * 7 % 256) as u8).collect::<Vec<u8>>();
        let b64 = STANDARD.encode(&der);
        assert!(b64.contains('+') && b64.contains('/') && b64.ends_with('='));
        let encoded = b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
        let lower = b64.replace('+', "%2b").replace('/', "%2f");
        let unpadded = b64.trim_end_matches('=').to_owned();
        let url_safe = b64.replace('+', "-").replace('/', "_");
        let spaced = b64.replace('+', " ");
        let wrapped = format!("{}%0A{}", &b64[..64], &b64[64..]);
        let issuer = Some(Name::new("default").unwrap());
        // Ok(the issuer in the path) or the MalformedRequest text.
        type Want = Result<Option<Name>, &'static str>;
        let cases: Vec<(&str, String, Want)> = vec![
            (
                "good_raw_with_slashes",
                format!("/ocsp/default/{b64}"),
                Ok(issuer.clone()),
            ),
            (
                "good_percent_encoded",
                format!("/ocsp/default/{encoded}"),
                Ok(issuer.clone()),
            ),
            (
                "good_lower_case_hex",
                format!("/ocsp/default/{lower}"),
                Ok(issuer.clone()),
            ),
            ("good_unpadded", format!("/ocsp/default/{unpadded}"), Ok(issuer.clone())),
            (
                "good_url_safe_alphabet",
                format!("/ocsp/default/{url_safe}"),
                Ok(issuer.clone()),
            ),
            (
                "good_space_for_plus",
                format!("/ocsp/default/{spaced}"),
                Ok(issuer.clone()),
            ),
            (
                "good_line_break",
                format!("/ocsp/default/{wrapped}"),
                Ok(issuer.clone()),
            ),
            ("good_no_issuer", format!("/ocsp/{b64}"), Ok(None)),
            ("good_no_issuer_encoded", format!("/ocsp/{encoded}"), Ok(None)),
            ("bad_base64", "/ocsp/default/M!!!".into(), Err("GET path is not base64")),
            (
                "bad_percent",
                "/ocsp/default/MEU%ZZ".into(),
                Err("bad percent-encoding"),
            ),
            (
                "bad_truncated_percent",
                "/ocsp/default/MEU%2".into(),
                Err("bad percent-encoding"),
            ),
            ("bad_empty", "/ocsp/default/".into(), Err("empty GET request")),
            ("bad_prefix", "/crl/default.crl".into(), Err("not an OCSP path")),
        ];
        for (case, path, want) in cases {
            match (decode_get_path(&path), want) {
                (Ok(got), Ok(want_issuer)) => {
                    assert_eq!(got.issuer, want_issuer, "case {case}");
                    assert_eq!(got.der, der, "case {case}");
                }
                (Err(RevocationError::MalformedRequest(got)), Err(want)) => assert_eq!(got, want, "case {case}"),
                (got, want) => panic!("case {case}: got {got:?}, want {want:?}"),
            }
        }
        let huge = format!("/ocsp/default/{}", "A".repeat(MAX_REQUEST_LEN * 2));
        assert!(matches!(decode_get_path(&huge), Err(RevocationError::RequestTooLarge)));
    }
}
