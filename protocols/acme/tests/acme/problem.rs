//! Problem documents as clients read them.

use certgate_acme::jws::JwsError;
use certgate_acme::problem::{Problem, ProblemIdentifier, ProblemType};

#[test]
fn documents() {
    let problem = Problem::new(ProblemType::RejectedIdentifier, "some names are refused").with_subproblem(
        ProblemType::RejectedIdentifier,
        "outside policy",
        ProblemIdentifier {
            kind: "dns".into(),
            value: "evil.example.net".into(),
        },
    );
    let json: serde_json::Value = serde_json::from_slice(&problem.to_json()).unwrap();
    assert_eq!(json["type"], "urn:ietf:params:acme:error:rejectedIdentifier");
    assert_eq!(json["status"], 400);
    assert_eq!(json["subproblems"][0]["identifier"]["value"], "evil.example.net");
    assert!(json.get("algorithms").is_none());

    let alg: Problem = JwsError::BadSignatureAlgorithm("none".into()).into();
    let json: serde_json::Value = serde_json::from_slice(&alg.to_json()).unwrap();
    assert_eq!(json["type"], "urn:ietf:params:acme:error:badSignatureAlgorithm");
    assert_eq!(json["algorithms"].as_array().unwrap().len(), 6);
    assert_eq!(ProblemType::OrderNotReady.status(), 403);
    assert_eq!(ProblemType::RateLimited.status(), 429);
    assert_eq!(ProblemType::BadCsr.urn(), "urn:ietf:params:acme:error:badCSR");
}
