//! The server, its deployments and their shared state.

use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::handler::Handler;
use axum::serve::ListenerExt;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::behavior::{Behavior, Fault};
use crate::text::{CannedText, splitmix64, unit_f64};

/// How long [`MockServer::shutdown`] waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A behaviour together with the text precomputed from it.
#[derive(Debug)]
pub(crate) struct BehaviorState {
    pub(crate) behavior: Behavior,
    pub(crate) text: CannedText,
}

impl BehaviorState {
    fn new(behavior: Behavior) -> BehaviorState {
        let text = CannedText::new(behavior.completion_tokens);
        BehaviorState { behavior, text }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) chat: AtomicU64,
    pub(crate) embeddings: AtomicU64,
    pub(crate) successes: AtomicU64,
    pub(crate) faults: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) prefill: AtomicU64,
}

/// State shared by a deployment's handles and its server task.
pub(crate) struct Shared {
    pub(crate) addr: SocketAddr,
    pub(crate) state: ArcSwap<BehaviorState>,
    script: Mutex<VecDeque<Fault>>,
    /// Length of `script`, read before touching the mutex.
    script_len: AtomicUsize,
    pub(crate) counters: Counters,
    /// Source of the `chatcmpl-mock-<n>` ids.
    pub(crate) next_id: AtomicU64,
    /// Position of the next draw in the seeded sequence.
    draw_seq: AtomicU64,
    pub(crate) recording: AtomicBool,
    recorded: Mutex<Vec<RecordedRequest>>,
    /// Becomes `true` (or closed) when the deployment shuts down.
    pub(crate) shutdown: watch::Receiver<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Pops the front of the script, touching the mutex only when it is non-empty.
    pub(crate) fn next_scripted(&self) -> Option<Fault> {
        if self.script_len.load(Relaxed) == 0 {
            return None;
        }
        let mut q = lock(&self.script);
        let f = q.pop_front();
        self.script_len.store(q.len(), Relaxed);
        f
    }

    fn push_script(&self, faults: impl IntoIterator<Item = Fault>) {
        let mut q = lock(&self.script);
        q.extend(faults);
        self.script_len.store(q.len(), Relaxed);
    }

    pub(crate) fn clear_script(&self) {
        let mut q = lock(&self.script);
        q.clear();
        self.script_len.store(0, Relaxed);
    }

    pub(crate) fn script_len(&self) -> usize {
        self.script_len.load(Relaxed)
    }

    /// The failure draw in `[0, 1)` and the jitter of the next request.
    pub(crate) fn draw(&self, b: &Behavior) -> (f64, Duration) {
        if b.failure_rate <= 0.0 && b.jitter.is_zero() {
            return (1.0, Duration::ZERO);
        }
        let seq = self.draw_seq.fetch_add(1, Relaxed);
        let base = splitmix64(b.seed ^ splitmix64(seq));
        let u_fail = unit_f64(splitmix64(base ^ 0x5EED_0001));
        let jitter = if b.jitter.is_zero() {
            Duration::ZERO
        } else {
            b.jitter.mul_f64(unit_f64(splitmix64(base ^ 0x5EED_0002)))
        };
        (u_fail, jitter)
    }

    pub(crate) fn record(&self, r: RecordedRequest) {
        lock(&self.recorded).push(r);
    }

    pub(crate) fn set_behavior(&self, b: Behavior) {
        self.state.store(Arc::new(BehaviorState::new(b)));
        self.draw_seq.store(0, Relaxed);
    }

    pub(crate) fn reset(&self) {
        let c = &self.counters;
        for a in [
            &c.requests,
            &c.chat,
            &c.embeddings,
            &c.successes,
            &c.faults,
            &c.prefill,
        ] {
            a.store(0, Relaxed);
        }
        self.draw_seq.store(0, Relaxed);
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            requests: c.requests.load(Relaxed),
            chat_requests: c.chat.load(Relaxed),
            embedding_requests: c.embeddings.load(Relaxed),
            successes: c.successes.load(Relaxed),
            faults: c.faults.load(Relaxed),
            in_flight: c.in_flight.load(Relaxed),
            prefill_requests: c.prefill.load(Relaxed),
        }
    }

    pub(crate) fn clear_all(&self) {
        self.reset();
        self.clear_script();
        lock(&self.recorded).clear();
    }

    pub(crate) fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.push_script(faults);
    }
}

/// Counts the request as in flight until dropped; owns the handler's `Arc`.
pub(crate) struct InFlight(Arc<Shared>);

