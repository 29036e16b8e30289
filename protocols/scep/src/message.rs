//! SCEP PKIMessages (RFC 8894 3): parsing a request's SignedData and its signed attributes,
//! checking its signature, opening its EnvelopedData with the RA key, and building signed
//! CertReps and degenerate certificates-only SignedData.
//!
//! [`parse_pki_message`] and [`parse_envelope`] take untrusted bytes and never panic: they
//! are the fuzzing entry points.

use std::time::Duration as StdDuration;

use certgate_authority::{KeyTransport, RaDigest, RaKey};
use certgate_core::{CsrError, ParsedCsr};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EncryptedContentInfo, EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo, RecipientInfos,
};
use cms::revocation::{RevocationInfoChoice, RevocationInfoChoices};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5911;
use der::asn1::{GeneralizedTime, OctetString, PrintableString, SetOfVec, UtcTime, Utf8StringRef};
use der::{Any, Decode, Encode, EncodingRules, Sequence, SliceReader, Tag, Tagged};
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::name::Name as X509Name;
use zeroize::Zeroizing;

use crate::crypto::{self, ContentCipher, DigestAlg, ID_DATA, OID_RSA_ENCRYPTION};
use crate::{FailInfo, ScepError};

/// SCEP attribute OIDs (RFC 8894 3.2.1).
pub mod oids {
    use const_oid::ObjectIdentifier;

    /// messageType (PrintableString).
    pub const MESSAGE_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.2");
    /// pkiStatus (PrintableString).
    pub const PKI_STATUS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.3");
    /// failInfo (PrintableString).
    pub const FAIL_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.4");
    /// senderNonce (OCTET STRING).
    pub const SENDER_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.5");
    /// recipientNonce (OCTET STRING).
    pub const RECIPIENT_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.6");
    /// transactionID (PrintableString).
    pub const TRANSACTION_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.7");
    /// failInfoText (UTF8String, RFC 8894 3.2.1.4.1).
    pub const FAIL_INFO_TEXT: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.24.1");
}

/// The largest number of certificates or signers read from one message.
const MAX_ITEMS: usize = 32;

/// A PKIMessage's messageType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 3: the server's reply.
    CertRep,
    /// 17: renewal.
    RenewalReq,
    /// 19: enrollment.
    PkcsReq,
    /// 20: polling a pending request (GetCertInitial).
    CertPoll,
    /// 21: fetch a certificate by issuer and serial.
    GetCert,
    /// 22: fetch a CRL.
    GetCrl,
    /// Any other value (answered with FAILURE badRequest).
    Other(u32),
}

impl MessageType {
    /// The decimal code.
    pub fn code(self) -> u32 {
        match self {
            Self::CertRep => 3,
            Self::RenewalReq => 17,
            Self::PkcsReq => 19,
            Self::CertPoll => 20,
            Self::GetCert => 21,
            Self::GetCrl => 22,
            Self::Other(code) => code,
        }
    }

    /// The type with this code.
    pub fn from_code(code: u32) -> Self {
        match code {
            3 => Self::CertRep,
            17 => Self::RenewalReq,
            19 => Self::PkcsReq,
            20 => Self::CertPoll,
            21 => Self::GetCert,
            22 => Self::GetCrl,
            other => Self::Other(other),
        }
    }

    /// The name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CertRep => "CertRep",
            Self::RenewalReq => "RenewalReq",
            Self::PkcsReq => "PKCSReq",
            Self::CertPoll => "CertPoll",
            Self::GetCert => "GetCert",
            Self::GetCrl => "GetCRL",
            Self::Other(_) => "unknown",
        }
    }
}

/// A CertRep's pkiStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PkiStatus {
    /// 0: granted.
    Success,
    /// 2: rejected (failInfo says why).
    Failure,
    /// 3: waiting for an operator.
    Pending,
}

impl PkiStatus {
    /// The decimal string.
    pub fn code(self) -> &'static str {
        match self {
            Self::Success => "0",
            Self::Failure => "2",
            Self::Pending => "3",
        }
    }

    /// The name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
            Self::Pending => "PENDING",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        [Self::Success, Self::Failure, Self::Pending]
            .into_iter()
            .find(|s| s.code() == code)
    }
}

/// A parsed PKIMessage whose signature has not been checked yet ([`PkiMessage::verify`]).
#[derive(Debug, Clone)]
pub struct PkiMessage {
    /// messageType.
    pub message_type: MessageType,
    /// transactionID as text.
    pub transaction_id: String,
    /// transactionID exactly as received (echoed in the reply).
    pub transaction_id_value: Any,
    /// senderNonce.
    pub sender_nonce: Vec<u8>,
    /// recipientNonce (in CertReps).
    pub recipient_nonce: Option<Vec<u8>>,
    /// pkiStatus (in CertReps).
    pub pki_status: Option<PkiStatus>,
    /// failInfo (in CertReps).
    pub fail_info: Option<FailInfo>,
    /// failInfoText (in CertReps).
    pub fail_info_text: Option<String>,
    /// The digest algorithm, if known.
    pub digest: Option<DigestAlg>,
    /// The signer's certificate (DER), when the SignedData carries it.
    pub signer_certificate: Option<Vec<u8>>,
    /// Every certificate the SignedData carries (DER).
    pub certificates: Vec<Vec<u8>>,
    /// The eContent octets (a DER ContentInfo of EnvelopedData, or empty).
    pub content: Vec<u8>,
    signature_algorithm: ObjectIdentifier,
    signed_attrs_der: Vec<u8>,
    signature: Vec<u8>,
    message_digest: Option<Vec<u8>>,
    /// The signingTime attribute's value, undecoded ([`PkiMessage::signing_time`]).
    signing_time: Option<Any>,
}

fn decode_content_info(der: &[u8]) -> Result<(ContentInfo, bool), ScepError> {
    if let Ok(info) = ContentInfo::from_der(der) {
        return Ok((info, false));
    }
    // Streaming clients (openssl -stream) send BER: indefinite lengths, chunked OCTET STRINGs.
    let mut reader = SliceReader::new_with_encoding_rules(der, EncodingRules::Ber)
        .map_err(|_| ScepError::Malformed("not a DER or BER ContentInfo"))?;
    let info = ContentInfo::decode(&mut reader).map_err(|_| ScepError::Malformed("not a DER or BER ContentInfo"))?;
    Ok((info, true))
}

/// Decodes `any` as DER, else as BER (streaming clients, and go.mozilla.org/pkcs7 as used by
/// micromdm's scepclient, which writes encryptedContent in the constructed form). Returns
/// whether BER was needed.
fn decode_lenient<'a, T>(any: &'a Any) -> Option<(T, bool)>
where
    T: der::DecodeValue<'a> + der::FixedTag + 'a,
{
    match any.decode_as::<T>() {
        Ok(value) => Some((value, false)),
        Err(_) => any
            .decode_as_encoding(EncodingRules::Ber)
            .ok()
            .map(|value| (value, true)),
    }
}

/// Joins the chunks of a constructed OCTET STRING: der 0.8 hands them back as the
/// concatenated chunk TLVs. Only called when the encoding was constructed, so primitive
/// content that happens to start with 0x04 is never mistaken for chunks.
fn join_chunks(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut joined = Vec::with_capacity(bytes.len());
    let mut reader = SliceReader::new_with_encoding_rules(bytes, EncodingRules::Ber).ok()?;
    while !der::Reader::is_finished(&reader) {
        let chunk = OctetString::decode(&mut reader).ok()?;
        joined.extend_from_slice(chunk.as_bytes());
    }
    Some(joined)
}

/// The content octets of an eContent (an OCTET STRING, possibly BER-chunked).
fn octets(any: &Any, ber: bool) -> Result<Vec<u8>, ScepError> {
    let malformed = || ScepError::Malformed("eContent is not an OCTET STRING");
    let octets: OctetString = if ber || any.tag().is_constructed() {
        any.decode_as_encoding(EncodingRules::Ber).map_err(|_| malformed())?
    } else {
        any.decode_as().map_err(|_| malformed())?
    };
    if any.tag().is_constructed() {
        return join_chunks(octets.as_bytes()).ok_or_else(malformed);
    }
    Ok(octets.as_bytes().to_vec())
}

