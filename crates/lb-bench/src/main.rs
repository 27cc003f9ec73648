//! `lb-bench demo` and `lb-bench bench`: the router serving real loopback
//! traffic over `lb-mock` deployments, and the gateway's overhead measured
//! against direct-to-mock calls in the same run.

mod admission_report;
mod bare_proxy;
mod load;
mod metrics_phase;
mod redis_phase;
mod strategy_report;

/// mimalloc: the allocator the gateway binary ships with, for the whole benchmark process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lb_gateway::{GatewayOptions, RunningGateway};
use lb_mock::{Behavior, Fault, MockServer};
use lb_router::Router;
use load::{LoadResult, Shot, Stop};

#[derive(Debug, Parser)]
#[command(name = "lb-bench")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Mock deployments (healthy, slow, flaky) behind the gateway, a few thousand requests, a table.
    Demo {
        /// Requests to send.
        #[arg(long, default_value_t = 3000)]
        requests: u64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Gateway versus direct-to-mock: added latency and throughput share.
    Bench {
        /// Seconds per throughput phase.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Requests per latency phase (concurrency 1).
        #[arg(long, default_value_t = 5000)]
        latency_requests: u64,
        /// Where to write the results (a generated section is replaced).
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: String,
    },
    /// Only the streaming phase of `bench`: time to first token through the gateway versus direct.
    Streams {
        /// Streamed requests per side (concurrency 1).
        #[arg(long, default_value_t = 5000)]
        requests: u64,
        /// Where to write the results (a generated section is replaced).
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: String,
    },
    /// Only the Redis phase of `bench`: the Redis backend versus memory.
    Redis {
        /// Seconds per configuration.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Where to write the results (a generated section is replaced).
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: String,
    },
    /// Only the observability phase of `bench`: metrics and traces on versus off.
    Observability {
        /// Seconds per configuration.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Where to write the results (a generated section is replaced).
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: String,
    },
    /// The routing strategies' criterion results (`cargo bench -p lb-strategies --bench rank`) as a table.
    StrategyReport {
        /// Criterion's output directory.
        #[arg(long, default_value = "target/criterion")]
        criterion_dir: String,
        /// Where to write the table (a generated section is replaced).
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: String,
    },
    /// The admission bench's criterion results (`cargo bench -p lb-budget --bench admission`) as a table.
    AdmissionReport {
        /// Criterion's output directory.
        #[arg(long, default_value = "target/criterion")]
        criterion_dir: String,
        /// Where to write the table (a generated section is replaced).
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: String,
    },
}

