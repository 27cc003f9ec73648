//! `lb-bench admission-report`: the admission bench's criterion results
//! (`cargo bench -p lb-budget --bench admission`) as a table in
//! docs/benchmarks.md.

use std::path::Path;

const START: &str = "<!-- bench:admission:start -->";
const END: &str = "<!-- bench:admission:end -->";

/// One benchmark: its id and mean time in nanoseconds.
fn results(dir: &Path) -> Result<Vec<(String, f64)>, String> {
    let mut out = Vec::new();
    let groups =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for group in groups.flatten() {
        if !group.file_name().to_string_lossy().starts_with("admission") {
            continue;
        }
        let Ok(functions) = std::fs::read_dir(group.path()) else {
            continue;
        };
        for f in functions.flatten() {
            let new = f.path().join("new");
            let (Ok(meta), Ok(est)) = (
                std::fs::read_to_string(new.join("benchmark.json")),
                std::fs::read_to_string(new.join("estimates.json")),
            ) else {
                continue;
            };
            let meta: serde_json::Value = serde_json::from_str(&meta).map_err(|e| e.to_string())?;
            let est: serde_json::Value = serde_json::from_str(&est).map_err(|e| e.to_string())?;
            let id = meta["full_id"].as_str().unwrap_or_default().to_owned();
            let ns = est["mean"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
            out.push((id, ns));
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no admission results under {} (run `cargo bench -p lb-budget --bench admission` first)",
            dir.display()
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn report(dir: &Path) -> Result<String, String> {
    let rows = results(dir)?;
    let mut table = String::from("| benchmark | mean per call |\n|---|---|\n");
    let mut worst_uncontended: f64 = 0.0;
    for (id, ns) in &rows {
        table.push_str(&format!("| `{id}` | {ns:.0} ns |\n"));
        if id.starts_with("admission/uncontended/Admission") {
            worst_uncontended = worst_uncontended.max(*ns);
        }
    }
    Ok(format!(
        "### Admission: reserve and settle one call\n\n\
Command: `cargo bench -p lb-budget --bench admission` then `cargo run --release -p lb-bench -- admission-report` (both run by `cargo xtask bench`).\n\
Machine: {}.\n\n\
{table}\n\
The 64-task rows are wall time per call with 64 tokio tasks admitting against one deployment on 2 workers.\n\
Target: under 1 µs uncontended in memory; the router's path (`Admission` through `dyn CounterStore`) took at most {worst_uncontended:.0} ns: {}.\n",
        crate::strategy_report::machine(),
        if worst_uncontended < 1000.0 {
            "met"
        } else {
            "missed"
        }
    ))
}

/// Writes the section into `out` between the admission markers.
pub(crate) fn run(criterion_dir: &str, out: &str) -> Result<(), String> {
    let section = report(Path::new(criterion_dir))?;
    println!("{section}");
    crate::write_section(out, START, END, &section)
        .map_err(|e| format!("cannot write {out}: {e}"))?;
    eprintln!("written to {out}");
    Ok(())
}
