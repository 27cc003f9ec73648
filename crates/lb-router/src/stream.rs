//! Streams that survive faults: usage accounting, and continuation of an
//! answer that broke mid-way by another deployment.
//!
//! When a stream fails after content reached the client (a cut, a reset, a
//! stall past `stream_idle_timeout`), the router asks another deployment of
//! the group (or a fallback group) to continue: the original messages plus
//! the text delivered so far as an assistant prefill. Only the continuation
//! is streamed on, under the original id, so the client sees one answer with
//! one `finish_reason`. When that is impossible, the stream ends with an
//! error event that describes the original failure, and no `[DONE]`.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use lb_core::{
    ChatCompletionChunk, ChatCompletionRequest, ChatMessage, ChunkStream, DeploymentId,
    UpstreamError, Usage,
};
use lb_health::InFlight;
use serde_json::json;

use opentelemetry::KeyValue;

use crate::limits::Held;
use crate::metrics::class_label;
use crate::router::{CallOptions, Op, Output, Router, Target};
use crate::telemetry;

/// The name of the field the final chunk of a continued stream carries.
pub const CONTINUATION_FIELD: &str = "x_lb_continuation";

/// The most text of one answer a stream keeps for a continuation or content
/// capture (2 MiB: above any model's output limit). Past it, the answer
/// cannot be continued and the captured text stops there.
pub(crate) const MAX_KEPT_TEXT: usize = 2 << 20;

/// One stream being served to a client.
pub(crate) struct StreamState {
    pub(crate) router: Router,
    pub(crate) inner: ChunkStream,
    pub(crate) _guard: InFlight,
    pub(crate) held: Option<Held>,
    /// The current upstream attempt's span (traces on).
    pub(crate) attempt_span: Option<opentelemetry::Context>,
    /// The last `finish_reason` seen.
    pub(crate) finish_reason: Option<String>,
    pub(crate) index: usize,
    /// The router asked the upstream for usage the client did not ask for.
    pub(crate) inject: bool,
    pub(crate) usage: Option<Usage>,
    pub(crate) done: bool,
    /// Continuation: the request as the client sent it (router fields taken
    /// out), when continuations are allowed.
    pub(crate) original: Option<ChatCompletionRequest>,
    pub(crate) opts: CallOptions,
    pub(crate) group: Arc<str>,
    pub(crate) deadline: Instant,
    pub(crate) continuations_left: u32,
    /// Text of choice 0 delivered to the client so far, while it may be
    /// needed (see `keeps_text`).
    pub(crate) delivered: String,
    /// Text was delivered that `delivered` does not hold (not kept, or past
    /// [`MAX_KEPT_TEXT`]): the answer can no longer be continued.
    pub(crate) text_lost: bool,
    /// Only choice 0 and plain text so far (tool calls cannot be continued).
    pub(crate) continuable: bool,
    pub(crate) finished: bool,
    pub(crate) first_id: Option<(String, u64)>,
    /// A continuation's first chunk (role only) is not sent again.
    pub(crate) skip_role: bool,
    /// The failure that broke the stream first.
    pub(crate) original_error: Option<UpstreamError>,
    /// (failed deployment, deployment that continued).
    pub(crate) continued: Vec<(DeploymentId, DeploymentId)>,
    /// Tokens delivered before the last continuation (estimated).
    pub(crate) prefill_tokens: u64,
    /// Content chunks delivered so far (about one token each).
    pub(crate) delivered_chunks: u64,
}

/// Whether a chunk only announces the role (the first chunk of a stream).
fn role_only(chunk: &ChatCompletionChunk) -> bool {
    chunk.usage.is_none()
        && !chunk.choices.is_empty()
        && chunk.choices.iter().all(|c| {
            c.finish_reason.is_none()
                && c.content().is_none_or(str::is_empty)
                && c.delta.get("tool_calls").is_none()
        })
}

