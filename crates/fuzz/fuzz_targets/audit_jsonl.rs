//! Audit log exports: `certgate audit verify --file` reads a JSON-lines file an operator
//! hands it, so the line parser and the chain check must refuse anything without panicking.
#![no_main]

use certgate_store::audit::verify_jsonl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(summary) = verify_jsonl(data) {
        // A verified chain of n entries ends at seq n, so it has a last hash unless empty.
        assert_eq!(summary.last_hash.len(), 64);
    }
});
