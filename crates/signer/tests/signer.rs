use std::os::unix::fs::PermissionsExt;

use certgate_core::{DnsName, Identifier, KeyKind, Name, Serial, SubjectAttribute};
use certgate_signer::{
    CaInitOptions, Issuer, IssuerFiles, IssuerUrls, KeyType, LeafSpec, Passphrase, SignerError, Usage, generate_key,
    import_ca, init_ca,
};
use rcgen::PublicKeyData;
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn urls() -> IssuerUrls {
    IssuerUrls {
        crl: Some("http://127.0.0.1:8080/crl/default.crl".into()),
        ocsp: Some("http://127.0.0.1:8080/ocsp/default".into()),
        ca_issuers: Some("http://127.0.0.1:8080/ca/default.crt".into()),
    }
}

fn sign(issuer: &Issuer, key: KeyKind, spki: &[u8], usage: Usage, subject: &[SubjectAttribute]) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    let serial = Serial::from_random([7; 16]);
    let sans = [
        Identifier::Dns(DnsName::new("a.example.com").unwrap()),
        Identifier::Ip("192.0.2.1".parse().unwrap()),
    ];
    let urls = urls();
    issuer
        .sign_leaf(&LeafSpec {
            serial: &serial,
            spki_der: spki,
            key,
            subject,
            sans: &sans,
            usage,
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::days(90),
            urls: &urls,
        })
        .unwrap()
}

#[test]
fn good_ca_for_every_key_type_signs_a_well_formed_leaf() {
    for key_type in KeyType::ALL {
        let dir = tempfile::tempdir().unwrap();
        let options = CaInitOptions {
            key_type,
            ..CaInitOptions::default()
        };
        let files = init_ca(dir.path(), &options, OffsetDateTime::now_utc()).unwrap();
        for key_file in [&files.key, &files.root_key] {
            let mode = std::fs::metadata(key_file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key_type}: {}", key_file.display());
        }
        let issuer = Issuer::load(name("default"), &files, None).unwrap();
        assert_ne!(issuer.certificate_der(), issuer.root_der(), "{key_type}");
        assert_eq!(
            issuer.chain_after_leaf().len(),
            1,
            "{key_type}: intermediate only, no root"
        );

        let leaf_key = generate_key(KeyType::P256).unwrap();
        let der = sign(
            &issuer,
            KeyKind::EcP256,
            &leaf_key.subject_public_key_info(),
            Usage::TlsServer,
            &[],
        );
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.raw_serial(), Serial::from_random([7; 16]).as_bytes(), "{key_type}");
        let mut seen = Vec::new();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::KeyUsage(ku) => {
                    assert!(ext.critical);
                    assert!(
                        ku.digital_signature() && !ku.key_encipherment(),
                        "{key_type}: no keyEncipherment on EC"
                    );
                    seen.push("ku");
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    assert!(eku.server_auth && !eku.client_auth);
                    seen.push("eku");
                }
                ParsedExtension::BasicConstraints(bc) => {
                    assert!(!bc.ca);
                    seen.push("bc");
                }
                ParsedExtension::SubjectKeyIdentifier(_) => seen.push("ski"),
                ParsedExtension::AuthorityKeyIdentifier(_) => seen.push("aki"),
                ParsedExtension::SubjectAlternativeName(san) => {
                    assert!(ext.critical, "empty subject makes the SAN critical");
                    assert!(matches!(san.general_names[0], GeneralName::DNSName("a.example.com")));
                    seen.push("san");
                }
                ParsedExtension::CRLDistributionPoints(_) => seen.push("crldp"),
                ParsedExtension::AuthorityInfoAccess(aia) => {
                    assert_eq!(aia.accessdescs.len(), 2);
                    seen.push("aia");
                }
                other => panic!("{key_type}: unexpected extension {other:?}"),
            }
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            ["aia", "aki", "bc", "crldp", "eku", "ku", "san", "ski"],
            "{key_type}"
        );
    }
}

