//! A SCEP client for tests (feature `test-client`; never in production builds): builds
//! PKIMessages with every content cipher, key transport and digest this crate accepts, on
//! the `cms` types, and opens CertReps. Used by this crate's integration tests and meant for
//! the daemon's end-to-end tests.
//!
//! SHA-1 signatures are made by the `openssl` command (aws-lc-rs signs RSA only with SHA-2).

use std::io::Write;
use std::process::{Command, Stdio};

use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512,
    OaepPrivateDecryptingKey, Pkcs1PrivateDecryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::RsaKeyPair;
use base64::Engine;
use certgate_authority::{KeyTransport, RaDigest};
use cms::cert::IssuerAndSerialNumber;
use der::asn1::{GeneralizedTime, PrintableString, SetOfVec, Utf8StringRef};
use der::{Any, Decode, Encode};
use time::OffsetDateTime;
use x509_cert::Certificate;

use crate::crypto::{ContentCipher, DigestAlg};
use crate::message::{self, IssuerAndSubject, MessageType, PkiStatus, ScepAttributes};
use crate::{FailInfo, ScepError};

/// A failure of the test client.
pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// The signingTime signed attribute a PKIMessage carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningTime {
    /// The time the message is built, encoded as RFC 5652 wants (UTCTime until 2049).
    Now,
    /// This time, encoded as RFC 5652 wants (UTCTime for 1950 to 2049, else GeneralizedTime).
    At(OffsetDateTime),
    /// This time as GeneralizedTime whatever the year (as some clients send it).
    Generalized(OffsetDateTime),
    /// No signingTime attribute.
    Absent,
}

impl SigningTime {
    fn value(self) -> Result<Option<Any>, ClientError> {
        Ok(match self {
            Self::Now => Some(message::signing_time_value(OffsetDateTime::now_utc())?),
            Self::At(at) => Some(message::signing_time_value(at)?),
            Self::Generalized(at) => {
                let seconds = u64::try_from(at.unix_timestamp())?;
                let time = GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(seconds))?;
                Some(Any::encode_from(&time)?)
            }
            Self::Absent => None,
        })
    }
}

/// How to build one PKIMessage.
#[derive(Debug, Clone)]
pub struct RequestOptions {
    /// messageType.
    pub message_type: MessageType,
    /// transactionID.
    pub transaction_id: String,
    /// Content encryption.
    pub cipher: ContentCipher,
    /// Key transport to the RA.
    pub transport: KeyTransport,
    /// Signature digest.
    pub digest: DigestAlg,
    /// Flip a bit in the wrapped content key (a Bleichenbacher-style probe).
    pub corrupt_key_transport: bool,
    /// The signingTime attribute (default: the time the message is built).
    pub signing_time: SigningTime,
}

impl RequestOptions {
    /// A PKCSReq with AES-256, PKCS#1 v1.5 and SHA-256, a random transactionID and the
    /// current signingTime.
    pub fn new(message_type: MessageType) -> Self {
        Self {
            message_type,
            transaction_id: random_hex(16),
            cipher: ContentCipher::Aes256,
            transport: KeyTransport::Pkcs1v15,
            digest: DigestAlg::Sha256,
            corrupt_key_transport: false,
            signing_time: SigningTime::Now,
        }
    }
}

/// What a CertRep said.
#[derive(Debug, Clone)]
pub struct CertRepView {
    /// pkiStatus.
    pub status: PkiStatus,
    /// failInfo (FAILURE).
    pub fail_info: Option<FailInfo>,
    /// failInfoText (FAILURE).
    pub fail_info_text: Option<String>,
    /// transactionID.
    pub transaction_id: String,
    /// senderNonce.
    pub sender_nonce: Vec<u8>,
    /// recipientNonce.
    pub recipient_nonce: Option<Vec<u8>>,
    /// The digest the RA signed with.
    pub digest: DigestAlg,
    /// The certificates of the decrypted certs-only content (SUCCESS).
    pub certificates: Vec<Vec<u8>>,
    /// The CRLs of the decrypted content (SUCCESS of GetCRL).
    pub crls: Vec<Vec<u8>>,
    /// The decrypted content, DER (SUCCESS).
    pub content: Vec<u8>,
}

