//! The gateway with its shared state in Redis versus in memory, same run.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use lb_mock::{Fault, MockServer, RetryAfter};
use lb_router::{ChatCompletionRequest, ChatMessage, Router};

use crate::load::{self, Shot, Stop};

const START: &str = "<!-- bench:redis:start -->";
const END: &str = "<!-- bench:redis:end -->";

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(clippy::zombie_processes)] // owned by Server: killed and waited for in Drop
fn start_redis() -> Result<Server, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("cannot start redis-server ({e}); install it (apt-get install redis-server)")
        })?;
    let server = Server { child, port };
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("redis-server did not start".to_owned())
}

/// Commands Redis has served so far (from `INFO commandstats`).
fn commands(port: u16) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "commandstats"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn yaml(mock: &str, limits: bool, redis: Option<u16>) -> String {
    let limit = if limits {
        ", rpm: 1000000000, tpm: 1000000000000"
    } else {
        ""
    };
    let mut y = format!(
        "model_list:\n  - model_name: demo-model\n    litellm_params: {{model: openai/mock-model, api_base: \"{mock}\"{limit}}}\n    model_info: {{id: mock}}\n"
    );
    if let Some(port) = redis {
        y.push_str(&format!(
            "router_settings:\n  redis_url: redis://127.0.0.1:{port}\n  redis_key_prefix: bench\n"
        ));
    }
    y
}

/// How long a cooldown opened by one router takes to show in another
/// sharing the Redis (pub/sub), over `samples` cooldowns: sorted delays.
async fn cooldown_visibility(
    redis_port: u16,
    mock: &MockServer,
    samples: usize,
) -> Result<Vec<Duration>, String> {
    let url = mock.deployment(0).base_url();
    let mut y = String::from("model_list:\n");
    for i in 0..samples {
        y.push_str(&format!(
            "  - model_name: g\n    litellm_params: {{model: openai/m, api_base: \"{url}\"}}\n    model_info: {{id: d{i}}}\n"
        ));
    }
    y.push_str(&format!(
        "router_settings:\n  redis_url: redis://127.0.0.1:{redis_port}\n  redis_key_prefix: visibility\n  num_retries: 0\n"
    ));
    let a = Router::from_yaml(&y).map_err(|e| e.to_string())?;
    let b = Router::from_yaml(&y).map_err(|e| e.to_string())?;
    let listener = b.spawn_cooldown_listener();
    // Let the subscription settle before the first cooldown.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut delays = Vec::with_capacity(samples);
    for i in 0..samples {
        let id = format!("d{i}");
        mock.deployment(0)
            .fail_next(1, Fault::rate_limited(Some(RetryAfter::Seconds(60))));
        let req = ChatCompletionRequest::new(id.clone(), vec![ChatMessage::user("hi")]);
        if a.completion(req).await.is_ok() {
            return Err("the rate-limited call succeeded".to_owned());
        }
        // A has opened the cooldown (and published it) before answering.
        let t0 = load::now();
        loop {
            let cooling = b.health().iter().any(|d| d.id.as_str() == id && !d.healthy);
            if cooling {
                delays.push(load::now().duration_since(t0));
                break;
            }
            if load::now().duration_since(t0) > Duration::from_secs(5) {
                return Err(format!("router B never saw {id} cooling down"));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    if let Some(l) = listener {
        l.abort();
    }
    delays.sort_unstable();
    Ok(delays)
}

/// Runs the four configurations and writes the section.
pub(crate) async fn run(seconds: u64, out: &str) -> Result<(), String> {
    let redis = start_redis()?;
    let mock = MockServer::start(1).await.map_err(|e| e.to_string())?;
    let client = crate::client();
    let mut rows = Vec::new();
    for limits in [false, true] {
        let mut pair = Vec::new();
        for backend in [None, Some(redis.port)] {
            let router = Router::from_yaml(&yaml(&mock.deployment(0).base_url(), limits, backend))
                .map_err(|e| e.to_string())?;
            let gw = crate::gateway(router).await?;
            let shots = Arc::new(vec![Shot {
                url: format!("{}/v1/chat/completions", gw.url()),
                body: crate::chat_body(false),
                stream: false,
            }]);
            let _ = load::run(
                &client,
                Arc::clone(&shots),
                |_| 0,
                16,
                Stop::Requests(2000),
                None,
            )
            .await;
            let before = commands(redis.port);
            let r = load::run(
                &client,
                shots,
                |_| 0,
                64,
                Stop::Time(Duration::from_secs(seconds)),
                None,
            )
            .await;
            // Background settlements land just after the run.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let per_call = (commands(redis.port) - before) as f64 / (r.ok + r.failed).max(1) as f64;
            gw.shutdown().await.map_err(|e| e.to_string())?;
            if r.failed > 0 {
                return Err(format!(
                    "{} requests failed in the Redis benchmark",
                    r.failed
                ));
            }
            pair.push((r.throughput(), per_call));
        }
        rows.push((limits, pair));
    }
    let delays = cooldown_visibility(redis.port, &mock, 50).await?;
    mock.shutdown().await;
    let pick = |q: f64| {
        let i = ((delays.len() as f64 - 1.0) * q).round() as usize;
        delays.get(i).copied().unwrap_or_default()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let worst = delays.last().copied().unwrap_or_default();
    let visibility = format!(
        "Cooldowns shared through Redis: of {} cooldowns opened by one router (a 429 with Retry-After 60), another router sharing the Redis saw each after {:.2} ms at the median, {:.2} ms at p99, {:.2} ms at worst (polled every 0.2 ms; pub/sub, one hop). Target: visible within 100 ms: {}.",
        delays.len(),
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(worst),
        if worst < Duration::from_millis(100) {
            "met"
        } else {
            "missed"
        }
    );
    let mut table = String::from(
        "| limits configured | memory | Redis | Redis share | Redis commands per call (incl. inside scripts) |\n|---|---|---|---|---|\n",
    );
    let mut verdicts = Vec::new();
    for (limits, pair) in &rows {
        let share = pair[1].0 / pair[0].0 * 100.0;
        table.push_str(&format!(
            "| {} | {:.0} req/s | {:.0} req/s | {share:.1}% | {:.2} |\n",
            if *limits { "yes (rpm, tpm)" } else { "no" },
            pair[0].0,
            pair[1].0,
            pair[1].1
        ));
        let target = if *limits { 70.0 } else { 95.0 };
        verdicts.push(format!(
            "{} limits: {} (target {target:.0}%)",
            if *limits { "with" } else { "without" },
            if share >= target { "met" } else { "missed" }
        ));
    }
    let section = format!(
        "### Shared state in Redis versus memory\n\n\
Command: `cargo xtask bench` ({seconds} s per configuration at concurrency 64; a local `redis-server` started by the bench; the same mock and load generator).\n\n\
{table}\n\
With limits, a call makes one Redis round trip on its path: the reservation (one Lua script, whose inner commands INFO counts too); the settlement (real usage minus the estimate) costs no round trip of its own: it rides with the instance's next reservation script, or goes alone after 10 ms when there is none; the x-ratelimit status is re-read at most every 250 ms; LiteLLM's rpm-derived concurrency cap is counted per process. Without limits a call makes no Redis round trip.\n\
{}.\n\n{visibility}\n",
        verdicts.join("; ")
    );
    println!("{section}");
    crate::write_section(out, START, END, &section).map_err(|e| format!("cannot write {out}: {e}"))
}