#[test]
fn rsa_leaves_get_key_encipherment_and_device_keeps_subject() {
    let dir = tempfile::tempdir().unwrap();
    let files = init_ca(dir.path(), &CaInitOptions::default(), OffsetDateTime::now_utc()).unwrap();
    let issuer = Issuer::load(name("default"), &files, None).unwrap();
    let leaf_key = generate_key(KeyType::Rsa2048).unwrap();
    let subject = [
        SubjectAttribute {
            oid: "2.5.4.10".parse().unwrap(),
            tag: der::Tag::Utf8String,
            value: "test".into(),
        },
        SubjectAttribute {
            oid: "2.5.4.3".parse().unwrap(),
            tag: der::Tag::PrintableString,
            value: "dev1".into(),
        },
    ];
    let der = sign(
        &issuer,
        KeyKind::Rsa(2048),
        &leaf_key.subject_public_key_info(),
        Usage::Device,
        &subject,
    );
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "O=test, CN=dev1");
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
}

#[test]
fn bad_validity_beyond_issuer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = CaInitOptions {
        intermediate_validity: Duration::days(30),
        ..CaInitOptions::default()
    };
    let files = init_ca(dir.path(), &options, OffsetDateTime::now_utc()).unwrap();
    let issuer = Issuer::load(name("default"), &files, None).unwrap();
    let leaf_key = generate_key(KeyType::P256).unwrap();
    let serial = Serial::from_random([1; 16]);
    let now = OffsetDateTime::now_utc();
    let err = issuer
        .sign_leaf(&LeafSpec {
            serial: &serial,
            spki_der: &leaf_key.subject_public_key_info(),
            key: KeyKind::EcP256,
            subject: &[],
            sans: &[Identifier::Dns(DnsName::new("a.example.com").unwrap())],
            usage: Usage::TlsServer,
            not_before: now,
            not_after: now + Duration::days(90),
            urls: &IssuerUrls::default(),
        })
        .unwrap_err();
    assert!(matches!(err, SignerError::ValidityBeyondIssuer { .. }), "{err:?}");
}

#[test]
fn ca_init_refuses_to_overwrite_and_encrypts_with_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let passphrase = Passphrase::new(b"pw".to_vec()).unwrap();
    let options = CaInitOptions {
        passphrase: Some(passphrase.clone()),
        ..CaInitOptions::default()
    };
    let files = init_ca(dir.path(), &options, OffsetDateTime::now_utc()).unwrap();
    let key_pem = std::fs::read_to_string(&files.key).unwrap();
    assert!(key_pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    assert!(matches!(
        Issuer::load(name("x"), &files, None),
        Err(SignerError::PassphraseRequired(_))
    ));
    Issuer::load(name("x"), &files, Some(&passphrase)).unwrap();
    assert!(matches!(
        init_ca(dir.path(), &options, OffsetDateTime::now_utc()),
        Err(SignerError::AlreadyExists(_))
    ));
}

#[test]
fn import_takes_an_existing_ca_and_rejects_mismatches() {
    let source = tempfile::tempdir().unwrap();
    let made = init_ca(source.path(), &CaInitOptions::default(), OffsetDateTime::now_utc()).unwrap();
    let cert = std::fs::read(&made.cert).unwrap();
    let key = std::fs::read(&made.key).unwrap();
    let root = std::fs::read(&made.root).unwrap();
    let root_key = std::fs::read(&made.root_key).unwrap();

    let target = tempfile::tempdir().unwrap();
    let files = import_ca(&target.path().join("imported"), &cert, &key, Some(&root), None, None).unwrap();
    let issuer = Issuer::load(name("imported"), &files, None).unwrap();
    assert_eq!(
        issuer.root_der(),
        certgate_signer::certificates_from_pem(&root).unwrap()[0]
    );

    type Case<'a> = (&'a str, &'a [u8], &'a [u8], Option<&'a [u8]>);
    let cases: [Case; 3] = [
        ("key_of_another_certificate", &cert, &root_key, Some(&root)),
        ("no_root_in_chain", &cert, &key, None),
        ("garbage_certificate", b"nope", &key, Some(&root)),
    ];
    for (case, cert, key, chain) in cases {
        let dir = target.path().join(case);
        assert!(import_ca(&dir, cert, key, chain, None, None).is_err(), "case {case}");
        assert!(!IssuerFiles::in_dir(&dir).exists(), "case {case}: nothing written");
    }
}