/// A SCEP client: an RSA key and the certificate it signs PKIMessages with (self-signed at
/// first, an issued one for renewals).
pub struct ScepClient {
    key: rcgen::KeyPair,
    signing: RsaKeyPair,
    pkcs1: Pkcs1PrivateDecryptingKey,
    oaep: OaepPrivateDecryptingKey,
    /// The signer certificate (DER).
    pub certificate: Vec<u8>,
}

impl std::fmt::Debug for ScepClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScepClient").finish_non_exhaustive()
    }
}

/// Lower-case hex of `len` random bytes.
pub fn random_hex(len: usize) -> String {
    crate::crypto::random_bytes(len)
        .unwrap_or_default()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ScepClient {
    /// A new RSA-2048 key and a self-signed certificate with CN=`cn`.
    pub fn new(cn: &str) -> Result<Self, ClientError> {
        let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let certificate = params.self_signed(&key)?.der().to_vec();
        Self::from_key(key, certificate)
    }

    /// The same key signing with another certificate (e.g. the one certgate issued for it).
    pub fn with_certificate(&self, certificate: Vec<u8>) -> Result<Self, ClientError> {
        let key = rcgen::KeyPair::try_from(self.key.serialize_der().as_slice())?;
        Self::from_key(key, certificate)
    }

    fn from_key(key: rcgen::KeyPair, certificate: Vec<u8>) -> Result<Self, ClientError> {
        let pkcs8 = key.serialize_der();
        Ok(Self {
            signing: RsaKeyPair::from_pkcs8(&pkcs8)?,
            pkcs1: Pkcs1PrivateDecryptingKey::new(PrivateDecryptingKey::from_pkcs8(&pkcs8)?)?,
            oaep: OaepPrivateDecryptingKey::new(PrivateDecryptingKey::from_pkcs8(&pkcs8)?)?,
            key,
            certificate,
        })
    }

    /// The client's key pair (for CSRs on its own key).
    pub fn key(&self) -> &rcgen::KeyPair {
        &self.key
    }

    /// Encrypts `content` to `ra_certificate` and signs it: a PKIMessage (DER).
    pub fn pki_message(
        &self,
        ra_certificate: &[u8],
        content: &[u8],
        options: &RequestOptions,
    ) -> Result<Vec<u8>, ClientError> {
        let mut enveloped = message::seal(content, ra_certificate, options.cipher, options.transport)?;
        if options.corrupt_key_transport {
            corrupt_wrapped_key(&mut enveloped)?;
        }
        let attributes = ScepAttributes {
            message_type: options.message_type,
            transaction_id: message::transaction_id_value(&options.transaction_id)?,
            sender_nonce: crate::crypto::random_bytes(16)?,
            recipient_nonce: None,
            pki_status: None,
            fail: None,
        };
        let tbs = message::to_be_signed_with(
            Some(enveloped),
            Some(&attributes),
            options.digest,
            &self.certificate,
            options.signing_time.value()?,
        )?;
        let signature = self.sign(options.digest, &tbs.signed_attrs_der)?;
        Ok(tbs.finish(signature)?)
    }

    fn sign(&self, digest: DigestAlg, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        let encoding = match digest {
            DigestAlg::Sha256 => &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            DigestAlg::Sha384 => &aws_lc_rs::signature::RSA_PKCS1_SHA384,
            DigestAlg::Sha512 => &aws_lc_rs::signature::RSA_PKCS1_SHA512,
            DigestAlg::Sha1 => return self.sign_sha1_with_openssl(data),
        };
        let mut signature = vec![0u8; self.signing.public_modulus_len()];
        self.signing
            .sign(encoding, &aws_lc_rs::rand::SystemRandom::new(), data, &mut signature)?;
        Ok(signature)
    }

    fn sign_sha1_with_openssl(&self, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        let path = std::env::temp_dir().join(format!("certgate-scep-client-{}.key", random_hex(8)));
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(self.key.serialize_pem().as_bytes())?;
        }
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha1", "-sign"])
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(data)?;
        }
        let output = child.wait_with_output();
        let _ = std::fs::remove_file(&path);
        let output = output?;
        if !output.status.success() {
            return Err(format!("openssl dgst -sha1 failed: {}", String::from_utf8_lossy(&output.stderr)).into());
        }
        Ok(output.stdout)
    }

    /// Verifies a CertRep's signature (its signer must be `ra_certificate`), reads its
    /// attributes and, for SUCCESS, decrypts its content with the client's key.
    pub fn open_cert_rep(&self, der: &[u8], ra_certificate: &[u8]) -> Result<CertRepView, ClientError> {
        let reply = message::parse_pki_message(der)?;
        if reply.message_type != MessageType::CertRep {
            return Err("not a CertRep".into());
        }
        if reply.signer_certificate.as_deref() != Some(ra_certificate) {
            return Err("the CertRep is not signed by the RA".into());
        }
        let digest = reply.verify(false)?;
        let status = reply.pki_status.ok_or("no pkiStatus")?;
        let mut view = CertRepView {
            status,
            fail_info: reply.fail_info,
            fail_info_text: reply.fail_info_text.clone(),
            transaction_id: reply.transaction_id.clone(),
            sender_nonce: reply.sender_nonce.clone(),
            recipient_nonce: reply.recipient_nonce.clone(),
            digest,
            certificates: Vec::new(),
            crls: Vec::new(),
            content: Vec::new(),
        };
        if status == PkiStatus::Success {
            let sealed = message::parse_envelope(&reply.content, &self.certificate)?;
            let key = self.unwrap(sealed.transport, sealed.wrapped_key())?;
            let plain = sealed.open_with_key(&key)?;
            view.certificates = message::certificates_of(&plain)?;
            view.crls = message::crls_of(&plain)?;
            view.content = plain.to_vec();
        }
        Ok(view)
    }

    fn unwrap(&self, transport: KeyTransport, wrapped: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut out = vec![0u8; self.signing.public_modulus_len()];
        let len = match transport {
            KeyTransport::Pkcs1v15 => self.pkcs1.decrypt(wrapped, &mut out)?.len(),
            KeyTransport::Oaep(digest) => {
                let alg = match digest {
                    RaDigest::Sha1 => &OAEP_SHA1_MGF1SHA1,
                    RaDigest::Sha256 => &OAEP_SHA256_MGF1SHA256,
                    RaDigest::Sha384 => &OAEP_SHA384_MGF1SHA384,
                    RaDigest::Sha512 => &OAEP_SHA512_MGF1SHA512,
                };
                self.oaep.decrypt(alg, wrapped, &mut out, None)?.len()
            }
        };
        out.truncate(len);
        Ok(out)
    }
}

