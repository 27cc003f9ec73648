//! End-to-end test harness: `lb-mock` deployments, a router configured from
//! LiteLLM YAML, and the gateway, all on free loopback ports.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test harness: a failed setup fails the test loudly

use std::time::Duration;

use lb_gateway::{GatewayOptions, RunningGateway};
use lb_mock::{MockDeployment, MockServer};
use lb_router::{ManualClock, Router, RouterBuilder, RouterConfig};

pub use lb_router::Clock;

/// One `model_list` entry: deployment `id` of `group`, model `model`, key `sk-{id}`;
/// `extra` holds further `litellm_params` lines (6-space indented).
pub fn entry_with_model(group: &str, id: &str, model: &str, url: &str, extra: &str) -> String {
    format!(
        "  - model_name: {group}\n    litellm_params:\n      model: {model}\n      api_base: \"{url}\"\n      api_key: sk-{id}\n{extra}    model_info:\n      id: {id}\n"
    )
}

/// [`entry_with_model`] with model `openai/{id}-model`.
pub fn entry(group: &str, id: &str, url: &str, extra: &str) -> String {
    entry_with_model(group, id, &format!("openai/{id}-model"), url, extra)
}

/// Mock upstreams, a router over them and a gateway in front.
pub struct Harness {
    /// The mock upstreams (deployment `i` is `dep-i` in the config).
    pub mock: MockServer,
    /// The router the gateway serves.
    pub router: Router,
    /// The running gateway.
    pub gateway: RunningGateway,
    /// A plain HTTP client for raw requests.
    pub http: reqwest::Client,
    /// The router's clock: backoff and Retry-After waits advance it instead
    /// of sleeping, and cooldowns end when a test moves it.
    pub clock: ManualClock,
}

/// YAML `model_list` entries for `n` mock deployments of group `group`,
/// with ids `dep-0`, `dep-1`, ...; `{url_i}` placeholders are filled in.
pub fn model_list(group: &str, urls: &[String], extra_params: &str) -> String {
    let mut yaml = String::from("model_list:\n");
    for (i, url) in urls.iter().enumerate() {
        yaml.push_str(&format!(
            "  - model_name: {group}\n    litellm_params:\n      model: openai/mock-{i}\n      api_base: \"{url}\"\n      api_key: sk-test-{i}\n{extra_params}    model_info:\n      id: dep-{i}\n"
        ));
    }
    yaml
}

impl Harness {
    /// `n` mock deployments in group `gpt-4o`, plus `rest` appended to the config.
    pub async fn start(n: usize, rest: &str) -> Harness {
        Self::start_with(n, |urls| {
            format!("{}{rest}", model_list("gpt-4o", urls, ""))
        })
        .await
    }

    /// `n` mock deployments and a config built from their base URLs.
    pub async fn start_with(n: usize, config: impl FnOnce(&[String]) -> String) -> Harness {
        Self::start_opts(n, config, false).await
    }

    /// Like [`Harness::start_with`], on the real clock: for latency
    /// strategies, which must see real response times.
    pub async fn start_real_clock(n: usize, config: impl FnOnce(&[String]) -> String) -> Harness {
        Self::start_opts(n, config, true).await
    }

    async fn start_opts(
        n: usize,
        config: impl FnOnce(&[String]) -> String,
        real_clock: bool,
    ) -> Harness {
        let mock = MockServer::start(n).await.expect("mock starts");
        let urls: Vec<String> = mock
            .deployments()
            .iter()
            .map(MockDeployment::base_url)
            .collect();
        let yaml = config(&urls);
        let cfg = RouterConfig::from_yaml(&yaml).unwrap_or_else(|e| panic!("config: {e}\n{yaml}"));
        let options = GatewayOptions::from_general(&cfg.general);
        let clock = ManualClock::new();
        let shared = if real_clock {
            lb_router::SystemClock::shared()
        } else {
            clock.shared()
        };
        let router = RouterBuilder::from_config(cfg)
            .clock(shared)
            .build()
            .expect("router builds");
        let gateway = lb_gateway::start(
            "127.0.0.1:0".parse().expect("addr"),
            router.clone(),
            options,
        )
        .await
        .expect("gateway starts");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        Harness {
            mock,
            router,
            gateway,
            http,
            clock,
        }
    }

