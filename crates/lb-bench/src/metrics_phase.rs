//! The gateway with Prometheus metrics on versus off, same run.

use std::sync::Arc;
use std::time::Duration;

use lb_mock::MockServer;
use lb_router::Router;

use crate::load::{self, Shot, Stop};

const START: &str = "<!-- bench:metrics:start -->";
const END: &str = "<!-- bench:metrics:end -->";

fn yaml(mock: &str, metrics: bool) -> String {
    format!(
        "model_list:\n  - model_name: demo-model\n    litellm_params: {{model: openai/mock-model, api_base: \"{mock}\"}}\n    model_info: {{id: mock}}\nrouter_settings:\n  enable_metrics: {metrics}\n"
    )
}

/// Runs off, on, off, on (half the time each, to spread drift over both)
/// and writes the section.
pub(crate) async fn run(seconds: u64, out: &str) -> Result<(), String> {
    let mock = MockServer::start(1).await.map_err(|e| e.to_string())?;
    let client = crate::client();
    let mut gateways = Vec::new();
    let mut routers = Vec::new();
    for metrics in [false, true] {
        let router = Router::from_yaml(&yaml(&mock.deployment(0).base_url(), metrics))
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
    let half = Duration::from_millis(seconds * 500);
    let mut ok = [0u64; 2];
    let mut failed = 0;
    let mut elapsed = [Duration::ZERO; 2];
    for _ in 0..2 {
        for (i, s) in shots.iter().enumerate() {
            let r = load::run(&client, Arc::clone(s), |_| 0, 64, Stop::Time(half), None).await;
            ok[i] += r.ok;
            failed += r.failed;
            elapsed[i] += r.elapsed;
        }
    }
    // The metrics gateway counted every request it served.
    let scraped = routers[1].metrics_text().await;
    let off_text = routers[0].metrics_text().await;
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
    let rate = |i: usize| ok[i] as f64 / elapsed[i].as_secs_f64().max(1e-9);
    let share = rate(1) / rate(0) * 100.0;
    let section = format!(
        "### Metrics on versus off\n\n\
Command: `cargo xtask bench` ({seconds} s per configuration at concurrency 64, alternating off/on in halves; the same mock and load generator).\n\n\
| metrics | throughput |\n|---|---|\n\
| off (`enable_metrics: false`) | {:.0} req/s |\n\
| on (default) | {:.0} req/s |\n\n\
With metrics on the gateway serves {share:.1}% of its throughput with them off (target at least 95%: {}). Tracing export is not built yet, so this row measures metrics alone.\n",
        rate(0),
        rate(1),
        if share >= 95.0 { "met" } else { "missed" }
    );
    println!("{section}");
    crate::write_section(out, START, END, &section).map_err(|e| format!("cannot write {out}: {e}"))
}