impl InFlight {
    pub(crate) fn enter(shared: Arc<Shared>) -> InFlight {
        shared.counters.in_flight.fetch_add(1, Relaxed);
        InFlight(shared)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.counters.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A snapshot of a deployment's counters (also served by `GET /__mock/stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// See [`MockDeployment::requests`].
    pub requests: u64,
    /// See [`MockDeployment::chat_requests`].
    pub chat_requests: u64,
    /// See [`MockDeployment::embedding_requests`].
    pub embedding_requests: u64,
    /// See [`MockDeployment::successes`].
    pub successes: u64,
    /// See [`MockDeployment::faults`].
    pub faults: u64,
    /// See [`MockDeployment::in_flight`].
    pub in_flight: u64,
    /// See [`MockDeployment::prefill_requests`].
    pub prefill_requests: u64,
}

/// One request as received by a deployment (see
/// [`MockDeployment::record_requests`]).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The HTTP method, e.g. `"POST"`.
    pub method: String,
    /// The path including the query, e.g.
    /// `"/openai/deployments/gpt/chat/completions?api-version=2024-06-01"`.
    pub path: String,
    /// The headers as (lowercase name, value), in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body as JSON: `Null` when empty, a JSON string holding the raw
    /// text when it is not valid JSON.
    pub body: serde_json::Value,
    /// When the request arrived.
    pub at: Instant,
}

impl RecordedRequest {
    /// The value of the first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Signals the deployment's shutdown when the last handle is dropped.
struct Liveness {
    tx: watch::Sender<bool>,
}

impl Drop for Liveness {
    fn drop(&mut self) {
        self.tx.send_replace(true);
    }
}

/// One mock deployment: a port with its own behaviour, script and counters.
///
/// Cheap to clone (two `Arc`s). The port keeps serving while the
/// [`MockServer`] or any clone of this handle is alive; it shuts down when
/// the last of them is dropped or on [`MockServer::shutdown`].
#[derive(Clone)]
pub struct MockDeployment {
    shared: Arc<Shared>,
    live: Arc<Liveness>,
}

impl fmt::Debug for MockDeployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockDeployment")
            .field("addr", &self.shared.addr)
            .field("stats", &self.shared.stats())
            .finish()
    }
}

impl MockDeployment {
    /// The bound address (`127.0.0.1:PORT` for [`MockServer::start`]).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The OpenAI base URL, `"http://127.0.0.1:PORT/v1"`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.shared.addr)
    }

    /// The root URL, `"http://127.0.0.1:PORT"` (for Azure-style
    /// `/openai/deployments/...` paths).
    pub fn root_url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// Replaces the default behaviour (lock-free for requests) and restarts
    /// the seeded draw sequence.
    pub fn set_behavior(&self, b: Behavior) {
        self.shared.set_behavior(b);
    }

    /// Changes the default behaviour in place: `d.update_behavior(|b| b.latency = ms(50))`.
    pub fn update_behavior(&self, f: impl FnOnce(&mut Behavior)) {
        let mut b = self.behavior();
        f(&mut b);
        self.set_behavior(b);
    }

    /// The current default behaviour.
    pub fn behavior(&self) -> Behavior {
        self.shared.state.load().behavior.clone()
    }

    /// Queues explicit outcomes for the next chat/embedding requests, in
    /// order (one per request; once the queue is empty the default
    /// behaviour applies again).
    pub fn push_script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.push_script(faults);
    }

    /// Queues `n` copies of `fault` (see [`push_script`](Self::push_script)).
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.shared.push_script(std::iter::repeat_n(fault, n));
    }

    /// Drops every queued outcome.
    pub fn clear_script(&self) {
        self.shared.clear_script();
    }

    /// Number of queued outcomes not yet consumed.
    pub fn script_len(&self) -> usize {
        self.shared.script_len()
    }

    /// Requests received on this port: chat, embeddings and anything under
    /// `/v1` or `/openai` (including unknown paths there), counted when the
    /// request arrives. Control requests (`/__mock/...`) are not counted.
    pub fn requests(&self) -> u64 {
        self.shared.counters.requests.load(Relaxed)
    }

    /// Chat completion requests received (valid or not).
    pub fn chat_requests(&self) -> u64 {
        self.shared.counters.chat.load(Relaxed)
    }

    /// Embedding requests received (valid or not).
    pub fn embedding_requests(&self) -> u64 {
        self.shared.counters.embeddings.load(Relaxed)
    }

    /// Requests answered with a 2xx (counted when the response headers are
    /// produced; a stream cut by [`Fault::CutStreamAfter`] is a fault; a
    /// stream stalled by [`Fault::StallAfter`] is counted when it
    /// completes).
    pub fn successes(&self) -> u64 {
        self.shared.counters.successes.load(Relaxed)
    }

    /// Requests answered with an injected fault (scripted or drawn):
    /// error statuses, [`Fault::Hang`] (counted when it starts hanging), cut
    /// streams, and prefills refused by [`Behavior::reject_prefill`].
    pub fn faults(&self) -> u64 {
        self.shared.counters.faults.load(Relaxed)
    }

    /// Chat requests whose last message has role `"assistant"` (assistant
    /// prefills, see the crate docs), counted when the body parsed, whatever
    /// the outcome (continued, answered in full, refused by
    /// [`Behavior::reject_prefill`], or failed by a fault).
    pub fn prefill_requests(&self) -> u64 {
        self.shared.counters.prefill.load(Relaxed)
    }

    /// Requests currently being handled (a stream until its last chunk).
    pub fn in_flight(&self) -> u64 {
        self.shared.counters.in_flight.load(Relaxed)
    }

    /// All counters at once.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Zeroes the counters (not `in_flight`, which is a gauge) and restarts
    /// the seeded draw sequence. The script and recording are kept.
    pub fn reset_counts(&self) {
        self.shared.reset();
    }

    /// Turns recording of every counted request on or off (off by default;
    /// it costs a body parse and an allocation per request).
    pub fn record_requests(&self, on: bool) {
        self.shared.recording.store(on, Relaxed);
    }

    /// A copy of the requests recorded so far, in arrival order.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.recorded).clone()
    }

    /// Takes the requests recorded so far, leaving the record empty.
    pub fn take_recorded(&self) -> Vec<RecordedRequest> {
        std::mem::take(&mut *lock(&self.shared.recorded))
    }

    fn signal_shutdown(&self) {
        self.live.tx.send_replace(true);
    }
}