    /// Mock deployment `i`.
    pub fn dep(&self, i: usize) -> &MockDeployment {
        self.mock.deployment(i)
    }

    /// `http://gateway/v1`.
    pub fn v1(&self) -> String {
        format!("{}/v1", self.gateway.url())
    }

    /// POSTs `body` as JSON to the gateway path `path`.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.gateway.url()))
            .json(body)
            .send()
            .await
            .expect("request reaches the gateway")
    }

    /// A minimal chat body for `model`.
    pub fn chat(model: &str) -> serde_json::Value {
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]})
    }

    /// `GET /metrics`, checked for the Prometheus text content type and
    /// parsed with a real exposition parser.
    pub async fn scrape(&self) -> Scrape {
        let resp = self
            .http
            .get(format!("{}/metrics", self.gateway.url()))
            .send()
            .await
            .expect("request reaches the gateway");
        assert_eq!(resp.status(), 200);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = resp.text().await.unwrap();
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }
}

pub use prometheus_parse::{Scrape, Value as MetricValue};

/// The one sample named `name` whose labels include `labels`.
fn sample<'s>(s: &'s Scrape, name: &str, labels: &[(&str, &str)]) -> &'s prometheus_parse::Sample {
    let found: Vec<&prometheus_parse::Sample> = s
        .samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0]
}

/// The value of the counter or gauge `name` with `labels` (exactly one must match).
pub fn metric(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match &sample(s, name, labels).value {
        MetricValue::Counter(v) | MetricValue::Gauge(v) | MetricValue::Untyped(v) => *v,
        other => panic!("{name}: not a number: {other:?}"),
    }
}

/// How many observations the histogram `name` with `labels` holds.
pub fn histogram_count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> u64 {
    match &sample(s, name, labels).value {
        MetricValue::Histogram(buckets) => buckets.last().map_or(0, |b| b.count as u64),
        other => panic!("{name}: not a histogram: {other:?}"),
    }
}

/// A `redis-server` on a free loopback port, killed on drop.
pub struct RedisServer {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
}

impl RedisServer {
    /// Starts one (fails loudly when `redis-server` is not installed:
    /// `cargo xtask ci` installs it). The port is picked free, then given
    /// to the child: if something else took it in between, the child cannot
    /// listen and another port is tried.
    pub async fn start() -> RedisServer {
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if let Some(server) = Self::try_start_on(port).await {
                return server;
            }
        }
        panic!("redis-server did not start on any of 20 free ports");
    }

    /// Starts one on `port` (e.g. to restart it where it was).
    pub async fn start_on(port: u16) -> RedisServer {
        Self::try_start_on(port)
            .await
            .unwrap_or_else(|| panic!("redis-server could not listen on port {port}"))
    }

    /// A `redis-server` child on `port`, once it answers there; `None` when
    /// the port belongs to another process (the child exits, or another
    /// server answers).
    #[allow(clippy::zombie_processes)] // owned by RedisServer: killed and waited for in Drop
    async fn try_start_on(port: u16) -> Option<RedisServer> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server; cargo xtask ci does it)");
        let mut server = RedisServer { child, port };
        for _ in 0..500 {
            if let Ok(Some(_)) = server.child.try_wait() {
                return None; // it could not listen: the port is taken
            }
            if let Some(pid) = redis_pid(port).await {
                // Ours, or a server that held the port before ours could bind it.
                return (pid == server.child.id()).then_some(server);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server did not start on port {port}");
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `process_id` of the Redis server answering on `port`, if one does.
async fn redis_pid(port: u16) -> Option<u32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(b"INFO server\r\n").await.ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply);
            if let Some(rest) = text.split("process_id:").nth(1) {
                if let Some((pid, _)) = rest.split_once("\r\n") {
                    return pid.trim().parse().ok();
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
