//! The JWS profile against independently signed input: josekit (OpenSSL) signs, certgate
//! (aws-lc-rs) verifies. Headers are built by hand so that bad ones can be crafted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use certgate_acme::jws::{AccountKey, Algorithm, JwsError, MAX_JWS_LEN, ParsedJws, Signer};
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::JwsSigner;
use serde_json::{Value, json};

struct TestKey {
    alg: &'static str,
    private: Jwk,
    public: Value,
}

fn key(alg: &'static str) -> TestKey {
    let pair: Box<dyn KeyPair> = match alg {
        "ES256" => Box::new(josekit::jws::ES256.generate_key_pair().unwrap()),
        "ES384" => Box::new(josekit::jws::ES384.generate_key_pair().unwrap()),
        "ES512" => Box::new(josekit::jws::ES512.generate_key_pair().unwrap()),
        "RS256" | "PS256" => Box::new(josekit::jws::RS256.generate_key_pair(2048).unwrap()),
        "EdDSA" => Box::new(
            josekit::jws::EdDSA
                .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)
                .unwrap(),
        ),
        other => panic!("no test key for {other}"),
    };
    let public: serde_json::Map<String, Value> = pair.to_jwk_public_key().into();
    // josekit stamps the generating algorithm into the JWK; one RSA key signs RS256 and PS256.
    let mut private: serde_json::Map<String, Value> = pair.to_jwk_private_key().into();
    private.remove("alg");
    TestKey {
        alg,
        private: Jwk::from_map(private).unwrap(),
        public: Value::Object(public),
    }
}

fn signer(key: &TestKey) -> Box<dyn JwsSigner> {
    match key.alg {
        "ES256" => Box::new(josekit::jws::ES256.signer_from_jwk(&key.private).unwrap()),
        "ES384" => Box::new(josekit::jws::ES384.signer_from_jwk(&key.private).unwrap()),
        "ES512" => Box::new(josekit::jws::ES512.signer_from_jwk(&key.private).unwrap()),
        "RS256" => Box::new(josekit::jws::RS256.signer_from_jwk(&key.private).unwrap()),
        "PS256" => Box::new(josekit::jws::PS256.signer_from_jwk(&key.private).unwrap()),
        "EdDSA" => Box::new(josekit::jws::EdDSA.signer_from_jwk(&key.private).unwrap()),
        other => panic!("no signer for {other}"),
    }
}

/// A flattened JWS over `header` and `payload`, signed by `key`.
fn jws(key: &TestKey, header: &Value, payload: &[u8]) -> Value {
    let protected = B64.encode(serde_json::to_vec(header).unwrap());
    let payload = B64.encode(payload);
    let signature = signer(key).sign(format!("{protected}.{payload}").as_bytes()).unwrap();
    json!({"protected": protected, "payload": payload, "signature": B64.encode(signature)})
}

fn jwk_header(key: &TestKey) -> Value {
    json!({"alg": key.alg, "nonce": "bm9uY2U", "url": "https://ca.test/acme/default/new-account", "jwk": key.public})
}

fn parse_and_verify(body: &[u8]) -> Result<Vec<u8>, JwsError> {
    let parsed = ParsedJws::parse(body)?;
    let key = match &parsed.header().signer {
        Signer::Jwk(key) => key.clone(),
        Signer::Kid(_) => panic!("use verify_with for kid"),
    };
    parsed.verify(&key)
}