/// Flips a bit in the first recipient's encryptedKey of a DER ContentInfo(EnvelopedData).
fn corrupt_wrapped_key(enveloped: &mut [u8]) -> Result<(), ClientError> {
    let info = cms::content_info::ContentInfo::from_der(enveloped)?;
    let env: cms::enveloped_data::EnvelopedData = info.content.decode_as()?;
    let Some(cms::enveloped_data::RecipientInfo::Ktri(ktri)) = env.recip_infos.0.iter().next() else {
        return Err("no key transport recipient".into());
    };
    let wrapped = ktri.enc_key.as_bytes();
    let at = enveloped
        .windows(wrapped.len())
        .position(|w| w == wrapped)
        .ok_or("wrapped key not found")?;
    // Flip a bit in the middle of the RSA block: the PKCS#1 padding (or OAEP check) fails.
    let index = at + wrapped.len() / 2;
    let byte = enveloped.get_mut(index).ok_or("index")?;
    *byte ^= 0x01;
    Ok(())
}

/// A DER PKCS#10 request for `key` with subject CN=`cn`, optional DNS SANs and an optional
/// challengePassword attribute.
pub fn csr(key: &rcgen::KeyPair, cn: &str, sans: &[&str], challenge: Option<&str>) -> Result<Vec<u8>, ClientError> {
    csr_with_subject(key, &[(rcgen::DnType::CommonName, cn)], sans, challenge)
}