/// One definite-length TLV with a one-byte tag at the start of `bytes`: (tag, contents, rest).
fn read_tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let (len_bytes, rest) = (rest.get(..n)?, rest.get(n..)?);
            (
                len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
                rest,
            )
        }
        _ => return None, // indefinite length or absurd: the BER decoder's job
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

/// A DER TLV.
fn write_tlv(tag: u8, contents: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
}

/// How many levels of constructed OCTET STRING chunks (`24 …`) may nest inside a constructed
/// encryptedContent (`A0 …`). Real clients use none (go.mozilla.org/pkcs7 writes
/// `A0 { 04 … 04 … }`); without a cap a message under the size limit could nest tens of
/// thousands of levels.
const MAX_CHUNK_NESTING: usize = 8;

/// Why the chunks of a constructed OCTET STRING could not be joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkError {
    /// Not a sequence of OCTET STRING TLVs (primitive or constructed) with definite lengths.
    Shape,
    /// Constructed chunks nested deeper than [`MAX_CHUNK_NESTING`].
    TooDeep,
}

/// The contents of a (possibly constructed, nested) OCTET STRING's chunks, joined. Iterative,
/// with the nesting capped at [`MAX_CHUNK_NESTING`]: the input is untrusted, and recursion
/// once per level let a deeply nested message overflow the stack.
fn join_octet_chunks<'a>(bytes: &'a [u8], out: &mut Vec<u8>) -> Result<(), ChunkError> {
    // The unread rest of each enclosing level, innermost last.
    let mut levels: Vec<&'a [u8]> = vec![bytes];
    while let Some(unread) = levels.last_mut() {
        if unread.is_empty() {
            levels.pop();
            continue;
        }
        let (tag, contents, rest) = read_tlv(unread).ok_or(ChunkError::Shape)?;
        *unread = rest;
        match tag {
            0x04 => out.extend_from_slice(contents),
            0x24 if levels.len() > MAX_CHUNK_NESTING => return Err(ChunkError::TooDeep),
            0x24 => levels.push(contents),
            _ => return Err(ChunkError::Shape),
        }
    }
    Ok(())
}

/// Rewrites an EnvelopedData (DER TLV with definite lengths) whose encryptedContent is in the
/// constructed form (`A0 { 04 … 04 … }`, as go.mozilla.org/pkcs7 writes it) into DER, with
/// the chunks joined into one primitive `[0]`. [`ChunkError::Shape`] when there is nothing
/// to rewrite or the input is not of that shape (the BER decoder may still read it);
/// [`ChunkError::TooDeep`] when the chunks nest too deeply (refused).
fn primitive_encrypted_content(enveloped: &[u8]) -> Result<Vec<u8>, ChunkError> {
    let shape = ChunkError::Shape;
    let (0x30, mut fields, _) = read_tlv(enveloped).ok_or(shape)? else {
        return Err(shape);
    };
    let mut body = Vec::with_capacity(enveloped.len());
    let mut rewritten = false;
    while !fields.is_empty() {
        let (tag, contents, rest) = read_tlv(fields).ok_or(shape)?;
        if tag == 0x30 && !rewritten {
            // encryptedContentInfo: contentType, contentEncryptionAlgorithm, [0] content.
            let mut info = Vec::with_capacity(contents.len());
            let mut parts = contents;
            while !parts.is_empty() {
                let (part_tag, part, part_rest) = read_tlv(parts).ok_or(shape)?;
                if part_tag == 0xa0 {
                    let mut joined = Vec::with_capacity(part.len());
                    join_octet_chunks(part, &mut joined)?;
                    write_tlv(0x80, &joined, &mut info);
                    rewritten = true;
                } else {
                    write_tlv(part_tag, part, &mut info);
                }
                parts = part_rest;
            }
            write_tlv(0x30, &info, &mut body);
        } else {
            write_tlv(tag, contents, &mut body);
        }
        fields = rest;
    }
    if !rewritten {
        return Err(shape);
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    write_tlv(0x30, &body, &mut out);
    Ok(out)
}

/// Whether an EnvelopedData's encryptedContent (`[0] IMPLICIT OCTET STRING` inside the one
/// top-level SEQUENCE, encryptedContentInfo) is in the constructed form.
fn encrypted_content_constructed(enveloped: &Any) -> bool {
    let elements = |bytes: &[u8]| -> Vec<Any> {
        let mut out = Vec::new();
        if let Ok(mut reader) = SliceReader::new_with_encoding_rules(bytes, EncodingRules::Ber) {
            while !der::Reader::is_finished(&reader) {
                match Any::decode(&mut reader) {
                    Ok(element) => out.push(element),
                    Err(_) => break,
                }
            }
        }
        out
    };
    elements(enveloped.value())
        .iter()
        .find(|e| e.tag() == Tag::Sequence)
        .map(|info| {
            elements(info.value())
                .iter()
                .any(|e| matches!(e.tag(), Tag::ContextSpecific { number, constructed: true } if number.value() == 0))
        })
        .unwrap_or(false)
}

fn string_value(value: &Any) -> Option<String> {
    match value.tag() {
        Tag::PrintableString | Tag::Utf8String | Tag::Ia5String | Tag::TeletexString | Tag::VisibleString => {
            Some(String::from_utf8_lossy(value.value()).into_owned())
        }
        _ => None,
    }
}

fn first_value<'a>(attrs: &'a [Attribute], oid: &ObjectIdentifier) -> Option<&'a Any> {
    attrs
        .iter()
        .find(|a| a.oid == *oid)
        .and_then(|a| a.values.iter().next())
}

/// Parses a PKIMessage (DER, or BER as streaming clients send it): the SignedData, its one
/// SignerInfo and the SCEP signed attributes. Fails with [`ScepError::Malformed`] when no
/// reply could be addressed (no transactionID, messageType or senderNonce); every other
/// problem is left to [`PkiMessage::verify`] and the handlers, which answer with a CertRep.
pub fn parse_pki_message(der: &[u8]) -> Result<PkiMessage, ScepError> {
    if der.len() > crate::codec::MAX_MESSAGE_LEN {
        return Err(ScepError::BodyTooLarge);
    }
    let (info, ber) = decode_content_info(der)?;
    if info.content_type != rfc5911::ID_SIGNED_DATA {
        return Err(ScepError::Malformed("not a SignedData"));
    }
    let (signed, signed_ber): (SignedData, bool) = if ber {
        info.content
            .decode_as_encoding(EncodingRules::Ber)
            .map(|v| (v, true))
            .map_err(|_| ScepError::Malformed("SignedData does not decode"))?
    } else {
        decode_lenient(&info.content).ok_or(ScepError::Malformed("SignedData does not decode"))?
    };
    let ber = ber || signed_ber;
    let content = match &signed.encap_content_info.econtent {
        Some(any) => octets(any, ber)?,
        None => Vec::new(),
    };
    let certificates: Vec<Certificate> = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .take(MAX_ITEMS)
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(cert) => Some(cert.clone()),
            CertificateChoices::Other(_) => None,
        })
        .collect();
    let signer = signed
        .signer_infos
        .0
        .iter()
        .next()
        .ok_or(ScepError::Malformed("the SignedData has no signer"))?;
    let attrs_set = signer
        .signed_attrs
        .as_ref()
        .ok_or(ScepError::Malformed("the signer has no signed attributes"))?;
    let attrs: Vec<Attribute> = attrs_set.iter().cloned().collect();
    let text = |oid| first_value(&attrs, &oid).and_then(string_value);
    let bytes = |oid| {
        first_value(&attrs, &oid)
            .and_then(|v| v.decode_as::<OctetString>().ok())
            .map(|o| o.as_bytes().to_vec())
    };
    let message_type = text(oids::MESSAGE_TYPE)
        .and_then(|t| t.trim().parse::<u32>().ok())
        .map(MessageType::from_code)
        .ok_or(ScepError::Malformed("no messageType attribute"))?;
    let transaction_id_value = first_value(&attrs, &oids::TRANSACTION_ID)
        .cloned()
        .ok_or(ScepError::Malformed("no transactionID attribute"))?;
    let transaction_id =
        string_value(&transaction_id_value).ok_or(ScepError::Malformed("the transactionID is not a string"))?;
    if transaction_id.is_empty() || transaction_id.len() > 256 {
        return Err(ScepError::Malformed("the transactionID is empty or too long"));
    }
    let sender_nonce = bytes(oids::SENDER_NONCE).ok_or(ScepError::Malformed("no senderNonce attribute"))?;
    let pki_status = text(oids::PKI_STATUS).and_then(|s| PkiStatus::from_code(s.trim()));
    let fail_info = text(oids::FAIL_INFO).and_then(|s| FailInfo::from_code(s.trim()));
    let fail_info_text = text(oids::FAIL_INFO_TEXT);
    let message_digest = bytes(rfc5911::ID_MESSAGE_DIGEST);
    let signing_time = first_value(&attrs, &rfc5911::ID_SIGNING_TIME).cloned();
    let signer_certificate = certificates
        .iter()
        .find(|cert| signer_matches(&signer.sid, cert))
        .and_then(|cert| cert.to_der().ok());
    Ok(PkiMessage {
        message_type,
        transaction_id,
        transaction_id_value,
        sender_nonce,
        recipient_nonce: bytes(oids::RECIPIENT_NONCE),
        pki_status,
        fail_info,
        fail_info_text,
        digest: DigestAlg::from_oid(&signer.digest_alg.oid),
        signer_certificate,
        certificates: certificates.iter().filter_map(|c| c.to_der().ok()).collect(),
        content,
        signature_algorithm: signer.signature_algorithm.oid,
        signed_attrs_der: attrs_set
            .to_der()
            .map_err(|_| ScepError::Malformed("signed attributes"))?,
        signature: signer.signature.as_bytes().to_vec(),
        message_digest,
        signing_time,
    })
}

