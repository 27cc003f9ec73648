//! Project automation: `cargo xtask ci | tidy | demo | bench`.
//!
//! Kept small on purpose: plain `std::process::Command`, one dependency.

mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The workspace being worked on: from `CARGO_MANIFEST_DIR` as `cargo run`
/// sets it for this process, not as it was when this binary was built (a
/// target dir shared between checkouts may hold a binary built in another).
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(root());
    cmd
}

fn run(step: &str, mut cmd: Command) -> Result<(), String> {
    eprintln!("==> {step}");
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step}: failed ({status})"))
    }
}

/// Makes sure `redis-server` is on the PATH (the Redis tests start their own
/// on a free port): installs Debian's package when it is missing.
fn ensure_redis() -> Result<(), String> {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Ok(());
    }
    eprintln!("==> redis-server is missing: installing Debian's redis-server package");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "redis-server"]) {
        Ok(())
    } else {
        Err("redis-server is needed by the Redis tests and could not be installed; install it with `apt-get install redis-server`".to_owned())
    }
}

fn ci() -> Result<(), String> {
    ensure_redis()?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run("cargo fmt --check", fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run("cargo clippy -D warnings", clippy)?;
    eprintln!("==> tidy");
    tidy::check(&root())?;
    let mut test = cargo();
    test.args(["test", "--workspace"]);
    run("cargo test --workspace", test)?;
    eprintln!("==> ci passed");
    Ok(())
}

fn bench_bin(args: &[&str]) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--release", "--package", "lb-bench", "--"])
        .args(args);
    run(&format!("lb-bench {}", args.join(" ")), cmd)
}

/// Every benchmark, each written into docs/benchmarks.md: the strategies'
/// ranking and the admission check (criterion), then the gateway against
/// direct-to-mock (a load run).
fn bench(rest: &[&str]) -> Result<(), String> {
    for (package, bench) in [("lb-strategies", "rank"), ("lb-budget", "admission")] {
        let mut cmd = cargo();
        cmd.args([
            "bench",
            "--package",
            package,
            "--bench",
            bench,
            "--",
            "--noplot",
        ]);
        run(&format!("cargo bench -p {package} --bench {bench}"), cmd)?;
    }
    bench_bin(&["strategy-report"])?;
    bench_bin(&["admission-report"])?;
    bench_bin(&[&["bench"], rest].concat())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("tidy") => tidy::check(&root()),
        Some("demo") => bench_bin(&[&["demo"], rest.as_slice()].concat()),
        Some("bench") => bench(&rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n  ci     fmt check, clippy -D warnings, tidy, all tests\n  tidy   layering and docs checks\n  demo   the router serving loopback traffic over mock deployments\n  bench  gateway versus direct-to-mock, written to docs/benchmarks.md"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
