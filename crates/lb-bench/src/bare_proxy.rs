//! A bare HTTP proxy (axum in, reqwest out, the body passed through as it
//! arrives, nothing parsed): the floor of what one more HTTP hop costs on
//! this machine, measured beside the gateway in the streaming phase.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header::CONTENT_TYPE};
use axum::response::Response;
use axum::routing::post;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: reqwest::Url,
}

async fn forward(State(up): State<Upstream>, body: Bytes) -> Response {
    let sent = up
        .client
        .post(up.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(resp) => {
            let status = resp.status();
            let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
            *out.status_mut() = status;
            out.headers_mut().insert(
                CONTENT_TYPE,
                axum::http::HeaderValue::from_static("text/event-stream"),
            );
            out
        }
        Err(_) => {
            let mut out = Response::new(Body::empty());
            *out.status_mut() = StatusCode::BAD_GATEWAY;
            out
        }
    }
}

/// Starts the proxy in front of `upstream` (a full URL) and returns its address.
pub(crate) async fn start(upstream: &str) -> Result<SocketAddr, String> {
    let url = reqwest::Url::parse(upstream).map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())?;
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(forward))
        .with_state(Upstream { client, url });
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}
