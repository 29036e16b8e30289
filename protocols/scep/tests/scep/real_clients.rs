//! Messages recorded from real SCEP clients (testdata/scep): what they send must parse.

use certgate_authority::KeyTransport;
use certgate_scep::crypto::{ContentCipher, DigestAlg};
use certgate_scep::{MessageType, parse_envelope, parse_pki_message};

fn testdata(name: &str) -> Vec<u8> {
    let path = certgate_test_support::workspace_root().join("testdata/scep").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// micromdm's scepclient 2.1 writes encryptedContent in the constructed BER form, signs with
/// SHA-1 and uses single DES; before the BER rewrite this answered "the EnvelopedData does
/// not decode".
#[test]
fn micromdm_scepclient_pkcsreq_parses() {
    let message = parse_pki_message(&testdata("micromdm-scepclient-2.1-pkcsreq.der")).unwrap();
    assert_eq!(message.message_type, MessageType::PkcsReq);
    assert_eq!(message.digest, Some(DigestAlg::Sha1));
    let signer = message
        .signer_certificate
        .clone()
        .expect("the signer certificate travels along");
    // The content key was encrypted to the RA of the recording run: the only recipient.
    let sealed = parse_envelope(&message.content, &signer).unwrap();
    assert_eq!(sealed.cipher, ContentCipher::Des);
    assert!(matches!(sealed.transport, KeyTransport::Pkcs1v15));
    // SHA-1 is refused unless the endpoint allows it (micromdm needs `allow_sha1`).
    assert!(message.verify(false).is_err());
    assert_eq!(message.verify(true).unwrap(), DigestAlg::Sha1);
}