fn subject_key_id(cert: &Certificate) -> Option<Vec<u8>> {
    cert.tbs_certificate()
        .get_extension::<SubjectKeyIdentifier>()
        .ok()
        .flatten()
        .map(|(_, ski)| ski.0.as_bytes().to_vec())
}

fn issuer_and_serial_matches(isn: &IssuerAndSerialNumber, cert: &Certificate) -> bool {
    let tbs = cert.tbs_certificate();
    isn.serial_number == *tbs.serial_number() && isn.issuer == *tbs.issuer()
}

fn signer_matches(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(isn) => issuer_and_serial_matches(isn, cert),
        SignerIdentifier::SubjectKeyIdentifier(ski) => subject_key_id(cert).as_deref() == Some(ski.0.as_bytes()),
    }
}

impl PkiMessage {
    /// The signingTime signed attribute (RFC 5652 11.3, UTCTime or GeneralizedTime), if the
    /// message carries one: FAILURE badTime when it is neither. Only meaningful once
    /// [`PkiMessage::verify`] succeeded (an unsigned time is not evidence).
    pub fn signing_time(&self) -> Result<Option<OffsetDateTime>, ScepError> {
        let Some(value) = &self.signing_time else {
            return Ok(None);
        };
        let bad = || {
            ScepError::failure(
                FailInfo::BadTime,
                "the signingTime attribute is not a valid UTCTime or GeneralizedTime",
            )
        };
        let since_epoch = match value.tag() {
            Tag::UtcTime => value.decode_as::<UtcTime>().map_err(|_| bad())?.to_unix_duration(),
            Tag::GeneralizedTime => value
                .decode_as::<GeneralizedTime>()
                .map_err(|_| bad())?
                .to_unix_duration(),
            _ => return Err(bad()),
        };
        let seconds = i64::try_from(since_epoch.as_secs()).map_err(|_| bad())?;
        OffsetDateTime::from_unix_timestamp(seconds)
            .map(Some)
            .map_err(|_| bad())
    }

    /// Checks the signature over the signed attributes and the messageDigest, with the
    /// signer certificate's RSA key. SHA-1 only when `allow_sha1`. Returns the digest.
    pub fn verify(&self, allow_sha1: bool) -> Result<DigestAlg, ScepError> {
        let digest = self
            .digest
            .ok_or_else(|| ScepError::failure(FailInfo::BadAlg, "unsupported digest algorithm"))?;
        if digest == DigestAlg::Sha1 && !allow_sha1 {
            return Err(ScepError::failure(
                FailInfo::BadAlg,
                "SHA-1 is not accepted by this endpoint",
            ));
        }
        let signer = self.signer_certificate.as_deref().ok_or_else(|| {
            ScepError::failure(
                FailInfo::BadMessageCheck,
                "the message does not carry its signer's certificate",
            )
        })?;
        let cert = Certificate::from_der(signer)
            .map_err(|_| ScepError::failure(FailInfo::BadMessageCheck, "the signer certificate does not parse"))?;
        let spki = cert.tbs_certificate().subject_public_key_info();
        if spki.algorithm.oid != OID_RSA_ENCRYPTION {
            return Err(ScepError::failure(
                FailInfo::BadAlg,
                "the signer certificate must hold an RSA key",
            ));
        }
        if !crypto::rsa_signature_matches(&self.signature_algorithm, digest) {
            return Err(ScepError::failure(FailInfo::BadAlg, "unsupported signature algorithm"));
        }
        let bad = || ScepError::failure(FailInfo::BadMessageCheck, "the message signature does not verify");
        let expected = self.message_digest.as_deref().ok_or_else(bad)?;
        if digest.digest(&self.content) != expected {
            return Err(bad());
        }
        aws_lc_rs::signature::UnparsedPublicKey::new(digest.rsa_verification(), spki.subject_public_key.raw_bytes())
            .verify(&self.signed_attrs_der, &self.signature)
            .map_err(|_| bad())?;
        Ok(digest)
    }
}

