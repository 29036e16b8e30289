//! Dependency direction: every workspace crate may depend only on the workspace crates that
//! ARCHITECTURE.md's layering table allows, and the test-support crate only as a
//! dev-dependency. Reads `cargo metadata`, so a new dependency in any Cargo.toml is caught.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use certgate_test_support::workspace_root;

fn allowed_table() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
    let start = text
        .find("<!-- layering-table -->")
        .expect("ARCHITECTURE.md has a layering table");
    let end = text
        .find("<!-- /layering-table -->")
        .expect("the layering table is closed");
    text[start..end]
        .lines()
        .filter(|l| l.starts_with("| certgate"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let allowed = cells[1]
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            (cells[0].to_owned(), allowed)
        })
        .collect()
}

#[test]
fn workspace_dependencies_follow_the_layering_table() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let members: BTreeSet<String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    let table = allowed_table();

    let mut violations = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let Some(allowed) = table.get(name) else {
            violations.push(format!("{name} has no row in ARCHITECTURE.md's layering table"));
            continue;
        };
        for dependency in package["dependencies"].as_array().unwrap() {
            let dep = dependency["name"].as_str().unwrap();
            if !members.contains(dep) {
                continue;
            }
            let dev = dependency["kind"].as_str() == Some("dev");
            let ok = if dep == "certgate-test-support" {
                dev
            } else {
                dev || allowed.contains(dep)
            };
            if !ok {
                violations.push(format!("{name} depends on {dep}{}", if dev { " (dev)" } else { "" }));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependencies ARCHITECTURE.md does not allow:\n{}",
        violations.join("\n")
    );
    assert!(table.len() >= 6, "the table was read");
}