impl StreamState {
    /// The next chunk for the client.
    pub(crate) async fn next(
        mut self,
    ) -> Option<(Result<ChatCompletionChunk, UpstreamError>, Self)> {
        loop {
            if self.done {
                return None;
            }
            match self.inner.next().await {
                Some(Ok(chunk)) => {
                    if self.skip_role {
                        self.skip_role = false;
                        if role_only(&chunk) {
                            continue;
                        }
                    }
                    if let Some(chunk) = self.pass(chunk) {
                        return Some((Ok(chunk), self));
                    }
                }
                Some(Err(e)) if self.finished && self.continuable => {
                    // The answer was complete (its finish_reason arrived);
                    // what broke afterwards (a reset before [DONE]) loses nothing.
                    tracing::debug!(error = %e, "stream broke after its finish_reason; ending it cleanly");
                    self.done = true;
                    self.settle().await;
                    self.finish_trace(None);
                    return None;
                }
                Some(Err(e)) => {
                    let shortened = self.router.request_shortened(self.index, &self.opts, true);
                    let cooldown = self.router.record_failure(self.index, &e, false, shortened);
                    if let Some(cx) = self.attempt_span.take() {
                        self.router
                            .trace_failure(&cx, self.index, &e, cooldown.as_ref());
                    }
                    let failed = self.router.inner.entries[self.index].deployment.id.clone();
                    tracing::warn!(deployment = %failed, error = %e, "stream failed after its first chunk");
                    self.settle().await;
                    let original = self.original_error.get_or_insert(e).clone();
                    if self.can_continue() {
                        match self.continue_on().await {
                            Ok(by) => {
                                tracing::info!(
                                    failed = %failed,
                                    continued_by = %by,
                                    delivered_chars = self.delivered.len(),
                                    "stream continued by another deployment"
                                );
                                self.router.inner.metrics.continued.increment(1);
                                if let Some(cx) = &self.opts.trace {
                                    telemetry::event(
                                        cx,
                                        "lb.stream_continuation",
                                        vec![
                                            KeyValue::new(
                                                "lb.failed_deployment",
                                                failed.to_string(),
                                            ),
                                            KeyValue::new("lb.continued_by", by.to_string()),
                                            KeyValue::new(
                                                "lb.delivered_chars",
                                                i64::try_from(self.delivered.len())
                                                    .unwrap_or(i64::MAX),
                                            ),
                                        ],
                                    );
                                }
                                self.continued.push((failed, by));
                                continue;
                            }
                            Err(why) => {
                                self.router.inner.metrics.not_continued.increment(1);
                                tracing::warn!(error = %why, "stream continuation failed; ending the stream with the original error");
                            }
                        }
                    } else if self.text_lost && self.continuation_allowed() {
                        self.router.inner.metrics.not_continued.increment(1);
                        tracing::warn!(
                            delivered_chunks = self.delivered_chunks,
                            "stream cannot be continued: no deployment accepts a prefill, or the answer passed the kept-text limit; ending the stream with the original error"
                        );
                    }
                    self.done = true;
                    self.finish_trace(Some(&original));
                    return Some((Err(original), self));
                }
                None => {
                    self.done = true;
                    self.settle().await;
                    self.finish_trace(None);
                    return None;
                }
            }
        }
    }