fn chat_body(stream: bool) -> Vec<u8> {
    let body = serde_json::json!({
        "model": "demo-model",
        "messages": [{"role": "user", "content": "Say something short."}],
        "stream": stream,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn router_for(urls: &[(&str, String)]) -> Result<Router, String> {
    let mut yaml = String::from("model_list:\n");
    for (id, url) in urls {
        yaml.push_str(&format!(
            "  - model_name: demo-model\n    litellm_params: {{model: openai/mock-model, api_base: \"{url}\", api_key: sk-demo}}\n    model_info: {{id: {id}}}\n"
        ));
    }
    yaml.push_str("router_settings:\n  num_retries: 2\n  timeout: 10\n");
    Router::from_yaml(&yaml).map_err(|e| e.to_string())
}

async fn gateway(router: Router) -> Result<RunningGateway, String> {
    let addr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    lb_gateway::start(addr, router, GatewayOptions::default())
        .await
        .map_err(|e| format!("cannot start gateway: {e}"))
}

async fn demo(requests: u64, concurrency: usize) -> Result<(), String> {
    let mock = MockServer::start(3)
        .await
        .map_err(|e| format!("cannot start mock: {e}"))?;
    let names = ["healthy", "slow", "flaky"];
    mock.deployment(0).set_behavior(Behavior {
        latency: Duration::from_millis(5),
        ..Behavior::default()
    });
    mock.deployment(1).set_behavior(Behavior {
        latency: Duration::from_millis(60),
        jitter: Duration::from_millis(40),
        ..Behavior::default()
    });
    mock.deployment(2).set_behavior(Behavior {
        latency: Duration::from_millis(5),
        failure_rate: 0.25,
        failure: Fault::status(503),
        seed: 7,
        ..Behavior::default()
    });
    let urls: Vec<(&str, String)> = names.iter().copied().zip(mock.base_urls()).collect();
    let router = router_for(&urls)?;
    let gw = gateway(router.clone()).await?;
    println!(
        "lb-router demo: gateway on {} over 3 mock deployments:",
        gw.url()
    );
    println!("  healthy: 5 ms   slow: 60-100 ms   flaky: 5 ms, 25% of calls answer 503");
    println!("  {requests} requests (1 in 5 streamed), {concurrency} in flight, num_retries 2\n");
    let url = format!("{}/v1/chat/completions", gw.url());
    // 1 in 5 streamed.
    let shots = Arc::new(
        (0..5)
            .map(|k| Shot {
                url: url.clone(),
                body: chat_body(k == 4),
                stream: k == 4,
            })
            .collect::<Vec<_>>(),
    );
    let bar = ProgressBar::new(requests);
    bar.set_style(
        ProgressStyle::with_template("  [{bar:40}] {pos}/{len} requests  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let result = load::run(
        &client(),
        shots,
        |n| n as usize,
        concurrency,
        Stop::Requests(requests),
        Some(bar.clone()),
    )
    .await;
    bar.finish_and_clear();

    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>9} {:>13}",
        "deployment", "upstream", "served", "faults", "answered", "mean latency"
    );
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>9} {:>13}",
        "", "requests", "(200)", "injected", "by router", "(router)"
    );
    let stats = router.deployment_stats();
    for (i, name) in names.iter().enumerate() {
        let m = mock.deployment(i);
        let s = stats
            .iter()
            .find(|(id, _)| id.as_str() == *name)
            .map(|(_, s)| *s)
            .unwrap_or_default();
        let mean = s.mean_latency().map_or_else(
            || "-".to_owned(),
            |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        );
        println!(
            "{:<10} {:>9} {:>9} {:>9} {:>9} {:>13}",
            name,
            m.requests(),
            m.successes(),
            m.faults(),
            s.successes,
            mean
        );
    }
    println!();
    for h in router.health() {
        let state = if h.healthy {
            "taking calls".to_owned()
        } else {
            format!(
                "cooling down for {:.1} s more: {}",
                h.cooldown_remaining.unwrap_or_default().as_secs_f64(),
                h.reason.unwrap_or_default()
            )
        };
        println!("{:<10} {state}", h.id.as_str());
    }
    let absorbed: u64 = mock.deployments().iter().map(|d| d.faults()).sum();
    println!(
        "\nclient saw: {} ok, {} failed, latency p50 {:.1} ms, p99 {:.1} ms, {:.0} req/s",
        result.ok,
        result.failed,
        result.quantile_ms(0.5),
        result.quantile_ms(0.99),
        result.throughput()
    );
    println!(
        "upstream faults absorbed by retrying on another deployment: {absorbed} ({} reached the client)",
        result.failed
    );
    gw.shutdown().await.map_err(|e| e.to_string())?;
    mock.shutdown().await;
    if result.failed > 0 {
        return Err(format!("{} requests failed", result.failed));
    }
    Ok(())
}

/// The mock alone: its server on one OS thread (a current-thread runtime),
/// the load generator on another, each with a core of its own.
fn mock_ceiling(seconds: u64) -> Result<LoadResult, String> {
    let (url_tx, url_rx) = std::sync::mpsc::channel::<String>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let mock = MockServer::start(1).await.map_err(|e| e.to_string())?;
            let _ = url_tx.send(format!(
                "{}/chat/completions",
                mock.deployment(0).base_url()
            ));
            let _ = stop_rx.await;
            mock.shutdown().await;
            Ok(())
        })
    });
    let url = url_rx
        .recv()
        .map_err(|_| "the mock thread did not start".to_owned())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let result = rt.block_on(async move {
        let shots = Arc::new(vec![Shot {
            url,
            body: chat_body(false),
            stream: false,
        }]);
        let client = client();
        let _ = load::run(
            &client,
            Arc::clone(&shots),
            |_| 0,
            64,
            Stop::Requests(5000),
            None,
        )
        .await;
        load::run(
            &client,
            shots,
            |_| 0,
            64,
            Stop::Time(Duration::from_secs(seconds)),
            None,
        )
        .await
    });
    let _ = stop_tx.send(());
    server
        .join()
        .map_err(|_| "the mock thread panicked".to_owned())??;
    Ok(result)
}

struct Phase {
    direct: LoadResult,
    gateway: LoadResult,
}

