//! Architecture checks: dependency edges point down, every crate is on the
//! map, every crate root has `//!` docs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Which workspace crates each crate may depend on (normal and build
/// dependencies). Dev-dependencies may also use `lb-mock`, the test fixture,
/// and `lb-budget`, whose `MemoryStore` is the reference a state backend's
/// conformance suite compares against.
/// This is the layering of docs/ARCHITECTURE.md.
const LAYERS: &[(&str, &[&str])] = &[
    ("lb-core", &[]),
    ("lb-strategies", &["lb-core"]),
    ("lb-providers", &["lb-core"]),
    ("lb-health", &["lb-core"]),
    ("lb-budget", &["lb-core"]),
    ("lb-redis", &["lb-core"]),
    (
        "lb-router",
        &[
            "lb-core",
            "lb-strategies",
            "lb-providers",
            "lb-health",
            "lb-budget",
            "lb-redis",
        ],
    ),
    ("lb-gateway", &["lb-router", "lb-core"]),
    ("lb-mock", &[]),
    (
        "lb-bench",
        &["lb-gateway", "lb-router", "lb-mock", "lb-core"],
    ),
    (
        "lb-e2e",
        &[
            "lb-core",
            "lb-strategies",
            "lb-providers",
            "lb-health",
            "lb-budget",
            "lb-redis",
            "lb-router",
            "lb-gateway",
            "lb-mock",
        ],
    ),
    ("xtask", &[]),
];

/// Runs every check against the workspace at `root`.
pub fn check(root: &Path) -> Result<(), String> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("tidy: cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "tidy: cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let meta: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("tidy: cargo metadata output unreadable: {e}"))?;
    let architecture = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md"))
        .map_err(|e| format!("tidy: cannot read docs/ARCHITECTURE.md: {e}"))?;
    let problems = check_metadata(&meta, &architecture);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "tidy found {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        ))
    }
}

fn check_metadata(meta: &Value, architecture: &str) -> Vec<String> {
    let layers: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    let members: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut problems = Vec::new();
    for p in &packages {
        let name = p["name"].as_str().unwrap_or_default();
        let Some(allowed) = layers.get(name) else {
            problems.push(format!(
                "{name}: not in tidy's layer table (xtask/src/tidy.rs) and docs/ARCHITECTURE.md"
            ));
            continue;
        };
        if name != "xtask" && name != "lb-e2e" && !architecture.contains(&format!("`{name}`")) {
            problems.push(format!(
                "{name}: missing from docs/ARCHITECTURE.md's code map"
            ));
        }
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if !members.contains(&dep_name) {
                continue;
            }
            let dev = dep["kind"].as_str() == Some("dev");
            let ok = allowed.contains(&dep_name)
                || (dev && (dep_name == "lb-mock" || dep_name == "lb-budget"));
            if !ok {
                problems.push(format!(
                    "{name} -> {dep_name}: dependency points the wrong way (allowed: {})",
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ));
            }
        }
        for target in p["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = target["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !(kinds.contains(&"lib") || (kinds.contains(&"bin") && name == "xtask")) {
                continue;
            }
            let path = target["src_path"].as_str().unwrap_or_default();
            match std::fs::read_to_string(path) {
                Ok(text) if text.trim_start().starts_with("//!") => {}
                Ok(_) => problems.push(format!("{name}: crate root {path} has no //! docs")),
                Err(e) => problems.push(format!("{name}: cannot read {path}: {e}")),
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn workspace_is_tidy() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        check(root).unwrap();
    }

    #[test]
    fn an_upward_edge_is_reported() {
        let meta = json!({"packages": [
            {"name": "lb-core", "dependencies": [{"name": "lb-router", "kind": null}], "targets": []},
            {"name": "lb-router", "dependencies": [], "targets": []}
        ]});
        let problems = check_metadata(&meta, "`lb-core` `lb-router`");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("lb-core -> lb-router: dependency points the wrong way"));
    }

    #[test]
    fn unknown_crate_and_missing_map_entry_are_reported() {
        let meta = json!({"packages": [
            {"name": "lb-new", "dependencies": [], "targets": []},
            {"name": "lb-core", "dependencies": [], "targets": []}
        ]});
        let problems = check_metadata(&meta, "nothing");
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