/// An EnvelopedData addressed to the RA, parsed but not yet decrypted.
#[derive(Debug, Clone)]
pub struct SealedContent {
    /// The content-encryption algorithm.
    pub cipher: ContentCipher,
    /// How the content key was wrapped.
    pub transport: KeyTransport,
    wrapped_key: Vec<u8>,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// Parses the ContentInfo(EnvelopedData) of a request and picks the recipient that is the RA
/// certificate `ra_cert` (or the only key-transport recipient). Unsupported algorithms are
/// FAILURE badAlg; anything else FAILURE badMessageCheck.
pub fn parse_envelope(content: &[u8], ra_cert: &[u8]) -> Result<SealedContent, ScepError> {
    let bad = |text: &str| ScepError::failure(FailInfo::BadMessageCheck, text);
    let (info, ber) = decode_content_info(content).map_err(|_| bad("the message content is not a ContentInfo"))?;
    if info.content_type != rfc5911::ID_ENVELOPED_DATA {
        return Err(bad("the message content is not an EnvelopedData"));
    }
    // DER; else the same with a constructed encryptedContent made primitive (micromdm's
    // scepclient); else BER (indefinite lengths), where chunks come back as TLVs to join.
    let (env, join): (EnvelopedData, bool) = match info.content.decode_as::<EnvelopedData>() {
        Ok(env) if !ber => (env, false),
        _ => {
            let rewritten = match info.content.to_der() {
                Ok(der) => primitive_encrypted_content(&der),
                Err(_) => Err(ChunkError::Shape),
            };
            match rewritten.map(|der| EnvelopedData::from_der(&der)) {
                Ok(Ok(env)) => (env, false),
                Err(ChunkError::TooDeep) => return Err(bad("the encrypted content is nested too deeply")),
                Ok(Err(_)) | Err(ChunkError::Shape) => (
                    info.content
                        .decode_as_encoding(EncodingRules::Ber)
                        .map_err(|_| bad("the EnvelopedData does not decode"))?,
                    encrypted_content_constructed(&info.content),
                ),
            }
        }
    };
    let ra = Certificate::from_der(ra_cert).map_err(|_| ScepError::Internal("the RA certificate does not parse"))?;
    let ra_ski = subject_key_id(&ra);
    let ktris: Vec<&KeyTransRecipientInfo> = env
        .recip_infos
        .0
        .iter()
        .filter_map(|ri| match ri {
            RecipientInfo::Ktri(ktri) => Some(ktri),
            _ => None,
        })
        .collect();
    let ours = ktris.iter().find(|k| match &k.rid {
        RecipientIdentifier::IssuerAndSerialNumber(isn) => issuer_and_serial_matches(isn, &ra),
        RecipientIdentifier::SubjectKeyIdentifier(ski) => ra_ski.as_deref() == Some(ski.0.as_bytes()),
    });
    let ktri = match (ours, ktris.as_slice()) {
        (Some(k), _) => *k,
        (None, [only]) => *only,
        _ => return Err(bad("the message is not encrypted to this server's RA certificate")),
    };
    let transport = crypto::key_transport_from(&ktri.key_enc_alg)
        .ok_or_else(|| ScepError::failure(FailInfo::BadAlg, "unsupported key transport algorithm"))?;
    let eci = &env.encrypted_content;
    let cipher = ContentCipher::from_oid(&eci.content_enc_alg.oid)
        .ok_or_else(|| ScepError::failure(FailInfo::BadAlg, "unsupported content encryption algorithm"))?;
    let iv: OctetString = eci
        .content_enc_alg
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as().ok())
        .ok_or_else(|| bad("the content encryption algorithm has no IV"))?;
    let ciphertext = eci
        .encrypted_content
        .as_ref()
        .ok_or_else(|| bad("the EnvelopedData has no encrypted content"))?;
    let ciphertext = if join {
        join_chunks(ciphertext.as_bytes()).ok_or_else(|| bad("the encrypted content is not a chunked OCTET STRING"))?
    } else {
        ciphertext.as_bytes().to_vec()
    };
    Ok(SealedContent {
        cipher,
        transport,
        wrapped_key: ktri.enc_key.as_bytes().to_vec(),
        iv: iv.as_bytes().to_vec(),
        ciphertext,
    })
}

impl SealedContent {
    /// Decrypts with the RA key (an RSA private-key operation: call it off the reactor).
    /// Bleichenbacher-safe: a wrong key-transport padding yields a substitute content key
    /// derived from the wrapped key (the same every time, [`RaKey::unwrap_key`]), so every
    /// failure surfaces later, alike, as [`ScepError::undecryptable`]: here when the content
    /// does not unpad, or in [`parse_csr`] and friends when the plaintext does not decode.
    pub fn open(&self, ra: &RaKey) -> Result<Zeroizing<Vec<u8>>, ScepError> {
        let key = ra.unwrap_key(self.transport, &self.wrapped_key, self.cipher.key_len());
        self.open_with_key(&key)
    }

    /// Decrypts with an explicit content key (the test client's side).
    pub fn open_with_key(&self, key: &[u8]) -> Result<Zeroizing<Vec<u8>>, ScepError> {
        self.cipher
            .decrypt(key, &self.iv, &self.ciphertext)
            .map_err(|_| ScepError::undecryptable())
    }

    /// The wrapped content key.
    pub fn wrapped_key(&self) -> &[u8] {
        &self.wrapped_key
    }
}

/// Encrypts `content` into a DER ContentInfo(EnvelopedData) for `recipient_cert` (RSA): a
/// fresh content key of `cipher`, wrapped with `transport`.
pub fn seal(
    content: &[u8],
    recipient_cert: &[u8],
    cipher: ContentCipher,
    transport: KeyTransport,
) -> Result<Vec<u8>, ScepError> {
    let cert = Certificate::from_der(recipient_cert)
        .map_err(|_| ScepError::failure(FailInfo::BadMessageCheck, "the signer certificate does not parse"))?;
    let tbs = cert.tbs_certificate();
    let spki_der = tbs.subject_public_key_info().to_der()?;
    let not_rsa = || ScepError::failure(FailInfo::BadAlg, "the signer certificate must hold an RSA key");
    let public = aws_lc_rs::rsa::PublicEncryptingKey::from_der(&spki_der).map_err(|_| not_rsa())?;
    let key = Zeroizing::new(crypto::random_bytes(cipher.key_len())?);
    let iv = crypto::random_bytes(cipher.block_len())?;
    let ciphertext = cipher
        .encrypt(&key, &iv, content)
        .map_err(|_| ScepError::Internal("content encryption failed"))?;
    let mut wrapped = vec![0u8; public.key_size_bytes()];
    let wrapped_len = match transport {
        KeyTransport::Pkcs1v15 => aws_lc_rs::rsa::Pkcs1PublicEncryptingKey::new(public)
            .and_then(|k| k.encrypt(&key, &mut wrapped).map(|c| c.len())),
        KeyTransport::Oaep(digest) => {
            let alg = match digest {
                RaDigest::Sha1 => &aws_lc_rs::rsa::OAEP_SHA1_MGF1SHA1,
                RaDigest::Sha256 => &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
                RaDigest::Sha384 => &aws_lc_rs::rsa::OAEP_SHA384_MGF1SHA384,
                RaDigest::Sha512 => &aws_lc_rs::rsa::OAEP_SHA512_MGF1SHA512,
            };
            aws_lc_rs::rsa::OaepPublicEncryptingKey::new(public)
                .and_then(|k| k.encrypt(alg, &key, &mut wrapped, None).map(|c| c.len()))
        }
    }
    .map_err(|_| not_rsa())?;
    wrapped.truncate(wrapped_len);
    let ktri = KeyTransRecipientInfo {
        version: CmsVersion::V0,
        rid: RecipientIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer().clone(),
            serial_number: tbs.serial_number().clone(),
        }),
        key_enc_alg: crypto::key_transport_identifier(transport)?,
        enc_key: OctetString::new(wrapped)?,
    };
    let env = EnvelopedData {
        version: CmsVersion::V0,
        originator_info: None,
        recip_infos: RecipientInfos::try_from(vec![RecipientInfo::Ktri(ktri)])?,
        encrypted_content: EncryptedContentInfo {
            content_type: ID_DATA,
            content_enc_alg: cipher.algorithm_identifier(&iv)?,
            encrypted_content: Some(OctetString::new(ciphertext)?),
        },
        unprotected_attrs: None,
    };
    Ok(ContentInfo {
        content_type: rfc5911::ID_ENVELOPED_DATA,
        content: Any::encode_from(&env)?,
    }
    .to_der()?)
}

/// A degenerate certificates-only SignedData (RFC 8894 3.4), DER: `certificates` in order,
/// and `crls`.
pub fn degenerate(certificates: &[&[u8]], crls: &[&[u8]]) -> Result<Vec<u8>, ScepError> {
    let mut certs = Vec::with_capacity(certificates.len());
    for der in certificates {
        certs.push(CertificateChoices::Certificate(Certificate::from_der(der)?));
    }
    let mut revocations = Vec::with_capacity(crls.len());
    for der in crls {
        revocations.push(RevocationInfoChoice::Crl(CertificateList::from_der(der)?));
    }
    // SetOfVec sorts; a SET OF is unordered on the wire anyway, but some clients take the
    // first certificate as the RA: keep the given order by building the SET by hand.
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::default(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(SetOfVec::default())),
        crls: Some(RevocationInfoChoices(SetOfVec::try_from(revocations)?)),
        signer_infos: SignerInfos(SetOfVec::default()),
    };
    let mut der = ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed)?,
    }
    .to_der()?;
    let ordered: Vec<u8> = certs
        .iter()
        .map(|c| c.to_der())
        .collect::<Result<Vec<_>, _>>()?
        .concat();
    der = insert_certificates(&der, &ordered)?;
    Ok(der)
}