async fn bench(
    seconds: u64,
    latency_requests: u64,
    out: &str,
    ceiling: LoadResult,
) -> Result<(), String> {
    let mock = MockServer::start(1)
        .await
        .map_err(|e| format!("cannot start mock: {e}"))?;
    let direct_url = format!("{}/chat/completions", mock.deployment(0).base_url());
    let router = router_for(&[("mock", mock.deployment(0).base_url())])?;
    let gw = gateway(router).await?;
    let gw_url = format!("{}/v1/chat/completions", gw.url());
    let client = client();
    let direct = Arc::new(vec![Shot {
        url: direct_url,
        body: chat_body(false),
        stream: false,
    }]);
    let via_gw = Arc::new(vec![Shot {
        url: gw_url,
        body: chat_body(false),
        stream: false,
    }]);
    let pick: fn(u64) -> usize = |_| 0;

    eprintln!("warming up...");
    let _ = load::run(
        &client,
        Arc::clone(&direct),
        pick,
        8,
        Stop::Requests(2000),
        None,
    )
    .await;
    let _ = load::run(
        &client,
        Arc::clone(&via_gw),
        pick,
        8,
        Stop::Requests(2000),
        None,
    )
    .await;

    eprintln!("latency, concurrency 1 ({latency_requests} requests each)...");
    let c1 = Phase {
        direct: load::run(
            &client,
            Arc::clone(&direct),
            pick,
            1,
            Stop::Requests(latency_requests),
            None,
        )
        .await,
        gateway: load::run(
            &client,
            Arc::clone(&via_gw),
            pick,
            1,
            Stop::Requests(latency_requests),
            None,
        )
        .await,
    };
    eprintln!("throughput, concurrency 64 ({seconds} s each)...");
    let c64 = Phase {
        direct: load::run(
            &client,
            Arc::clone(&direct),
            pick,
            64,
            Stop::Time(Duration::from_secs(seconds)),
            None,
        )
        .await,
        gateway: load::run(
            &client,
            Arc::clone(&via_gw),
            pick,
            64,
            Stop::Time(Duration::from_secs(seconds)),
            None,
        )
        .await,
    };
    eprintln!("streams, concurrency 1 ({latency_requests} each)...");
    let streams = streams(&client, &mock, &gw, latency_requests).await;
    gw.shutdown().await.map_err(|e| e.to_string())?;
    mock.shutdown().await;
    println!("{}", streams.report);
    write_section(out, STREAM_START, STREAM_END, &streams.report)
        .map_err(|e| format!("cannot write {out}: {e}"))?;
    let failed = c1.direct.failed
        + c1.gateway.failed
        + c64.direct.failed
        + c64.gateway.failed
        + streams.failed;
    let report = report(&c1, &c64, &ceiling, seconds, latency_requests, failed);
    println!("{report}");
    write_section(out, START, END, &report).map_err(|e| format!("cannot write {out}: {e}"))?;
    eprintln!("redis versus memory, concurrency 64 ({seconds} s each)...");
    redis_phase::run(seconds, out).await?;
    eprintln!("metrics and traces on versus off, concurrency 64 ({seconds} s each)...");
    metrics_phase::run(seconds, out).await?;
    eprintln!("written to {out}");
    if failed > 0 {
        return Err(format!("{failed} benchmark requests failed"));
    }
    Ok(())
}

/// The streaming phase's report and its failed requests.
struct Streams {
    report: String,
    failed: u64,
}

/// Time to first byte and whole-stream time of `n` streamed requests at
/// concurrency 1: direct to the mock, through a bare proxy (the cost of the
/// extra HTTP hop alone) and through the gateway, same run.
async fn streams(
    client: &reqwest::Client,
    mock: &MockServer,
    gw: &RunningGateway,
    n: u64,
) -> Streams {
    let upstream = format!("{}/chat/completions", mock.deployment(0).base_url());
    let shot = |url: String| Shot {
        url,
        body: chat_body(true),
        stream: true,
    };
    let stream_direct = shot(upstream.clone());
    let stream_gw = shot(format!("{}/v1/chat/completions", gw.url()));
    let proxy = match bare_proxy::start(&upstream).await {
        Ok(addr) => addr,
        Err(e) => {
            return Streams {
                report: format!("the bare proxy did not start: {e}"),
                failed: n,
            };
        }
    };
    let stream_proxy = shot(format!("http://{proxy}/v1/chat/completions"));
    for s in [&stream_direct, &stream_proxy, &stream_gw] {
        let _ = load::stream_timings(client, s, 500).await;
    }
    // Interleaved in rounds, so drift of the machine spreads over all three.
    let rounds = 5;
    let mut results: Vec<(LoadResult, LoadResult)> = Vec::new();
    for round in 0..rounds {
        for (i, s) in [&stream_direct, &stream_proxy, &stream_gw]
            .into_iter()
            .enumerate()
        {
            let (first, whole) = load::stream_timings(client, s, n / rounds).await;
            if round == 0 {
                results.push((first, whole));
            } else {
                results[i].0.merge(&first);
                results[i].1.merge(&whole);
            }
        }
    }
    let failed = results.iter().map(|r| r.1.failed).sum();
    Streams {
        report: stream_report(&results[0], &results[1], &results[2], n / rounds * rounds),
        failed,
    }
}

