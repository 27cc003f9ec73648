//! The gateway with observability off, with Prometheus metrics on, and
//! with metrics on and traces exported over OTLP/HTTP to a collector on
//! loopback (every trace, a 10% sample, every trace sampled out), same run.

use std::sync::Arc;
use std::time::Duration;

use lb_mock::{MockServer, OtlpCollector};
use lb_router::Router;

use crate::load::{self, Shot, Stop};

const START: &str = "<!-- bench:metrics:start -->";
const END: &str = "<!-- bench:metrics:end -->";

fn yaml(mock: &str, metrics: bool, otel: Option<(&str, f64)>) -> String {
    let otel = match otel {
        None => String::new(),
        Some((e, r)) if r >= 1.0 => format!("  otel: {{endpoint: \"{e}\"}}\n"),
        Some((e, r)) => format!("  otel: {{endpoint: \"{e}\", sample_ratio: {r}}}\n"),
    };
    format!(
        "model_list:\n  - model_name: demo-model\n    litellm_params: {{model: openai/mock-model, api_base: \"{mock}\"}}\n    model_info: {{id: mock}}\nrouter_settings:\n  enable_metrics: {metrics}\n{otel}"
    )
}

/// Each configuration runs this many times, interleaved with the others.
const ROUNDS: u64 = 5;

/// The configurations compared: (metrics, share of traces exported).
const CONFIGS: [(bool, Option<f64>); 5] = [
    (false, None),
    (true, None),
    (true, Some(1.0)),
    (true, Some(0.1)),
    (true, Some(0.0)),
];

/// Runs each configuration in `ROUNDS` slices, interleaved and rotated (to
/// spread drift and order effects over all), and writes the section.
pub(crate) async fn run(seconds: u64, out: &str) -> Result<(), String> {
    let mock = MockServer::start(1).await.map_err(|e| e.to_string())?;
    let collector = OtlpCollector::start_counting()
        .await
        .map_err(|e| e.to_string())?;
    let client = crate::client();
    let mut gateways = Vec::new();
    let mut routers = Vec::new();
    let endpoint = collector.endpoint();
    for (metrics, traces) in CONFIGS {
        let router = Router::from_yaml(&yaml(
            &mock.deployment(0).base_url(),
            metrics,
            traces.map(|r| (endpoint.as_str(), r)),
        ))
        .map_err(|e| e.to_string())?;
        routers.push(router.clone());
        gateways.push(crate::gateway(router).await?);
    }
    let shots: Vec<Arc<Vec<Shot>>> = gateways
        .iter()
        .map(|gw| {
            Arc::new(vec![Shot {
                url: format!("{}/v1/chat/completions", gw.url()),
                body: crate::chat_body(false),
                stream: false,
            }])
        })
        .collect();
    for s in &shots {
        let _ = load::run(
            &client,
            Arc::clone(s),
            |_| 0,
            16,
            Stop::Requests(2000),
            None,
        )
        .await;
    }
    routers[2].flush_traces().await;
    routers[3].flush_traces().await;
    let warmup_spans = collector.span_count();
    let slice = Duration::from_millis(seconds * 1000 / ROUNDS);
    let mut ok = [0u64; 5];
    let mut failed = 0;
    let mut elapsed = [Duration::ZERO; 5];
    let mut cpu = [0.0f64; 5];
    for round in 0..ROUNDS {
        // Each round starts one configuration later, so each runs first,
        // second... equally often (what runs after an exporting gateway
        // pays for its queued spans).
        for k in 0..shots.len() {
            let i = (k + round as usize) % shots.len();
            let s = &shots[i];
            let c0 = crate::cpu_seconds();
            let r = load::run(&client, Arc::clone(s), |_| 0, 64, Stop::Time(slice), None).await;
            cpu[i] += crate::cpu_seconds() - c0;
            ok[i] += r.ok;
            failed += r.failed;
            elapsed[i] += r.elapsed;
        }
    }
    // The metrics gateway counted every request it served; the traced one
    // exported its spans (two per request: the request and its attempt).
    let scraped = routers[1].metrics_text().await;
    let off_text = routers[0].metrics_text().await;
    routers[2].flush_traces().await;
    routers[3].flush_traces().await;
    let spans = collector.span_count() - warmup_spans;
    let tracing_on = [routers[0].tracing_enabled(), routers[2].tracing_enabled()];
    for gw in gateways {
        gw.shutdown().await.map_err(|e| e.to_string())?;
    }
    mock.shutdown().await;
    if failed > 0 {
        return Err(format!("{failed} requests failed in the metrics benchmark"));
    }
    if !scraped.contains("litellm_deployment_total_requests_total") || !off_text.is_empty() {
        return Err("metrics were not on in the one run and off in the other".to_owned());
    }
    if tracing_on != [false, true] || spans == 0 {
        return Err(format!(
            "traces were not off in the one run and exported in the other ({spans} spans)"
        ));
    }
    let rate = |i: usize| ok[i] as f64 / elapsed[i].as_secs_f64().max(1e-9);
    // CPU time of the whole process (load generator, mock, gateway,
    // collector) per request served.
    let cpu_us = |i: usize| cpu[i] / ok[i].max(1) as f64 * 1e6;
    let share = |i: usize| rate(i) / rate(0) * 100.0;
    let verdict = |i: usize| if share(i) >= 95.0 { "met" } else { "missed" };
    // Two spans per request (the request and its attempt) at 100%, a tenth at 10%.
    let expected = 2.0 * (ok[2] as f64 + ok[3] as f64 * 0.1);
    let exported = spans as f64 / expected * 100.0;
    let names = [
        "| off (`enable_metrics: false`) | off",
        "| on (default) | off",
        "| on | exporting every trace (`otel.endpoint`)",
        "| on | exporting 10% of traces (`otel.sample_ratio: 0.1`)",
        "| on | on, every trace sampled out (`otel.sample_ratio: 0`)",
    ];
    let mut rows = String::new();
    for (i, name) in names.iter().enumerate() {
        rows.push_str(&format!(
            "{name} | {:.0} req/s | {:.1}% | {:.1} µs ({:+.1}) |\n",
            rate(i),
            share(i),
            cpu_us(i),
            cpu_us(i) - cpu_us(0)
        ));
    }
    let section = format!(
        "### Observability on versus off\n\n\
Command: `cargo xtask bench` ({seconds} s per configuration at concurrency 64, in {ROUNDS} interleaved rounds, each round starting one configuration later; the same mock and load generator; traces go over OTLP/HTTP protobuf to lb-mock's collector on the same loopback, which counts the spans of each request without decoding their fields).\n\n\
| metrics | traces | throughput | share of both off | CPU per request (whole process) |\n|---|---|---|---|---|\n\
{rows}\n\
Target at least 95% with metrics on and tracing exporting: {} when every trace is exported, {} at a 10% sample. Metrics alone: {}. The CPU column is the bench process's CPU time (load generator, mock, gateway and collector together) per request served, and beside it the difference from both off; it is steadier than throughput on this VM. The collector received {spans} spans, {exported:.0}% of the two per sampled request (the SDK's batch processor drops spans when its queue of 2048 is full, and says so in a warning).\n",
        verdict(2),
        verdict(3),
        verdict(1),
    );
    println!("{section}");
    crate::write_section(out, START, END, &section).map_err(|e| format!("cannot write {out}: {e}"))
}