    /// Bookkeeping of one upstream chunk; `None` when the client must not see it.
    fn pass(&mut self, mut chunk: ChatCompletionChunk) -> Option<ChatCompletionChunk> {
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        let keep = self.keeps_text();
        for c in &chunk.choices {
            if c.index != 0
                || c.delta.get("tool_calls").is_some()
                || c.delta.get("function_call").is_some()
            {
                self.continuable = false;
            }
            if let Some(text) = c.content() {
                if !text.is_empty() {
                    if keep && !self.text_lost && self.delivered.len() + text.len() <= MAX_KEPT_TEXT
                    {
                        self.delivered.push_str(text);
                    } else {
                        self.text_lost = true;
                    }
                    // Upstreams send about one token per content chunk.
                    self.delivered_chunks += 1;
                }
            }
            if let Some(r) = &c.finish_reason {
                self.finished = true;
                if self.opts.trace.is_some() {
                    self.finish_reason = Some(r.clone());
                }
            }
        }
        if !self.keeps_text() && self.delivered.capacity() > 0 {
            self.delivered = String::new();
        }
        match &self.first_id {
            None => {
                for cx in [&self.attempt_span, &self.opts.trace].into_iter().flatten() {
                    let mut attrs = Vec::with_capacity(2);
                    telemetry::response_model(&mut attrs, &chunk.model, &chunk.id);
                    telemetry::set(cx, attrs);
                }
                self.first_id = Some((chunk.id.clone(), chunk.created));
            }
            Some((id, created)) if !self.continued.is_empty() => {
                // One answer: the continuation speaks under the original id.
                chunk.id = id.clone();
                chunk.created = *created;
            }
            Some(_) => {}
        }
        if let (Some((failed, by)), true) = (self.continued.last(), chunk.finish_reason().is_some())
        {
            chunk.extra.insert(
                CONTINUATION_FIELD.to_owned(),
                json!({
                    "continued_by": by.as_str(),
                    "failed_deployment": failed.as_str(),
                    "reason": self.original_error.as_ref().map(|e| e.message.clone()),
                    "continuations": self.continued.len(),
                }),
            );
        }
        if self.inject {
            if chunk.choices.is_empty() && chunk.usage.is_some() {
                return None;
            }
            chunk.usage = None;
        } else if let Some(u) = chunk.usage.as_mut() {
            if !self.continued.is_empty() {
                self.combine(u);
            }
            if let Some(cost) = self.router.cost_of(self.index, u) {
                u.extra.insert("cost".to_owned(), cost.into());
            }
        }
        Some(chunk)
    }

    /// The usage of the whole answer from the last upstream's: its prompt
    /// held the text delivered before (the prefill), which the client got
    /// as completion.
    fn combine(&self, u: &mut Usage) {
        u.prompt_tokens = u.prompt_tokens.saturating_sub(self.prefill_tokens);
        u.completion_tokens = u.completion_tokens.saturating_add(self.prefill_tokens);
        u.total_tokens = u.prompt_tokens.saturating_add(u.completion_tokens);
    }

    /// Whether the text delivered so far is still needed: to continue the
    /// answer elsewhere, or to record it on the request's span (content
    /// capture). Otherwise it is not kept (a long answer would hold it all).
    fn keeps_text(&self) -> bool {
        (self.continuation_allowed() && !self.text_lost && self.router.inner.any_prefill)
            || (self.opts.trace.is_some()
                && self
                    .router
                    .inner
                    .telemetry
                    .as_ref()
                    .is_some_and(|t| t.capture()))
    }

    /// Whether this answer may still be continued elsewhere, were its text
    /// at hand: continuations left, one choice of plain text, not finished.
    fn continuation_allowed(&self) -> bool {
        self.continuations_left > 0 && self.original.is_some() && self.continuable && !self.finished
    }

    fn can_continue(&self) -> bool {
        self.continuation_allowed()
            && !self.text_lost
            && self.router.inner.clock.now() < self.deadline
    }

    /// Settles the current upstream's admission with its usage (or the estimate).
    async fn settle(&mut self) {
        if let Some(held) = self.held.take() {
            let cost = self
                .usage
                .as_ref()
                .and_then(|u| self.router.cost_of(self.index, u));
            if let Some(u) = &self.usage {
                self.router.inner.metrics.usage(self.index, u, cost);
            }
            held.settle(self.usage.as_ref(), cost).await;
        }
        if let Some(cx) = self.attempt_span.take() {
            let mut attrs = Vec::new();
            if let Some(u) = &self.usage {
                telemetry::usage(&mut attrs, u);
                telemetry::cost(&mut attrs, self.router.cost_of(self.index, u));
            }
            telemetry::end_with(&cx, attrs);
        }
    }