/// Replaces the empty `certificates [0]` of an encoded degenerate SignedData with `certs`
/// (concatenated DER certificates) in the given order, fixing up the enclosing lengths.
fn insert_certificates(content_info: &[u8], certs: &[u8]) -> Result<Vec<u8>, ScepError> {
    let info = ContentInfo::from_der(content_info)?;
    let signed: SignedData = info.content.decode_as()?;
    let mut fields = Vec::new();
    fields.extend(signed.version.to_der()?);
    fields.extend(signed.digest_algorithms.to_der()?);
    fields.extend(signed.encap_content_info.to_der()?);
    fields.extend(tlv(0xA0, certs)?);
    if let Some(crls) = &signed.crls {
        let body = crls
            .0
            .iter()
            .map(|c| c.to_der())
            .collect::<Result<Vec<_>, _>>()?
            .concat();
        fields.extend(tlv(0xA1, &body)?);
    }
    fields.extend(signed.signer_infos.0.to_der()?);
    let signed_der = tlv(0x30, &fields)?;
    let mut outer = info.content_type.to_der()?;
    outer.extend(tlv(0xA0, &signed_der)?);
    tlv(0x30, &outer)
}

fn tlv(tag: u8, body: &[u8]) -> Result<Vec<u8>, ScepError> {
    let len = der::Length::try_from(body.len())?;
    let mut out = vec![tag];
    out.extend(len.to_der()?);
    out.extend_from_slice(body);
    Ok(out)
}

/// The SCEP attributes of a reply or request.
#[derive(Debug, Clone)]
pub struct ScepAttributes {
    /// messageType.
    pub message_type: MessageType,
    /// transactionID (a string value, echoed as received in replies).
    pub transaction_id: Any,
    /// senderNonce.
    pub sender_nonce: Vec<u8>,
    /// recipientNonce (replies).
    pub recipient_nonce: Option<Vec<u8>>,
    /// pkiStatus (replies).
    pub pki_status: Option<PkiStatus>,
    /// failInfo and failInfoText (FAILURE replies).
    pub fail: Option<(FailInfo, String)>,
}

impl ScepAttributes {
    fn to_attributes(&self) -> Result<Vec<Attribute>, ScepError> {
        let printable = |s: &str| -> Result<Any, ScepError> { Ok(Any::encode_from(&PrintableString::new(s)?)?) };
        let octets = |b: &[u8]| -> Result<Any, ScepError> { Ok(Any::encode_from(&OctetString::new(b)?)?) };
        let mut attrs = vec![
            attribute(oids::MESSAGE_TYPE, printable(&self.message_type.code().to_string())?)?,
            attribute(oids::TRANSACTION_ID, self.transaction_id.clone())?,
            attribute(oids::SENDER_NONCE, octets(&self.sender_nonce)?)?,
        ];
        if let Some(nonce) = &self.recipient_nonce {
            attrs.push(attribute(oids::RECIPIENT_NONCE, octets(nonce)?)?);
        }
        if let Some(status) = self.pki_status {
            attrs.push(attribute(oids::PKI_STATUS, printable(status.code())?)?);
        }
        if let Some((info, text)) = &self.fail {
            attrs.push(attribute(oids::FAIL_INFO, printable(info.code())?)?);
            attrs.push(attribute(
                oids::FAIL_INFO_TEXT,
                Any::encode_from(&Utf8StringRef::new(text)?)?,
            )?);
        }
        Ok(attrs)
    }
}

/// A transactionID value (PrintableString when it fits, UTF8String otherwise).
pub fn transaction_id_value(id: &str) -> Result<Any, ScepError> {
    match PrintableString::new(id) {
        Ok(p) => Ok(Any::encode_from(&p)?),
        Err(_) => Ok(Any::encode_from(&Utf8StringRef::new(id)?)?),
    }
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, ScepError> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value])?,
    })
}

/// The parts of a signed PKIMessage before its signature.
#[derive(Debug)]
pub struct ToBeSigned {
    /// The DER signed attributes (SET OF, universal tag): what the signature covers.
    pub signed_attrs_der: Vec<u8>,
    attrs: SetOfVec<Attribute>,
    content: Option<Vec<u8>>,
    digest: DigestAlg,
    signer_cert: Certificate,
}

/// A signingTime attribute value as RFC 5652 11.3 wants it: UTCTime for 1950 to 2049,
/// GeneralizedTime otherwise (whole seconds).
pub fn signing_time_value(at: OffsetDateTime) -> Result<Any, ScepError> {
    let seconds = u64::try_from(at.unix_timestamp()).map_err(|_| ScepError::Internal("time before 1970"))?;
    let since_epoch = StdDuration::from_secs(seconds);
    if at.year() < 2050 {
        Ok(Any::encode_from(&UtcTime::from_unix_duration(since_epoch)?)?)
    } else {
        Ok(Any::encode_from(&GeneralizedTime::from_unix_duration(since_epoch)?)?)
    }
}

/// Prepares a SignedData over `content` (an eContent of type id-data; `None` leaves it out)
/// with contentType, signingTime (`now`), messageDigest and the SCEP attributes, signed with
/// `digest` by the holder of `signer_cert`. Finish with [`ToBeSigned::finish`].
pub fn to_be_signed(
    content: Option<Vec<u8>>,
    scep: Option<&ScepAttributes>,
    digest: DigestAlg,
    signer_cert: &[u8],
    now: OffsetDateTime,
) -> Result<ToBeSigned, ScepError> {
    to_be_signed_with(content, scep, digest, signer_cert, Some(signing_time_value(now)?))
}

/// [`to_be_signed`] with the signingTime attribute's value given (see
/// [`signing_time_value`]), or left out with `None`.
pub fn to_be_signed_with(
    content: Option<Vec<u8>>,
    scep: Option<&ScepAttributes>,
    digest: DigestAlg,
    signer_cert: &[u8],
    signing_time: Option<Any>,
) -> Result<ToBeSigned, ScepError> {
    let signer_cert = Certificate::from_der(signer_cert)?;
    let mut attrs = vec![attribute(rfc5911::ID_CONTENT_TYPE, Any::encode_from(&ID_DATA)?)?];
    if let Some(signing_time) = signing_time {
        attrs.push(attribute(rfc5911::ID_SIGNING_TIME, signing_time)?);
    }
    attrs.push(attribute(
        rfc5911::ID_MESSAGE_DIGEST,
        Any::encode_from(&OctetString::new(
            digest.digest(content.as_deref().unwrap_or_default()),
        )?)?,
    )?);
    if let Some(scep) = scep {
        attrs.extend(scep.to_attributes()?);
    }
    let attrs = SetOfVec::try_from(attrs)?;
    Ok(ToBeSigned {
        signed_attrs_der: attrs.to_der()?,
        attrs,
        content,
        digest,
        signer_cert,
    })
}

impl ToBeSigned {
    /// The signed PKIMessage (DER ContentInfo) with `signature` over
    /// [`ToBeSigned::signed_attrs_der`], labelled `rsaEncryption` as OpenSSL does.
    pub fn finish(self, signature: Vec<u8>) -> Result<Vec<u8>, ScepError> {
        let tbs = self.signer_cert.tbs_certificate();
        let signer = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: tbs.issuer().clone(),
                serial_number: tbs.serial_number().clone(),
            }),
            digest_alg: self.digest.algorithm_identifier(),
            signed_attrs: Some(self.attrs),
            signature_algorithm: x509_cert::spki::AlgorithmIdentifierOwned {
                oid: OID_RSA_ENCRYPTION,
                parameters: Some(Any::encode_from(&der::asn1::Null)?),
            },
            signature: OctetString::new(signature)?,
            unsigned_attrs: None,
        };
        let econtent = match self.content {
            Some(content) => Some(Any::encode_from(&OctetString::new(content)?)?),
            None => None,
        };
        let signed = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: SetOfVec::try_from(vec![self.digest.algorithm_identifier()])?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_DATA,
                econtent,
            },
            certificates: Some(CertificateSet(SetOfVec::try_from(vec![
                CertificateChoices::Certificate(self.signer_cert),
            ])?)),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer])?),
        };
        Ok(ContentInfo {
            content_type: rfc5911::ID_SIGNED_DATA,
            content: Any::encode_from(&signed)?,
        }
        .to_der()?)
    }
}

