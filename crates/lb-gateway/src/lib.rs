//! An OpenAI-compatible HTTP gateway in front of [`lb_router::Router`].
//!
//! Serves `POST /v1/chat/completions` (and `/chat/completions`), streaming
//! passed through chunk by chunk, `POST /v1/embeddings`, `GET /v1/models`,
//! and `GET /health/liveliness` / `/health/readiness`. Errors are
//! OpenAI-style JSON with the upstream's status; responses carry LiteLLM's
//! `x-litellm-*` headers so existing tooling keeps working.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use lb_gateway::{GatewayOptions, start};
//! use lb_router::Router;
//!
//! let router = Router::from_path("config.yaml")?;
//! let gateway = start("127.0.0.1:4000".parse()?, router, GatewayOptions::default()).await?;
//! println!("listening on {}", gateway.addr());
//! gateway.shutdown().await?; // lets in-flight requests finish
//! # Ok(()) }
//! ```
//!
//! Why a thin gateway: everything that decides where a call goes lives in
//! the router, so the library and the gateway behave the same.

#![forbid(unsafe_code)]

mod auth;
mod handlers;
mod sse;

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use axum::Router as HttpRouter;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use lb_router::{Router, Secret};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Default largest request body: 32 MiB (images as base64 make big prompts).
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// What the gateway adds to the router.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Bearer key clients must present (`general_settings.master_key`); none means open.
    pub master_key: Option<Secret>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            master_key: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl GatewayOptions {
    /// Options from a config's `general_settings`.
    pub fn from_general(general: &lb_router::GeneralSettings) -> Self {
        Self {
            master_key: general.master_key.clone(),
            max_body_bytes: general
                .max_request_bytes()
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) router: Router,
    pub(crate) master_key: Option<Secret>,
}

/// The gateway's HTTP routes, ready to serve.
pub fn app(router: Router, options: GatewayOptions) -> HttpRouter {
    let state = AppState {
        router,
        master_key: options.master_key,
    };
    let api = HttpRouter::new()
        .route("/v1/chat/completions", post(handlers::chat_completions))
        .route("/chat/completions", post(handlers::chat_completions))
        .route("/v1/embeddings", post(handlers::embeddings))
        .route("/embeddings", post(handlers::embeddings))
        .route("/v1/models", get(handlers::models))
        .route("/models", get(handlers::models))
        .route("/health", get(handlers::health))
        .route("/provider/budgets", get(handlers::provider_budgets))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    HttpRouter::new()
        .merge(api)
        .route("/health/liveliness", get(handlers::liveliness))
        .route("/health/liveness", get(handlers::liveliness))
        .route("/health/readiness", get(handlers::readiness))
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            handlers::panic_response,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: GatewayOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // Background health checks (when configured) live as long as the server.
    let checks = router.spawn_health_checks();
    // Cooldowns shared by other instances (Redis), while serving.
    let listener_task = router.spawn_cooldown_listener();
    // Strategy statistics shared with other instances (Redis), while serving.
    let load_task = router.spawn_load_exchange();
    // No Nagle: every SSE chunk (and every small response) leaves at once
    // instead of waiting for the client's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let result = axum::serve(listener, app(router.clone(), options))
        .with_graceful_shutdown(shutdown)
        .await;
    // The spans of the last requests (those drained by the graceful
    // shutdown included) are exported before the process ends.
    router.shutdown_traces().await;
    for task in [checks, listener_task, load_task].into_iter().flatten() {
        task.abort();
    }
    result
}

/// A gateway running on a background task.
#[derive(Debug)]
pub struct RunningGateway {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl RunningGateway {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr` (append `/v1` for OpenAI clients).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, waits for in-flight requests, and returns.
    pub async fn shutdown(self) -> io::Result<()> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|e| io::Error::other(format!("gateway task failed: {e}")))?
    }
}

/// Binds `addr` (port 0 picks a free one) and serves on a background task.
pub async fn start(
    addr: SocketAddr,
    router: Router,
    options: GatewayOptions,
) -> io::Result<RunningGateway> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router, options, async move {
        let _ = stopped.await;
    }));
    Ok(RunningGateway { addr, stop, task })
}