/// The same with the subject's attributes `subject`, in this (DER) order.
pub fn csr_with_subject(
    key: &rcgen::KeyPair,
    subject: &[(rcgen::DnType, &str)],
    sans: &[&str],
    challenge: Option<&str>,
) -> Result<Vec<u8>, ClientError> {
    let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    for (kind, value) in subject {
        params.distinguished_name.push(kind.clone(), *value);
    }
    let mut attributes = Vec::new();
    if let Some(challenge) = challenge {
        let value = match PrintableString::new(challenge) {
            Ok(p) => Any::encode_from(&p)?,
            Err(_) => Any::encode_from(&Utf8StringRef::new(challenge)?)?,
        };
        attributes.push(rcgen::Attribute {
            oid: &[1, 2, 840, 113549, 1, 9, 7],
            values: SetOfVec::try_from(vec![value])?.to_der()?,
        });
    }
    Ok(params
        .serialize_request_with_attributes(key, attributes)?
        .der()
        .to_vec())
}

/// The DER IssuerAndSerialNumber of a certificate (GetCert, GetCRL content).
pub fn issuer_and_serial(certificate: &[u8]) -> Result<Vec<u8>, ClientError> {
    let cert = Certificate::from_der(certificate)?;
    let tbs = cert.tbs_certificate();
    Ok(IssuerAndSerialNumber {
        issuer: tbs.issuer().clone(),
        serial_number: tbs.serial_number().clone(),
    }
    .to_der()?)
}

/// The DER IssuerAndSubject of a CertPoll: the CA's subject and the requested subject (taken
/// from `csr`).
pub fn issuer_and_subject(ca_certificate: &[u8], csr: &[u8]) -> Result<Vec<u8>, ClientError> {
    let ca = Certificate::from_der(ca_certificate)?;
    let request = x509_cert::request::CertReq::from_der(csr)?;
    Ok(IssuerAndSubject {
        issuer: ca.tbs_certificate().subject().clone(),
        subject: request.info.subject,
    }
    .to_der()?)
}

/// The RA certificate of a GetCACert answer: the certificate with keyUsage
/// keyEncipherment that is not a CA (or the only certificate of a bare DER answer).
pub fn ra_certificate(content_type: &str, body: &[u8]) -> Result<Vec<u8>, ClientError> {
    if content_type == crate::codec::CA_CERT {
        return Ok(body.to_vec());
    }
    let certs = message::certificates_of(body)?;
    for der in &certs {
        let cert = Certificate::from_der(der)?;
        let is_ca = cert
            .tbs_certificate()
            .get_extension::<x509_cert::ext::pkix::BasicConstraints>()
            .ok()
            .flatten()
            .is_some_and(|(_, bc)| bc.ca);
        let encipherment = cert
            .tbs_certificate()
            .get_extension::<x509_cert::ext::pkix::KeyUsage>()
            .ok()
            .flatten()
            .is_some_and(|(_, ku)| ku.key_encipherment());
        if !is_ca && encipherment {
            return Ok(der.clone());
        }
    }
    Err("no RA certificate in the GetCACert answer".into())
}

/// `message=` value for a GET PKIOperation: base64, percent-encoded as a strict client does.
pub fn get_message_param(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(der)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// Turns any client-side error into one for `?` in tests that use [`ScepError`].
pub fn scep_error(e: ClientError) -> ScepError {
    ScepError::Encoding(e.to_string())
}