#[test]
fn good_jws_for_every_algorithm() {
    for alg in Algorithm::NAMES {
        let key = key(alg);
        let body = jws(&key, &jwk_header(&key), br#"{"termsOfServiceAgreed":true}"#);
        let parsed = ParsedJws::parse(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(parsed.header().alg.name(), alg);
        assert_eq!(parsed.header().nonce, "bm9uY2U");
        assert_eq!(parsed.header().url, "https://ca.test/acme/default/new-account");
        let payload = parse_and_verify(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(payload, br#"{"termsOfServiceAgreed":true}"#, "{alg}");
    }
}

#[test]
fn good_kid_post_as_get() {
    let key = key("ES256");
    let account = AccountKey::from_jwk(&key.public).unwrap();
    let header = json!({"alg": "ES256", "nonce": "bm9uY2U", "url": "https://ca.test/acme/default/order/1",
                        "kid": "https://ca.test/acme/default/account/1"});
    let body = jws(&key, &header, b"");
    let parsed = ParsedJws::parse(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        parsed.header().signer,
        Signer::Kid("https://ca.test/acme/default/account/1".into())
    );
    assert_eq!(
        parsed.verify(&account).unwrap(),
        Vec::<u8>::new(),
        "POST-as-GET has an empty payload"
    );
}

#[test]
fn rfc7638_thumbprint_known_answer() {
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    let key = AccountKey::from_jwk(&jwk).unwrap();
    assert_eq!(key.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

#[test]
fn bad_jws_catalogue() {
    let es256 = key("ES256");
    let es384 = key("ES384");
    let other = key("ES256");
    let good = jws(&es256, &jwk_header(&es256), b"{}");
    let with = |mutate: &dyn Fn(&mut Value)| {
        let mut header = jwk_header(&es256);
        mutate(&mut header);
        jws(&es256, &header, b"{}").to_string().into_bytes()
    };
    let mut tampered = good.clone();
    tampered["payload"] = Value::String(B64.encode(b"{\"x\":1}"));
    let mut foreign_signature = good.clone();
    foreign_signature["signature"] = jws(&other, &jwk_header(&es256), b"{}")["signature"].clone();
    let mut unprotected = good.clone();
    unprotected["header"] = json!({"kid": "x"});
    let mut general = good.clone();
    general["signatures"] = json!([]);
    let mut extra = good.clone();
    extra["extra"] = json!(1);
    let mut padded = good.clone();
    padded["protected"] = Value::String(format!("{}=", good["protected"].as_str().unwrap()));
    let mut empty_signature = good.clone();
    empty_signature["signature"] = Value::String(String::new());
    let weak_rsa = json!({"kty": "RSA", "n": B64.encode([0xC5u8; 128]), "e": "AQAB"});
    let private_jwk = {
        let mut jwk = es256.public.clone();
        jwk["d"] = Value::String("AAAA".into());
        jwk
    };
    let mut short_x = es256.public.clone();
    short_x["x"] = Value::String(B64.encode([1u8; 31]));
    let mut off_curve = es256.public.clone();
    off_curve["y"] = Value::String(B64.encode([7u8; 32]));

    type Check = fn(&JwsError) -> bool;
    let malformed: Check = |e| matches!(e, JwsError::Malformed(_));
    let bad_alg: Check = |e| matches!(e, JwsError::BadSignatureAlgorithm(_));
    let bad_key: Check = |e| matches!(e, JwsError::BadPublicKey(_));
    let bad_sig: Check = |e| matches!(e, JwsError::BadSignature);
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("alg_none", with(&|h| h["alg"] = json!("none")), bad_alg),
        ("alg_hs256", with(&|h| h["alg"] = json!("HS256")), bad_alg),
        (
            "alg_missing",
            with(&|h| drop(h.as_object_mut().unwrap().remove("alg"))),
            bad_alg,
        ),
        ("alg_es256k", with(&|h| h["alg"] = json!("ES256K")), bad_alg),
        (
            "alg_key_mismatch",
            jws(
                &es384,
                &json!({"alg": "ES256", "nonce": "n", "url": "u", "jwk": es384.public}),
                b"{}",
            )
            .to_string()
            .into_bytes(),
            bad_alg,
        ),
        (
            "jwk_and_kid",
            with(&|h| h["kid"] = json!("https://ca.test/acct/1")),
            malformed,
        ),
        (
            "neither_jwk_nor_kid",
            with(&|h| drop(h.as_object_mut().unwrap().remove("jwk"))),
            malformed,
        ),
        ("crit", with(&|h| h["crit"] = json!(["exp"])), malformed),
        ("b64_false", with(&|h| h["b64"] = json!(false)), malformed),
        (
            "nonce_missing",
            with(&|h| drop(h.as_object_mut().unwrap().remove("nonce"))),
            malformed,
        ),
        (
            "url_missing",
            with(&|h| drop(h.as_object_mut().unwrap().remove("url"))),
            malformed,
        ),
        (
            "kid_not_string",
            with(&|h| {
                h.as_object_mut().unwrap().remove("jwk");
                h["kid"] = json!(7);
            }),
            malformed,
        ),
        ("unprotected_header", unprotected.to_string().into_bytes(), malformed),
        ("general_serialization", general.to_string().into_bytes(), malformed),
        ("unknown_member", extra.to_string().into_bytes(), malformed),
        ("padded_base64", padded.to_string().into_bytes(), malformed),
        ("empty_signature", empty_signature.to_string().into_bytes(), malformed),
        ("not_json", b"protected=1".to_vec(), malformed),
        ("json_array", b"[]".to_vec(), malformed),
        ("oversized", vec![b' '; MAX_JWS_LEN + 1], malformed),
        ("rsa_1024_key", with(&|h| h["jwk"] = weak_rsa.clone()), bad_key),
        (
            "private_key_material",
            with(&|h| h["jwk"] = private_jwk.clone()),
            bad_key,
        ),
        (
            "wrong_coordinate_length",
            with(&|h| h["jwk"] = short_x.clone()),
            bad_key,
        ),
        ("point_not_on_curve", with(&|h| h["jwk"] = off_curve.clone()), bad_key),
        (
            "unknown_key_type",
            with(&|h| h["jwk"] = json!({"kty": "oct", "k": "AAAA"})),
            bad_key,
        ),
        ("tampered_payload", tampered.to_string().into_bytes(), bad_sig),
        (
            "signature_of_another_key",
            foreign_signature.to_string().into_bytes(),
            bad_sig,
        ),
    ];
    assert!(cases.len() >= 25);
    for (case, body, check) in cases {
        let err = parse_and_verify(&body).expect_err(case);
        assert!(check(&err), "case {case}: unexpected {err:?}");
    }
}
