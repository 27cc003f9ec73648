//! The `lb-gateway` binary as an operator runs it: a config file, a port,
//! SIGTERM to stop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::io::Write;
use std::process::{Child, Command, Stdio};
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

fn spawn(config: &std::path::Path, port: u16) -> Child {
    spawn_with(config, port, &[])
}

fn spawn_with(config: &std::path::Path, port: u16, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lb-gateway"))
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
        .unwrap()
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
    for _ in 0..500 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/health/readiness"))
            .send()
            .await
        {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gateway did not become ready");
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
    let port = free_port();
    let child = spawn(&config.0, port);
    let client = reqwest::Client::new();
    wait_ready(&client, port).await;
    let request = client
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth("sk-master-secret")
        .json(&serde_json::json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]}))
        .send();
    let in_flight = tokio::spawn(request);
    while mock.deployment(0).in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "the in-flight request finished");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "clean exit: {:?}", output.status);
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
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
    let config = write_config(&format!(
        "model_list:\n  - model_name: g\n    litellm_params: {{model: openai/m, api_base: \"{}\", api_key: sk-upstream-secret}}\n    model_info: {{id: d0}}\ngeneral_settings:\n  master_key: sk-master-secret\n",
        mock.deployment(0).base_url()
    ));
    let port = free_port();
    let child = spawn_with(&config.0, port, &["--log-format", "json"]);
    let client = reqwest::Client::new();
    wait_ready(&client, port).await;
    for model in ["g", "nope"] {
        client
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .bearer_auth("sk-master-secret")
            .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
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