/// GetCertInitial / CertPoll content: `IssuerAndSubject ::= SEQUENCE { issuer Name, subject Name }`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct IssuerAndSubject {
    /// The CA's name.
    pub issuer: X509Name,
    /// The requested subject.
    pub subject: X509Name,
}

/// Parses the decrypted content of a PKCSReq or RenewalReq (a PKCS#10 request). Content that
/// does not decode is [`ScepError::undecryptable`], like a failed decryption: garbage looks
/// the same whether the key or the client was wrong. A request that decodes but is refused
/// (signature, key, names) is the client's own mistake and says so.
pub fn parse_csr(der: &[u8]) -> Result<ParsedCsr, ScepError> {
    ParsedCsr::from_der(der).map_err(|e| match e {
        CsrError::Malformed(_) | CsrError::TooLarge => ScepError::undecryptable(),
        other => ScepError::Csr(other),
    })
}

/// Parses the decrypted content of a GetCert or GetCRL (IssuerAndSerialNumber); content that
/// does not decode is [`ScepError::undecryptable`].
pub fn parse_issuer_and_serial(der: &[u8]) -> Result<IssuerAndSerialNumber, ScepError> {
    IssuerAndSerialNumber::from_der(der).map_err(|_| ScepError::undecryptable())
}

/// Parses the decrypted content of a CertPoll (IssuerAndSubject); content that does not
/// decode is [`ScepError::undecryptable`].
pub fn parse_issuer_and_subject(der: &[u8]) -> Result<IssuerAndSubject, ScepError> {
    IssuerAndSubject::from_der(der).map_err(|_| ScepError::undecryptable())
}

/// The certificates of a degenerate certs-only SignedData (DER), in order.
pub fn certificates_of(degenerate_der: &[u8]) -> Result<Vec<Vec<u8>>, ScepError> {
    let (info, ber) = decode_content_info(degenerate_der)?;
    let (signed, _): (SignedData, bool) = if ber {
        info.content
            .decode_as_encoding(EncodingRules::Ber)
            .map(|v| (v, true))
            .map_err(|_| ScepError::Malformed("SignedData does not decode"))?
    } else {
        decode_lenient(&info.content).ok_or(ScepError::Malformed("SignedData does not decode"))?
    };
    Ok(signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(cert) => cert.to_der().ok(),
            CertificateChoices::Other(_) => None,
        })
        .collect())
}

/// The CRLs of a degenerate SignedData (DER).
pub fn crls_of(degenerate_der: &[u8]) -> Result<Vec<Vec<u8>>, ScepError> {
    let info = ContentInfo::from_der(degenerate_der)?;
    let signed: SignedData = info.content.decode_as()?;
    Ok(signed
        .crls
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|choice| match choice {
            RevocationInfoChoice::Crl(crl) => crl.to_der().ok(),
            RevocationInfoChoice::Other(_) => None,
        })
        .collect())
}

