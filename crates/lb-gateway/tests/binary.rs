//! The `lb-gateway` binary as an operator runs it: a config file, a port,
//! SIGTERM to stop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lb_mock::MockServer;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::new(text)
}

/// A config file in the target dir, removed on drop.
mod tempfile_path {
    use super::Write;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct TempPath(pub PathBuf);

    static N: AtomicU32 = AtomicU32::new(0);

    impl TempPath {
        pub fn new(text: &str) -> Self {
            let dir = std::env::temp_dir();
            let path = dir.join(format!(
                "lb-gateway-test-{}-{}.yaml",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let mut f = std::fs::File::create(&path).unwrap();
            f.write_all(text.as_bytes()).unwrap();
            Self(path)
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// A running `lb-gateway` process and what it has written so far.
struct Gateway {
    child: Child,
    port: u16,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// What a stopped gateway left.
struct Exited {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Copies `from` into `to` until it ends.
fn collect(
    mut from: impl Read + Send + 'static,
    to: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            to.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Gateway {
    /// Starts the binary on a free port with `config` and `extra` arguments,
    /// and waits until it serves. The port is picked free, then handed to
    /// the child: if something else took it in between, the child cannot
    /// listen and exits, and another port is tried.
    async fn start(config: &std::path::Path, extra: &[&str]) -> Gateway {
        let client = reqwest::Client::new();
        for _ in 0..20 {
            let mut g = Gateway::spawn(config, free_port(), extra);
            if g.wait_ready(&client).await {
                return g;
            }
            let gone = g.wait().await;
            assert!(
                gone.stderr.contains("cannot listen"),
                "the gateway exited at start ({}): {}{}",
                gone.status,
                gone.stdout,
                gone.stderr
            );
        }
        panic!("the gateway could not listen on any of 20 free ports");
    }

    fn spawn(config: &std::path::Path, port: u16, extra: &[&str]) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lb-gateway"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--port",
                &port.to_string(),
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Gateway {
            child,
            port,
            stdout,
            stderr,
            readers,
        }
    }

    /// Waits until this child serves on its port: `false` if it exits first.
    /// Its "lb-gateway listening" log line (written once it holds the port)
    /// tells it apart from anything else that may answer on that port.
    async fn wait_ready(&mut self, client: &reqwest::Client) -> bool {
        for _ in 0..1000 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let listening = String::from_utf8_lossy(&self.stdout.lock().unwrap())
                .contains("lb-gateway listening");
            if listening {
                if let Ok(r) = client
                    .get(format!("http://127.0.0.1:{}/health/readiness", self.port))
                    .send()
                    .await
                {
                    if r.status() == 200 {
                        return true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gateway did not become ready");
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until it has exited and its output is read to the end.
    async fn wait(self) -> Exited {
        tokio::task::spawn_blocking(move || {
            let Gateway {
                mut child,
                stdout,
                stderr,
                readers,
                ..
            } = self;
            let status = child.wait().unwrap();
            for r in readers {
                r.join().unwrap();
            }
            let text =
                |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
            Exited {
                status,
                stdout: text(&stdout),
                stderr: text(&stderr),
            }
        })
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_logs_hold_no_keys() {
    let mock = MockServer::start(1).await.unwrap();
    mock.deployment(0)
        .update_behavior(|b| b.latency = Duration::from_millis(400));
    let config = write_config(&format!(
        "model_list:\n  - model_name: g\n    litellm_params: {{model: openai/m, api_base: \"{}\", api_key: sk-upstream-secret}}\n    model_info: {{id: d0}}\n  - model_name: g\n    litellm_params: {{model: openai/m, api_base: \"{}\", region_name: eu}}\n    model_info: {{id: d1}}\ngeneral_settings:\n  master_key: sk-master-secret\n",
        mock.deployment(0).base_url(),
        mock.deployment(0).base_url()
    ));
    let gateway = Gateway::start(&config.0, &[]).await;
    let port = gateway.port;
    let client = reqwest::Client::new();
    let request = client
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth("sk-master-secret")
        .json(&serde_json::json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]}))
        .send();
    let in_flight = tokio::spawn(request);
    while mock.deployment(0).in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gateway.terminate();
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "the in-flight request finished");
    let output = gateway.wait().await;
    assert!(output.status.success(), "clean exit: {:?}", output.status);
    let logs = format!("{}{}", output.stdout, output.stderr);
    assert!(
        logs.contains("region_name is not implemented yet"),
        "{logs}"
    );
    assert!(logs.contains("request served"), "{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(
        !logs.contains("sk-upstream-secret") && !logs.contains("sk-master-secret"),
        "{logs}"
    );
}

#[tokio::test]
async fn json_logs_give_one_line_per_request_with_its_fields_and_no_keys() {
    let mock = MockServer::start(1).await.unwrap();
    // Traces on (to a collector on loopback): the log line carries the trace id.
    let collector = lb_mock::OtlpCollector::start().await.unwrap();
    let config = write_config(&format!(
        "model_list:\n  - model_name: g\n    litellm_params: {{model: openai/m, api_base: \"{}\", api_key: sk-upstream-secret}}\n    model_info: {{id: d0}}\ngeneral_settings:\n  master_key: sk-master-secret\nrouter_settings:\n  otel: {{endpoint: \"{}\"}}\n",
        mock.deployment(0).base_url(),
        collector.endpoint()
    ));
    let gateway = Gateway::start(&config.0, &["--log-format", "json"]).await;
    let port = gateway.port;
    let client = reqwest::Client::new();
    for model in ["g", "nope"] {
        client
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .bearer_auth("sk-master-secret")
            .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
    }
    gateway.terminate();
    let output = gateway.wait().await;
    let stdout = output.stdout;
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let served: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "request served")
        .collect();
    assert_eq!(served.len(), 1, "{stdout}");
    let s = served[0];
    assert_eq!(s["level"], "INFO");
    assert_eq!(s["model"], "g");
    assert_eq!(s["deployment"], "d0");
    assert_eq!(s["provider"], "openai");
    assert_eq!(s["status"], 200);
    assert_eq!(s["attempts"], 1);
    assert_eq!(s["fallbacks"], 0);
    assert!(s["latency_ms"].as_f64().unwrap() >= s["upstream_ms"].as_f64().unwrap());
    assert!(s["input_tokens"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["output_tokens"], 16, "the mock's default answer: {s}");
    let trace_id = s["trace_id"].as_str().unwrap();
    assert!(
        trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{s}"
    );
    // The gateway exported that request's spans before it exited on SIGTERM
    // (well before the batch exporter's 5 s schedule).
    let spans = collector.trace(trace_id);
    assert!(
        spans
            .iter()
            .any(|sp| sp.kind == "server" && sp.str_attr("lb.deployment.id") == Some("d0")),
        "{spans:#?}"
    );
    let failed: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "request failed")
        .collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    assert_eq!(failed[0]["status"], 400);
    assert!(!stdout.contains("sk-upstream-secret") && !stdout.contains("sk-master-secret"));
}

#[tokio::test]
async fn bad_config_exits_with_the_exact_path() {
    let config = write_config(
        "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n  - model_name: b\n    litellm_params: {model: openai/b}\n  - model_name: c\n    litellm_params: {model: openai/c, rpm: ten}\n",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_lb-gateway"))
        .args([
            "--config",
            config.0.to_str().unwrap(),
            "--port",
            &free_port().to_string(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            r#"model_list[2].litellm_params.rpm: expected a positive integer, got "ten""#
        ),
        "{stderr}"
    );
}