/// Only the streaming phase of `bench`.
async fn streams_only(requests: u64, out: &str) -> Result<(), String> {
    let mock = MockServer::start(1)
        .await
        .map_err(|e| format!("cannot start mock: {e}"))?;
    let router = router_for(&[("mock", mock.deployment(0).base_url())])?;
    let gw = gateway(router).await?;
    let streams = streams(&client(), &mock, &gw, requests).await;
    gw.shutdown().await.map_err(|e| e.to_string())?;
    mock.shutdown().await;
    println!("{}", streams.report);
    write_section(out, STREAM_START, STREAM_END, &streams.report)
        .map_err(|e| format!("cannot write {out}: {e}"))?;
    if streams.failed > 0 {
        return Err(format!("{} benchmark requests failed", streams.failed));
    }
    Ok(())
}

/// CPU time this process has used (user and system, all threads), seconds;
/// 0 where /proc is not readable.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (11 and 12 after the name), in
    // clock ticks of 1/100 s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cores} cores, {cpu}; {rustc}; release build; mock, gateway and load generator share one tokio runtime in one process"
    )
}

const STREAM_START: &str = "<!-- bench:streams:start -->";
const STREAM_END: &str = "<!-- bench:streams:end -->";

/// The mock's canonical answer streams as this many events (role, 16 tokens,
/// finish) plus `[DONE]`.
const STREAM_EVENTS: f64 = 19.0;

fn first(r: &(LoadResult, LoadResult)) -> &LoadResult {
    &r.0
}

fn whole(r: &(LoadResult, LoadResult)) -> &LoadResult {
    &r.1
}

fn stream_report(
    direct: &(LoadResult, LoadResult),
    proxy: &(LoadResult, LoadResult),
    gw: &(LoadResult, LoadResult),
    n: u64,
) -> String {
    let us = |r: &LoadResult, q: f64| r.quantile_ms(q) * 1000.0;
    let row = |name: &str, q: f64, pick: fn(&(LoadResult, LoadResult)) -> &LoadResult| {
        let (d, p, g) = (us(pick(direct), q), us(pick(proxy), q), us(pick(gw), q));
        format!(
            "| {name} | {d:.1} µs | {p:.1} µs ({:+.1}) | {g:.1} µs | {:+.1} µs | {:+.1} µs |\n",
            p - d,
            g - d,
            g - p
        )
    };
    let added_ttft = us(&gw.0, 0.5) - us(&direct.0, 0.5);
    let added_whole = us(&gw.1, 0.5) - us(&direct.1, 0.5);
    let per_chunk = (added_whole - added_ttft) / (STREAM_EVENTS - 1.0);
    let hop = us(&proxy.0, 0.5) - us(&direct.0, 0.5);
    format!(
        "### Streaming: time to first token and per-chunk overhead

Command: `cargo xtask bench` ({n} streamed requests per column at concurrency 1, in five interleaved rounds: direct to the mock, through a bare proxy, through the gateway; the mock streams 19 events of a 16-token answer with no delay between them).
The bare proxy (crates/lb-bench/src/bare_proxy.rs) is axum in front of reqwest passing the upstream's body through untouched, no routing and nothing parsed: what one more HTTP hop costs on this machine, whatever the proxy does.
Machine: {}.

| measure | direct to mock | bare proxy (adds) | through gateway | gateway adds over direct | gateway adds over the bare proxy |
|---|---|---|---|---|---|
{}{}{}
Per chunk, the gateway adds about {:.1} µs at the median (whole stream minus first byte, over the 18 events after the first); reads coalesce events (a direct read often returns most of the stream at once), so per-chunk figures at this scale are within noise.
Target: under 50 µs added time to first token at the median: {} (+{:.1} µs; the extra hop alone, measured by the bare proxy, is +{:.1} µs).
",
        machine(),
        row("time to first byte, p50", 0.5, first),
        row("time to first byte, p99", 0.99, first),
        row("whole stream, p50", 0.5, whole),
        per_chunk.max(0.0),
        if added_ttft < 50.0 { "met" } else { "missed" },
        added_ttft,
        hop,
    )
}

