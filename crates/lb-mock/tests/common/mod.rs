//! Helpers shared by the mock's HTTP test binaries.

use lb_mock::MockDeployment;
use serde_json::Value;

/// A client that never goes through a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// POSTs `body` to the deployment's `/chat/completions`.
pub async fn post(d: &MockDeployment, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/chat/completions", d.base_url()))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// [`post`], with the status and the JSON body.
pub async fn post_json(d: &MockDeployment, body: &Value) -> (u16, Value) {
    let r = post(d, body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// The `data:` payloads of a complete SSE body.
pub fn sse_events(text: &str) -> Vec<String> {
    assert!(text.ends_with("\n\n"), "{text:?}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("bad event {e:?}"))
                .to_owned()
        })
        .collect()
}