/// A set of mock deployments, one loopback port each, served by tasks on
/// the tokio runtime that started them.
///
/// Prefer [`shutdown`](Self::shutdown) at the end of a test. Dropping the
/// server instead stops every port none of whose [`MockDeployment`] clones
/// is still alive (without waiting); ports whose handles were cloned out
/// keep serving until those clones are dropped too.
pub struct MockServer {
    deployments: Vec<MockDeployment>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for MockServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.deployments).finish()
    }
}

impl MockServer {
    /// Binds `n` listeners on `127.0.0.1:0`, each a separate deployment,
    /// served by tokio tasks on the current runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime (like `tokio::spawn`).
    pub async fn start(n: usize) -> std::io::Result<MockServer> {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self::start_on(std::iter::repeat_n(any, n)).await
    }

    /// Like [`start`](Self::start) with given addresses (e.g. fixed ports
    /// for the demo), one deployment each.
    pub async fn start_on(
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> std::io::Result<MockServer> {
        let mut deployments = Vec::new();
        let mut tasks = Vec::new();
        for addr in addrs {
            let listener = TcpListener::bind(addr).await?;
            let addr = listener.local_addr()?;
            let (tx, rx) = watch::channel(false);
            let shared = Arc::new(Shared {
                addr,
                state: ArcSwap::from_pointee(BehaviorState::new(Behavior::default())),
                script: Mutex::new(VecDeque::new()),
                script_len: AtomicUsize::new(0),
                counters: Counters::default(),
                next_id: AtomicU64::new(1),
                draw_seq: AtomicU64::new(0),
                recording: AtomicBool::new(false),
                recorded: Mutex::new(Vec::new()),
                shutdown: rx.clone(),
            });
            let listener = listener.tap_io(|tcp| {
                // Small frames (stream chunks) must not wait for Nagle.
                let _ = tcp.set_nodelay(true);
            });
            let service = crate::handler::handle
                .with_state(Arc::clone(&shared))
                .into_make_service();
            let mut signal = rx;
            let serve = axum::serve(listener, service).with_graceful_shutdown(async move {
                // Err means every handle is gone: shut down too.
                let _ = signal.wait_for(|down| *down).await;
            });
            tasks.push(tokio::spawn(async move {
                let _ = serve.await;
            }));
            deployments.push(MockDeployment {
                shared,
                live: Arc::new(Liveness { tx }),
            });
        }
        Ok(MockServer { deployments, tasks })
    }

    /// The `i`-th deployment.
    ///
    /// # Panics
    /// If `i >= self.deployments().len()`; see [`get`](Self::get).
    pub fn deployment(&self, i: usize) -> &MockDeployment {
        &self.deployments[i]
    }

    /// The `i`-th deployment, if any.
    pub fn get(&self, i: usize) -> Option<&MockDeployment> {
        self.deployments.get(i)
    }

    /// All deployments, in port-binding order.
    pub fn deployments(&self) -> &[MockDeployment] {
        &self.deployments
    }

    /// Number of deployments.
    pub fn len(&self) -> usize {
        self.deployments.len()
    }

    /// Whether the server has no deployment.
    pub fn is_empty(&self) -> bool {
        self.deployments.is_empty()
    }

    /// The base URLs (`http://127.0.0.1:PORT/v1`) of all deployments.
    pub fn base_urls(&self) -> Vec<String> {
        self.deployments
            .iter()
            .map(MockDeployment::base_url)
            .collect()
    }

    /// Stops accepting and closes all listeners, gracefully: in-flight
    /// responses end early (delays are cut short, hanging requests get a
    /// 503, streams are aborted) and idle connections are closed. Waits at
    /// most 5 s for the connections to finish.
    pub async fn shutdown(self) {
        for d in &self.deployments {
            d.signal_shutdown();
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, task).await;
        }
    }
}