/// Fuzzing entry point, not API: runs `data` through [`parse_envelope`] (with `ra_cert` as
/// the RA) and through each lenient and BER fallback decoder of this module on its own,
/// without a signature in the way: the DER-then-BER ContentInfo, SignedData and
/// EnvelopedData decoders, the eContent octets, the constructed-encryptedContent rewrite and
/// both chunk joiners. Panics only when one of their invariants breaks.
#[doc(hidden)]
pub fn fuzz_envelope(data: &[u8], ra_cert: &[u8]) {
    let _ = parse_envelope(data, ra_cert);
    let _ = decode_content_info(data);
    let mut joined = Vec::new();
    if join_octet_chunks(data, &mut joined).is_ok() {
        assert!(
            joined.len() <= data.len(),
            "chunks joined into more bytes than they came in"
        );
    }
    if let Some(joined) = join_chunks(data) {
        assert!(
            joined.len() <= data.len(),
            "chunks joined into more bytes than they came in"
        );
    }
    if let Ok(rewritten) = primitive_encrypted_content(data) {
        assert!(
            matches!(read_tlv(&rewritten), Some((0x30, _, []))),
            "the rewrite is not one SEQUENCE"
        );
        let _ = EnvelopedData::from_der(&rewritten);
    }
    for rules in [EncodingRules::Der, EncodingRules::Ber] {
        let Ok(mut reader) = SliceReader::new_with_encoding_rules(data, rules) else {
            continue;
        };
        let Ok(any) = Any::decode(&mut reader) else {
            continue;
        };
        let _ = encrypted_content_constructed(&any);
        let _ = octets(&any, rules == EncodingRules::Ber);
        let _ = decode_lenient::<SignedData>(&any);
        let _ = decode_lenient::<EnvelopedData>(&any);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    /// Depth of the hostile inputs: nests ~40,000 levels in under 200 KB, which overflowed
    /// the 2 MiB stack of a worker thread when a decoder recursed once per level.
    const HOSTILE_DEPTH: usize = 40_000;

    /// A tokio worker's (and spawn_blocking thread's) stack size: the tests run the decoders
    /// on a thread with no more stack than the daemon gives them.
    const WORKER_STACK: usize = 2 * 1024 * 1024;

    /// An RA (key and self-signed certificate) and a self-signed client, both RSA-2048,
    /// made once for every test.
    struct Fixture {
        ra: RaKey,
        client: aws_lc_rs::signature::RsaKeyPair,
        client_cert: Vec<u8>,
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let identity = |cn: &str| {
                let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
                let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
                params.distinguished_name.push(rcgen::DnType::CommonName, cn);
                let cert = params.self_signed(&key).unwrap().der().to_vec();
                (key, cert)
            };
            let (ra_key, ra_cert) = identity("test RA");
            let (client_key, client_cert) = identity("any self-signed client");
            Fixture {
                ra: RaKey::from_parts(&ra_key, ra_cert).unwrap(),
                client: aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&client_key.serialize_der()).unwrap(),
                client_cert,
            }
        })
    }

    /// Runs `f` on a thread with a worker's stack: a decoder that recurses per level of
    /// input aborts the whole test binary here, as it aborted the daemon.
    fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    /// A DER header: `tag` and the definite length `len`.
    fn header(tag: u8, len: usize) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend(der::Length::try_from(len).unwrap().to_der().unwrap());
        out
    }

    /// `depth` constructed TLVs of `tag` with definite lengths around `innermost`, built
    /// inside out in one pass (re-wrapping a buffer per level would be quadratic).
    fn nest_definite(tag: u8, depth: usize, innermost: &[u8]) -> Vec<u8> {
        let mut headers = Vec::with_capacity(depth);
        let mut len = innermost.len();
        for _ in 0..depth {
            let h = header(tag, len);
            len += h.len();
            headers.push(h);
        }
        let mut out: Vec<u8> = headers.into_iter().rev().flatten().collect();
        out.extend_from_slice(innermost);
        out
    }

    /// `depth` constructed TLVs of `tag` with indefinite lengths around `innermost`.
    fn nest_indefinite(tag: u8, depth: usize, innermost: &[u8]) -> Vec<u8> {
        let mut out = [tag, 0x80].repeat(depth);
        out.extend_from_slice(innermost);
        out.extend([0u8, 0].repeat(depth));
        out
    }

    /// `plaintext` sealed (AES-256, PKCS#1 v1.5) to the fixture's RA.
    fn sealed(plaintext: &[u8]) -> Vec<u8> {
        seal(
            plaintext,
            fixture().ra.certificate_der(),
            ContentCipher::Aes256,
            KeyTransport::Pkcs1v15,
        )
        .unwrap()
    }

    /// `plaintext` sealed to the fixture's RA, re-encoded with `encrypted_content(ciphertext)`
    /// as the encryptedContent TLV (the `[0]`, whatever form the closure gives it).
    fn sealed_with(plaintext: &[u8], encrypted_content: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let info = ContentInfo::from_der(&sealed(plaintext)).unwrap();
        let env: EnvelopedData = info.content.decode_as().unwrap();
        let eci = &env.encrypted_content;
        let ciphertext = eci.encrypted_content.as_ref().unwrap().as_bytes();
        let mut eci_body = eci.content_type.to_der().unwrap();
        eci_body.extend(eci.content_enc_alg.to_der().unwrap());
        eci_body.extend(encrypted_content(ciphertext));
        let mut env_body = env.version.to_der().unwrap();
        env_body.extend(env.recip_infos.to_der().unwrap());
        env_body.extend(tlv(0x30, &eci_body).unwrap());
        let mut info_body = rfc5911::ID_ENVELOPED_DATA.to_der().unwrap();
        info_body.extend(tlv(0xa0, &tlv(0x30, &env_body).unwrap()).unwrap());
        tlv(0x30, &info_body).unwrap()
    }

    /// The ciphertext as a constructed `[0]` of one chunk inside `depth` constructed OCTET
    /// STRINGs (`depth` 0 is the form go.mozilla.org/pkcs7 writes).
    fn chunked(depth: usize) -> impl FnOnce(&[u8]) -> Vec<u8> {
        move |ciphertext| {
            let chunks = nest_definite(0x24, depth, &tlv(0x04, ciphertext).unwrap());
            let mut out = header(0xa0, chunks.len());
            out.extend(chunks);
            out
        }
    }

    /// A PKIOperation (PKCSReq) carrying `content`, properly signed by the fixture's
    /// self-signed client: everything the server checks before opening the envelope passes.
    fn signed_pki_operation(content: Vec<u8>) -> Vec<u8> {
        let f = fixture();
        let attributes = ScepAttributes {
            message_type: MessageType::PkcsReq,
            transaction_id: transaction_id_value("deep").unwrap(),
            sender_nonce: vec![7; 16],
            recipient_nonce: None,
            pki_status: None,
            fail: None,
        };
        let tbs = to_be_signed(
            Some(content),
            Some(&attributes),
            DigestAlg::Sha256,
            &f.client_cert,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let mut signature = vec![0u8; f.client.public_modulus_len()];
        f.client
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                &tbs.signed_attrs_der,
                &mut signature,
            )
            .unwrap();
        tbs.finish(signature).unwrap()
    }

    fn is_bad_message_check(result: &Result<SealedContent, ScepError>) -> bool {
        matches!(
            result,
            Err(ScepError::Failure {
                info: FailInfo::BadMessageCheck,
                ..
            })
        )
    }

    #[test]
    fn bad_deeply_nested_encrypted_content_is_refused() {
        let message = signed_pki_operation(sealed_with(b"a CSR", chunked(HOSTILE_DEPTH)));
        assert!(
            (150_000..crate::codec::MAX_MESSAGE_LEN).contains(&message.len()),
            "under the size limit: {} bytes",
            message.len()
        );
        let result = on_worker_stack(move || {
            let parsed = parse_pki_message(&message).unwrap();
            // The signature is good: nothing stops the message before the envelope.
            parsed.verify(false).unwrap();
            parse_envelope(&parsed.content, fixture().ra.certificate_der())
        });
        match result {
            Err(ScepError::Failure { info, text }) => {
                assert_eq!(info, FailInfo::BadMessageCheck);
                assert_eq!(text, "the encrypted content is nested too deeply");
            }
            other => panic!("want FAILURE badMessageCheck, got {other:?}"),
        }
    }

    #[test]
    fn constructed_encrypted_content_is_joined_up_to_the_nesting_cap() {
        let plaintext = b"what the client encrypted".as_slice();
        let split = |ciphertext: &[u8]| {
            let (a, b) = ciphertext.split_at(ciphertext.len() / 2);
            let mut chunks = tlv(0x04, a).unwrap();
            chunks.extend(tlv(0x24, &tlv(0x04, b).unwrap()).unwrap());
            let mut out = header(0xa0, chunks.len());
            out.extend(chunks);
            out
        };
        // Ok(decrypted) or Err(failInfoText).
        type Case = (&'static str, Vec<u8>, Result<(), &'static str>);
        let cases: Vec<Case> = vec![
            ("good_primitive", sealed(plaintext), Ok(())),
            ("good_constructed_go_pkcs7", sealed_with(plaintext, chunked(0)), Ok(())),
            ("good_split_and_nested_chunks", sealed_with(plaintext, split), Ok(())),
            (
                "good_nested_at_the_cap",
                sealed_with(plaintext, chunked(MAX_CHUNK_NESTING)),
                Ok(()),
            ),
            (
                "bad_nested_past_the_cap",
                sealed_with(plaintext, chunked(MAX_CHUNK_NESTING + 1)),
                Err("the encrypted content is nested too deeply"),
            ),
        ];
        let ra = &fixture().ra;
        for (case, envelope, want) in cases {
            match (parse_envelope(&envelope, ra.certificate_der()), want) {
                (Ok(sealed), Ok(())) => {
                    assert_eq!(sealed.open(ra).unwrap().as_slice(), plaintext, "case {case}");
                }
                (Err(e), Err(text)) => {
                    assert_eq!(
                        e.fail_info(),
                        (FailInfo::BadMessageCheck, text.to_owned()),
                        "case {case}"
                    );
                }
                (got, want) => panic!("case {case}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn bad_deeply_nested_ber_and_der_are_refused() {
        let ra_cert = fixture().ra.certificate_der().to_vec();
        let innermost = [0x04, 0x01, 0x00];
        // An EnvelopedData whose [0] nests indefinite-length chunks (the BER fallback's input).
        let indefinite_chunks = sealed_with(b"x", |_| {
            nest_indefinite(0xa0, 1, &nest_indefinite(0x24, HOSTILE_DEPTH, &innermost))
        });
        let mut signed_data_nest = rfc5911::ID_SIGNED_DATA.to_der().unwrap();
        signed_data_nest.extend(nest_definite(
            0xa0,
            1,
            &nest_definite(0x30, HOSTILE_DEPTH, &[0x05, 0x00]),
        ));
        let signed_data_nest = tlv(0x30, &signed_data_nest).unwrap();
        let mut enveloped_nest = rfc5911::ID_ENVELOPED_DATA.to_der().unwrap();
        enveloped_nest.extend(nest_definite(
            0xa0,
            1,
            &nest_definite(0x30, HOSTILE_DEPTH, &[0x05, 0x00]),
        ));
        let enveloped_nest = tlv(0x30, &enveloped_nest).unwrap();
        // A SignedData whose eContent is a constructed OCTET STRING nested all the way down.
        let mut econtent = rfc5911::ID_DATA.to_der().unwrap();
        let chunks = nest_definite(0x24, HOSTILE_DEPTH, &innermost);
        econtent.extend(header(0xa0, chunks.len()));
        econtent.extend(chunks);
        let mut signed = vec![0x02, 0x01, 0x01, 0x31, 0x00];
        signed.extend(tlv(0x30, &econtent).unwrap());
        signed.extend([0x31, 0x00]);
        let mut chunked_econtent = rfc5911::ID_SIGNED_DATA.to_der().unwrap();
        chunked_econtent.extend(tlv(0xa0, &tlv(0x30, &signed).unwrap()).unwrap());
        let chunked_econtent = tlv(0x30, &chunked_econtent).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "bad_indefinite_sequences",
                nest_indefinite(0x30, HOSTILE_DEPTH, &[0x05, 0x00]),
            ),
            (
                "bad_definite_sequences",
                nest_definite(0x30, HOSTILE_DEPTH, &[0x05, 0x00]),
            ),
            ("bad_indefinite_encrypted_content_chunks", indefinite_chunks),
            ("bad_definite_sequences_in_signed_data", signed_data_nest),
            ("bad_definite_sequences_in_enveloped_data", enveloped_nest),
            ("bad_chunked_econtent", chunked_econtent),
        ];
        for (case, input) in cases {
            assert!(
                input.len() < crate::codec::MAX_MESSAGE_LEN,
                "case {case}: {} bytes",
                input.len()
            );
            let ra_cert = ra_cert.clone();
            let (message, envelope) = on_worker_stack(move || {
                fuzz_envelope(&input, &ra_cert);
                (parse_pki_message(&input), parse_envelope(&input, &ra_cert))
            });
            assert!(
                matches!(message, Err(ScepError::Malformed(_))),
                "case {case}: {message:?}"
            );
            assert!(is_bad_message_check(&envelope), "case {case}: {envelope:?}");
        }
    }

    #[test]
    fn join_octet_chunks_is_iterative_and_capped() {
        let innermost = tlv(0x04, b"abc").unwrap();
        let mut two = tlv(0x04, b"ab").unwrap();
        two.extend(nest_definite(0x24, 2, &tlv(0x04, b"cd").unwrap()));
        type Case = (&'static str, Vec<u8>, Result<&'static [u8], ChunkError>);
        let cases: Vec<Case> = vec![
            ("good_empty", Vec::new(), Ok(b"")),
            ("good_one_chunk", innermost.clone(), Ok(b"abc")),
            ("good_mixed_levels", two, Ok(b"abcd")),
            (
                "good_at_the_cap",
                nest_definite(0x24, MAX_CHUNK_NESTING, &innermost),
                Ok(b"abc"),
            ),
            (
                "bad_past_the_cap",
                nest_definite(0x24, MAX_CHUNK_NESTING + 1, &innermost),
                Err(ChunkError::TooDeep),
            ),
            (
                "bad_hostile_depth",
                nest_definite(0x24, HOSTILE_DEPTH, &innermost),
                Err(ChunkError::TooDeep),
            ),
            ("bad_not_octets", vec![0x02, 0x01, 0x00], Err(ChunkError::Shape)),
            ("bad_truncated", innermost[..4].to_vec(), Err(ChunkError::Shape)),
            (
                "bad_indefinite",
                nest_indefinite(0x24, 1, &innermost),
                Err(ChunkError::Shape),
            ),
        ];
        for (case, input, want) in cases {
            let got = on_worker_stack(move || {
                let mut out = Vec::new();
                join_octet_chunks(&input, &mut out).map(|()| out)
            });
            assert_eq!(got.as_deref().map_err(|e| *e), want, "case {case}");
        }
    }

    #[test]
    fn decryption_failures_are_indistinguishable() {
        let ra = &fixture().ra;
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::new(vec!["device.example".to_owned()])
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .der()
            .to_vec();
        let parse = |der: &[u8]| parse_envelope(der, ra.certificate_der()).unwrap();
        let flip_key = |mut s: SealedContent| {
            let middle = s.wrapped_key.len() / 2;
            s.wrapped_key[middle] ^= 0x01;
            s
        };
        let flip_content = |mut s: SealedContent| {
            if let Some(last) = s.ciphertext.last_mut() {
                *last ^= 0x01;
            }
            s
        };
        let truncate_content = |mut s: SealedContent| {
            s.ciphertext.pop();
            s
        };
        // Each case is one message on the decryption path of a PKCSReq: unwrap, decrypt,
        // decode the CSR; `true` when a CSR should come out.
        let cases: Vec<(&str, SealedContent, bool)> = vec![
            ("good_csr", parse(&sealed(&csr)), true),
            ("bad_key_transport_padding", flip_key(parse(&sealed(&csr))), false),
            ("bad_content_padding", flip_content(parse(&sealed(&csr))), false),
            ("bad_content_length", truncate_content(parse(&sealed(&csr))), false),
            ("bad_csr_after_decryption", parse(&sealed(b"not a CSR")), false),
            ("bad_empty_plaintext", parse(&sealed(b"")), false),
        ];
        let want = ScepError::undecryptable();
        for (case, sealed, good) in cases {
            match sealed.open(ra).and_then(|plain| parse_csr(&plain)) {
                Ok(parsed) => {
                    assert!(good, "case {case}: decrypted to a CSR");
                    assert_eq!(parsed.der(), csr.as_slice(), "case {case}");
                }
                Err(e) => {
                    assert!(!good, "case {case}: {e}");
                    // What the client sees: failInfo and text, HTTP status, meaning.
                    assert_eq!(e.fail_info(), want.fail_info(), "case {case}");
                    assert_eq!(e.status(), want.status(), "case {case}");
                    assert_eq!(e.kind(), want.kind(), "case {case}");
                    // The same bad message always fails the same way, at the same step.
                    let first = sealed.open(ra).map(|plain| plain.to_vec()).ok();
                    let second = sealed.open(ra).map(|plain| plain.to_vec()).ok();
                    assert_eq!(first, second, "case {case}");
                }
            }
        }
        // The other messageTypes' contents, garbage after decryption: the same answer.
        for (case, result) in [
            ("bad_issuer_and_serial", parse_issuer_and_serial(b"garbage").map(|_| ())),
            (
                "bad_issuer_and_subject",
                parse_issuer_and_subject(b"garbage").map(|_| ()),
            ),
        ] {
            assert_eq!(result.unwrap_err().fail_info(), want.fail_info(), "case {case}");
        }
        // A CSR that decodes but is refused is the client's own mistake, not a decryption
        // failure: it may say so.
        let mut bad_signature = csr.clone();
        let last = bad_signature.len() - 1;
        bad_signature[last] ^= 0x01;
        assert!(matches!(
            parse_csr(&bad_signature),
            Err(ScepError::Csr(CsrError::BadSignature))
        ));
    }

    /// A PKIMessage (parsed only, not signed) whose signingTime attribute holds `value`.
    fn message_with_signing_time(value: Option<Any>) -> PkiMessage {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["signer.example".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let attributes = ScepAttributes {
            message_type: MessageType::PkcsReq,
            transaction_id: transaction_id_value("t-1").unwrap(),
            sender_nonce: vec![7; 16],
            recipient_nonce: None,
            pki_status: None,
            fail: None,
        };
        let tbs = to_be_signed_with(
            Some(vec![1, 2, 3]),
            Some(&attributes),
            DigestAlg::Sha256,
            cert.der(),
            value,
        )
        .unwrap();
        parse_pki_message(&tbs.finish(vec![0; 64]).unwrap()).unwrap()
    }

    #[test]
    fn signing_time_attribute() {
        let at = |unix: i64| OffsetDateTime::from_unix_timestamp(unix).unwrap();
        // 2024-01-02T03:04:05Z and 2051-01-01T00:00:00Z.
        let (t2024, t2051) = (1_704_164_645, 2_556_144_000);
        let generalized_2024 =
            Any::encode_from(&GeneralizedTime::from_unix_duration(StdDuration::from_secs(t2024 as u64)).unwrap())
                .unwrap();
        type Case = (&'static str, Option<Any>, Result<Option<OffsetDateTime>, FailInfo>);
        let cases: [Case; 6] = [
            ("good_absent", None, Ok(None)),
            (
                "good_utc_time",
                Some(signing_time_value(at(t2024)).unwrap()),
                Ok(Some(at(t2024))),
            ),
            (
                "good_generalized_time_after_2049",
                Some(signing_time_value(at(t2051)).unwrap()),
                Ok(Some(at(t2051))),
            ),
            (
                "good_generalized_time_before_2050",
                Some(generalized_2024),
                Ok(Some(at(t2024))),
            ),
            (
                "bad_printable_string",
                Some(Any::encode_from(&PrintableString::new("20240102").unwrap()).unwrap()),
                Err(FailInfo::BadTime),
            ),
            (
                "bad_utc_time_garbage",
                Some(Any::new(Tag::UtcTime, b"not-a-time".to_vec()).unwrap()),
                Err(FailInfo::BadTime),
            ),
        ];
        for (case, value, want) in cases {
            let got = message_with_signing_time(value)
                .signing_time()
                .map_err(|e| e.fail_info().0);
            assert_eq!(got, want, "case {case}");
        }
        // RFC 5652 11.3: UTCTime through 2049, GeneralizedTime from 2050.
        assert_eq!(signing_time_value(at(t2024)).unwrap().tag(), Tag::UtcTime);
        assert_eq!(signing_time_value(at(t2051)).unwrap().tag(), Tag::GeneralizedTime);
    }
}
