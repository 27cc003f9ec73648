//! `lb-bench strategy-report`: the routing strategies' criterion results
//! (`cargo bench -p lb-strategies --bench rank`) as a table in
//! `docs/benchmarks.md`.

use std::path::Path;

/// The criterion group the `rank` bench writes.
const GROUP: &str = "rank";

/// The strategies of the bench, in table order.
const STRATEGIES: [&str; 6] = [
    "simple-shuffle",
    "least-busy",
    "latency-based-routing",
    "cost-based-routing",
    "usage-based-routing-v2",
    "latency-p2c",
];

/// The pool sizes of the bench.
const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

/// The strategies with a target at 10,000 candidates.
const O1_STRATEGIES: [&str; 2] = ["simple-shuffle", "latency-p2c"];

/// Target at 100 candidates, every strategy, in µs.
const TARGET_100_US: f64 = 1.0;

/// Target at 10,000 candidates, [`O1_STRATEGIES`], in µs.
const TARGET_10K_US: f64 = 2.0;

pub(crate) const START: &str = "<!-- bench:strategies:start -->";
pub(crate) const END: &str = "<!-- bench:strategies:end -->";

/// The mean time of one benchmark in nanoseconds, from criterion's
/// `<dir>/<group>/<function>/<param>/new/estimates.json`.
fn mean_ns(dir: &Path, function: &str, size: usize) -> Result<f64, String> {
    let path = dir
        .join(GROUP)
        .join(function)
        .join(size.to_string())
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
    json.pointer("/mean/point_estimate")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| format!("{}: no mean.point_estimate", path.display()))
}

/// Microseconds with about three significant digits.
fn us(ns: f64) -> String {
    let us = ns / 1000.0;
    if us < 1.0 {
        format!("{us:.3}")
    } else if us < 10.0 {
        format!("{us:.2}")
    } else if us < 100.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores, {cpu}; {rustc}; criterion, bench profile")
}

/// The markdown section, from the results under `dir`.
fn report(dir: &Path) -> Result<String, String> {
    let mut rows = String::new();
    let mut missed = Vec::new();
    for name in STRATEGIES {
        let t: Vec<f64> = SIZES
            .iter()
            .map(|&n| mean_ns(dir, name, n))
            .collect::<Result<_, _>>()?;
        let growth = t[3] / t[2];
        let at_100 = t[1] / 1000.0 < TARGET_100_US;
        let mut targets = format!("100: {}", verdict(at_100));
        if !at_100 {
            missed.push(format!("{name} at 100"));
        }
        if O1_STRATEGIES.contains(&name) {
            let at_10k = t[3] / 1000.0 < TARGET_10K_US;
            targets.push_str(&format!("; 10,000: {}", verdict(at_10k)));
            if !at_10k {
                missed.push(format!("{name} at 10,000"));
            }
        }
        rows.push_str(&format!(
            "| `{name}` | {} | {} | {} | {} | ×{growth:.1} | {targets} |\n",
            us(t[0]),
            us(t[1]),
            us(t[2]),
            us(t[3]),
        ));
    }
    let missed = if missed.is_empty() {
        "Every target is met.".to_owned()
    } else {
        format!("Missed: {}.", missed.join(", "))
    };
    Ok(format!(
        "### Routing strategies: ranking one call\n\n\
Command: `cargo bench -p lb-strategies --bench rank` then `cargo run --release -p lb-bench -- strategy-report`.\n\
Machine: {}.\n\n\
Mean time of one `Strategy::rank` call, in µs, reusing `out` across calls (`simple-shuffle` with the group's precomputed `WeightIndex`, as the router passes it when no candidate was filtered out); every candidate has a weight, rpm/tpm limits far from reached, 0-7 calls in flight, latencies and peak EWMAs for 95% of them, one of five prices, and some minute usage (`crates/lb-strategies/benches/rank.rs`); `latency-based-routing` runs with `lowest_latency_buffer: 0.1`.\n\n\
| strategy | 10 | 100 | 1,000 | 10,000 | 1,000 → 10,000 | targets |\n\
|---|---|---|---|---|---|---|\n\
{rows}\n\
Targets: under {TARGET_100_US} µs at 100 candidates for every strategy; under {TARGET_10K_US} µs at 10,000 for `simple-shuffle` and `latency-p2c`. {missed}\n\
Growth from 1,000 to 10,000 candidates: ×10 is linear, ×13.3 is n log n, and LiteLLM's selection, quadratic in the pool (its issue #21270), would be ×100.\n\n\
Where the time goes:\n\
`latency-p2c` reads two candidates whatever the pool; at 10,000 its time is writing the 10,000 indices of the full ranking into `out` (80 KB).\n\
`simple-shuffle` draws its weighted picks by binary search over the weights the router sums once per model group (`WeightIndex`: weights are config), so it reads no candidate; like p2c, its time at 10,000 is writing the ranking. (Without the index, when cooldowns or limits filtered the group, it falls back to one pass over the candidates' weights: about 50 µs at 10,000.)\n\
`least-busy` sorts by counting (O(n)); the other three compare-sort packed integer keys (O(n log n)).\n\
Growth above ×10 at 10,000 comes mostly from the pool outgrowing the caches (800 KB of candidate snapshots plus the deployments they point to), not from the algorithms.\n",
        machine(),
    ))
}

/// Writes the section into `out` between the strategy markers.
pub(crate) fn run(criterion_dir: &str, out: &str) -> Result<(), String> {
    let section = report(Path::new(criterion_dir))?;
    println!("{section}");
    crate::write_section(out, START, END, &section)
        .map_err(|e| format!("cannot write {out}: {e}"))?;
    eprintln!("written to {out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microseconds_keep_three_digits() {
        assert_eq!(us(51.4), "0.051");
        assert_eq!(us(1_602.0), "1.60");
        assert_eq!(us(17_234.0), "17.2");
        assert_eq!(us(187_864.0), "188");
    }

    #[test]
    fn report_reads_criterion_estimates() {
        let dir = std::env::temp_dir().join(format!("lb-bench-strategies-{}", std::process::id()));
        for name in STRATEGIES {
            for n in SIZES {
                let d = dir.join(GROUP).join(name).join(n.to_string()).join("new");
                std::fs::create_dir_all(&d).unwrap();
                let ns = n as f64 * if name == "latency-p2c" { 0.1 } else { 5.0 };
                std::fs::write(
                    d.join("estimates.json"),
                    format!(r#"{{"mean":{{"point_estimate":{ns}}}}}"#),
                )
                .unwrap();
            }
        }
        let text = report(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            text.contains(
                "| `latency-p2c` | 0.001 | 0.010 | 0.100 | 1.00 | ×10.0 | 100: met; 10,000: met |"
            ),
            "{text}"
        );
        assert!(text.contains("| `least-busy` | 0.050 | 0.500 | 5.00 | 50.0 | ×10.0 | 100: met |"));
        assert!(text.contains("Missed: simple-shuffle at 10,000."));
    }
}