    /// Ends the request's span: what the client got, and how it ended.
    fn finish_trace(&mut self, error: Option<&UpstreamError>) {
        let (Some(cx), Some(t)) = (self.opts.trace.take(), &self.router.inner.telemetry) else {
            return;
        };
        let mut attrs = Vec::with_capacity(8);
        if let Some(mut u) = self.usage.clone() {
            self.combine(&mut u);
            telemetry::usage(&mut attrs, &u);
        }
        t.stream_output(&mut attrs, &self.delivered, self.finish_reason.as_deref());
        attrs.push(KeyValue::new(
            "lb.stream_continuations",
            i64::try_from(self.continued.len()).unwrap_or(i64::MAX),
        ));
        // `lb.deployment.id` stays the deployment that started the answer.
        if let Some((_, by)) = self.continued.last() {
            attrs.push(KeyValue::new("lb.continued_by", Arc::clone(by.as_arc())));
        }
        telemetry::set(&cx, attrs);
        if let Some(e) = error {
            telemetry::failed(&cx, class_label(e.class), e.status, &e.message, t.capture());
        }
        telemetry::end(&cx);
    }

    /// Asks another deployment (of the group, else a fallback group) to
    /// continue from the text delivered so far; swaps the stream in.
    async fn continue_on(&mut self) -> Result<DeploymentId, String> {
        let Some(original) = &self.original else {
            return Err("continuation is off".to_owned());
        };
        let mut req = original.clone();
        // With text delivered, the next deployment continues it (a prefill);
        // with only the role sent, it simply answers from the start.
        let prefill = !self.delivered.is_empty();
        if prefill {
            req.messages
                .push(ChatMessage::assistant(self.delivered.clone()));
        }
        // Never back to a deployment that broke this stream.
        self.opts.exclude.push(self.index);
        let mut opts = self.opts.clone();
        opts.require_prefill = prefill;
        opts.continuation = true;
        let remaining = self
            .deadline
            .saturating_duration_since(self.router.inner.clock.now());
        opts.timeout = Some(opts.timeout.map_or(remaining, |t| t.min(remaining)));
        opts.stream_timeout = Some(opts.stream_timeout.map_or(remaining, |t| t.min(remaining)));
        // The answer's length limit covers what was already delivered.
        let used = u32::try_from(self.delivered_chunks).unwrap_or(u32::MAX);
        if let Some(m) = req.max_tokens.as_mut() {
            *m = m.saturating_sub(used).max(1);
        }
        if let Some(m) = req.max_completion_tokens.as_mut() {
            *m = m.saturating_sub(used).max(1);
        }
        let (out, meta, hold) = self
            .router
            .call(
                Target::Group(Arc::clone(&self.group)),
                &opts,
                Op::Stream(&req),
            )
            .await
            .map_err(|e| e.to_string())?;
        let Output::Stream(stream) = out else {
            return Err("the provider answered a different kind of call".to_owned());
        };
        self.continuations_left -= 1;
        self.prefill_tokens = self.delivered_chunks;
        self.inner = stream;
        self._guard = hold.guard;
        self.held = hold.held;
        self.attempt_span = hold.span;
        self.index = meta.index;
        self.usage = None;
        self.skip_role = true;
        Ok(meta.deployment_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of a one-deployment group of `provider` (`openai` cannot
    /// continue a prefill; `openai_like` can).
    fn state_of(provider: &str, continuations: u32) -> StreamState {
        let router = Router::from_yaml(&format!(
            "model_list:\n  - model_name: g\n    litellm_params: {{model: {provider}/m, api_base: \"http://127.0.0.1:9\"}}\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let guard = router.inner.entries[0].stats.start();
        let deadline = router.inner.clock.now();
        let req: ChatCompletionRequest = serde_json::from_value(
            json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        StreamState {
            router,
            inner: Box::pin(futures_util::stream::empty()),
            _guard: guard,
            held: None,
            attempt_span: None,
            finish_reason: None,
            index: 0,
            inject: false,
            usage: None,
            done: false,
            original: (continuations > 0).then_some(req),
            opts: CallOptions::default(),
            group: Arc::from("g"),
            deadline,
            continuations_left: continuations,
            delivered: String::new(),
            text_lost: false,
            continuable: true,
            finished: false,
            first_id: None,
            skip_role: false,
            original_error: None,
            continued: Vec::new(),
            prefill_tokens: 0,
            delivered_chunks: 0,
        }
    }

    fn chunk(delta: serde_json::Value) -> ChatCompletionChunk {
        serde_json::from_value(json!({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": null}]
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn state(continuations: u32) -> StreamState {
        state_of("openai_like", continuations)
    }

    #[test]
    fn delivered_text_is_kept_only_while_it_can_serve_a_continuation() {
        let mut s = state(1);
        for word in ["Hello", " world"] {
            assert!(s.pass(chunk(json!({"content": word}))).is_some());
        }
        assert_eq!(s.delivered, "Hello world", "kept for a continuation");
        // A tool call cannot be continued: the text is let go.
        s.pass(chunk(
            json!({"tool_calls": [{"index": 0, "id": "t", "type": "function",
            "function": {"name": "f", "arguments": ""}}]}),
        ));
        s.pass(chunk(json!({"content": " more"})));
        assert_eq!((s.delivered.as_str(), s.delivered.capacity()), ("", 0));

        // No continuations allowed: nothing is kept, tokens are still counted.
        let mut s = state(0);
        for word in ["Hello", " world", "!"] {
            assert!(s.pass(chunk(json!({"content": word}))).is_some());
        }
        assert_eq!((s.delivered.as_str(), s.delivered.capacity()), ("", 0));
        assert_eq!(s.delivered_chunks, 3);

        // No deployment accepts a prefill: the text could never be used, so
        // it is not kept, and the answer cannot be continued once text went.
        let mut s = state_of("openai", 1);
        assert!(!s.router.inner.any_prefill);
        assert!(s.pass(chunk(json!({"role": "assistant"}))).is_some());
        assert!(
            !s.text_lost,
            "only the role went: another may answer afresh"
        );
        assert!(s.pass(chunk(json!({"content": "Hello"}))).is_some());
        assert_eq!((s.delivered.as_str(), s.delivered.capacity()), ("", 0));
        assert!(s.text_lost && !s.can_continue());
    }

    #[test]
    fn absurd_upstream_usage_saturates_instead_of_overflowing() {
        let mut s = state(1);
        s.prefill_tokens = 5;
        let mut u: Usage = serde_json::from_value(json!({
            "prompt_tokens": 1e20, "completion_tokens": 1e20, "total_tokens": 0
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        s.combine(&mut u);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (u64::MAX - 5, u64::MAX, u64::MAX)
        );
    }

    #[test]
    fn an_answer_past_the_kept_text_limit_is_let_go_and_not_continued() {
        let mut s = state(1);
        s.deadline = s.router.inner.clock.now() + std::time::Duration::from_secs(60);
        let piece = "x".repeat(64 << 10);
        for _ in 0..MAX_KEPT_TEXT / piece.len() {
            assert!(s.pass(chunk(json!({"content": piece}))).is_some());
        }
        assert_eq!(s.delivered.len(), MAX_KEPT_TEXT, "kept up to the limit");
        assert!(s.can_continue());
        // One byte more: the text is no longer whole, so it is let go.
        assert!(s.pass(chunk(json!({"content": "y"}))).is_some());
        assert_eq!((s.delivered.as_str(), s.delivered.capacity()), ("", 0));
        assert!(s.text_lost && !s.can_continue());
        // Later text is not kept either (a gap would corrupt a prefill).
        s.pass(chunk(json!({"content": "z"})));
        assert_eq!(s.delivered.capacity(), 0);
        assert_eq!(s.delivered_chunks, 34);
    }
}