fn report(
    c1: &Phase,
    c64: &Phase,
    ceiling: &LoadResult,
    seconds: u64,
    latency_requests: u64,
    failed: u64,
) -> String {
    let added_p50 = c1.gateway.quantile_ms(0.5) - c1.direct.quantile_ms(0.5);
    let added_p99 = c1.gateway.quantile_ms(0.99) - c1.direct.quantile_ms(0.99);
    let share = c64.gateway.throughput() / c64.direct.throughput() * 100.0;
    let added64_p50 = c64.gateway.quantile_ms(0.5) - c64.direct.quantile_ms(0.5);
    let added64_p99 = c64.gateway.quantile_ms(0.99) - c64.direct.quantile_ms(0.99);
    format!(
        "### Gateway versus direct-to-mock\n\n\
Command: `cargo xtask bench` (defaults: {latency_requests} requests per latency phase, {seconds} s per throughput phase).\n\
Machine: {}.\n\n\
| measure | direct to mock | through gateway | gateway adds / share |\n\
|---|---|---|---|\n\
| latency p50, concurrency 1 | {:.3} ms | {:.3} ms | +{:.3} ms |\n\
| latency p99, concurrency 1 | {:.3} ms | {:.3} ms | +{:.3} ms |\n\
| latency p50, concurrency 64 | {:.3} ms | {:.3} ms | +{:.3} ms |\n\
| latency p99, concurrency 64 | {:.3} ms | {:.3} ms | +{:.3} ms |\n\
| throughput, concurrency 64 | {:.0} req/s | {:.0} req/s | {:.1}% of direct |\n\n\
Targets: added p50 at concurrency 1 under 0.2 ms; throughput at concurrency 64 at least 30% of direct.\n\
The mock alone, its server on one thread and the load generator on the other, answered {:.0} req/s at concurrency 64 ({} failed); that is a lower bound of its ceiling (the generator is the heavier side), and the gateway phase stays far below it, so the mock is not the gateway's bottleneck.\n\
Failed requests in the run: {failed}.\n",
        machine(),
        c1.direct.quantile_ms(0.5),
        c1.gateway.quantile_ms(0.5),
        added_p50,
        c1.direct.quantile_ms(0.99),
        c1.gateway.quantile_ms(0.99),
        added_p99,
        c64.direct.quantile_ms(0.5),
        c64.gateway.quantile_ms(0.5),
        added64_p50,
        c64.direct.quantile_ms(0.99),
        c64.gateway.quantile_ms(0.99),
        added64_p99,
        c64.direct.throughput(),
        c64.gateway.throughput(),
        share,
        ceiling.throughput(),
        ceiling.failed,
    )
}

const START: &str = "<!-- bench:gateway:start -->";
const END: &str = "<!-- bench:gateway:end -->";

fn write_section(path: &str, start: &str, end: &str, section: &str) -> std::io::Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n\n".to_owned());
    let block = format!("{start}\n{section}{end}");
    let text = match (existing.find(start), existing.find(end)) {
        (Some(s), Some(e)) if e > s => {
            format!("{}{}{}", &existing[..s], block, &existing[e + end.len()..])
        }
        _ => format!("{}\n{}\n", existing.trim_end(), block),
    };
    std::fs::write(path, text)
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match args.command {
        Cmd::Demo {
            requests,
            concurrency,
        } => rt.block_on(demo(requests, concurrency)),
        Cmd::Bench {
            seconds,
            latency_requests,
            out,
        } => {
            eprintln!("mock ceiling, concurrency 64 ({seconds} s)...");
            match mock_ceiling(seconds) {
                Ok(ceiling) => rt.block_on(bench(seconds, latency_requests, &out, ceiling)),
                Err(e) => Err(e),
            }
        }
        Cmd::Streams { requests, out } => rt.block_on(streams_only(requests, &out)),
        Cmd::Redis { seconds, out } => rt.block_on(redis_phase::run(seconds, &out)),
        Cmd::Observability { seconds, out } => rt.block_on(metrics_phase::run(seconds, &out)),
        Cmd::StrategyReport { criterion_dir, out } => strategy_report::run(&criterion_dir, &out),
        Cmd::AdmissionReport { criterion_dir, out } => admission_report::run(&criterion_dir, &out),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
