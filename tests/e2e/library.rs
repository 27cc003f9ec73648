//! The router used directly as a library against lb-mock.

use lb_mock::{Fault, MockServer};
use lb_router::{
    ChatCompletionRequest, ChatMessage, Deployment, EmbeddingRequest, Router, RouterError, Secret,
};

async fn two_deployments() -> (MockServer, Router) {
    let mock = MockServer::start(2).await.unwrap();
    let mut builder = Router::builder()
        .seed(3)
        .clock(lb_router::ManualClock::new().shared());
    for (i, d) in mock.deployments().iter().enumerate() {
        builder = builder.deployment(
            Deployment::new(format!("d{i}"), "chat", "openai", "mock-model")
                .with_api_base(d.base_url())
                .with_api_key(Secret::new("k")),
        );
    }
    (mock, builder.build().unwrap())
}

#[tokio::test]
async fn completion_reports_the_deployment_that_answered() {
    let (mock, router) = two_deployments().await;
    let req = ChatCompletionRequest::new("chat", vec![ChatMessage::user("hi")]);
    let routed = router.completion(req).await.unwrap();
    let idx: usize = routed.meta.deployment_id.as_str()[1..].parse().unwrap();
    assert_eq!(mock.deployment(idx).chat_requests(), 1);
    assert_eq!(mock.deployment(1 - idx).chat_requests(), 0);
    assert_eq!(routed.meta.api_base, mock.deployment(idx).base_url());
    assert_eq!(&*routed.meta.model_group, "chat");
    assert_eq!(routed.meta.attempts, 1);
    assert_eq!(routed.response.usage.unwrap().completion_tokens, 16);
}

#[tokio::test]
async fn retry_moves_to_the_next_ranked_deployment() {
    let (mock, router) = two_deployments().await;
    mock.deployment(0).fail_next(2, Fault::status(500));
    mock.deployment(1).fail_next(2, Fault::status(500));
    let mut req = ChatCompletionRequest::new("chat", vec![ChatMessage::user("hi")]);
    req.extra.insert("num_retries".into(), 1.into());
    let err = router.completion(req).await.unwrap_err();
    let RouterError::Upstream { attempts, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(attempts.len(), 2, "one retry: the next deployment");
    assert_ne!(attempts[0].deployment, attempts[1].deployment);
    assert_eq!(err.status(), 500);
    // num_retries 2 (the default): both fail once more, and the third attempt
    // goes back to the last one after a backoff, which now answers.
    let ok = router
        .completion(ChatCompletionRequest::new(
            "chat",
            vec![ChatMessage::user("hi")],
        ))
        .await
        .unwrap();
    assert_eq!((ok.meta.attempts, ok.meta.retries), (3, 2));
    assert_eq!(
        mock.deployment(0).requests() + mock.deployment(1).requests(),
        5
    );
}

#[tokio::test]
async fn stats_count_in_flight_and_outcomes() {
    let (mock, router) = two_deployments().await;
    mock.deployment(0).fail_next(1, Fault::status(503));
    mock.deployment(1).fail_next(1, Fault::status(503));
    let req = || ChatCompletionRequest::new("chat", vec![ChatMessage::user("hi")]);
    for _ in 0..3 {
        router.completion(req()).await.unwrap();
    }
    let stats = router.deployment_stats();
    let failures: u64 = stats.iter().map(|(_, s)| s.failures).sum();
    let successes: u64 = stats.iter().map(|(_, s)| s.successes).sum();
    assert_eq!((failures, successes), (2, 3));
    assert!(stats.iter().all(|(_, s)| s.in_flight == 0));
}

#[tokio::test]
async fn embedding_and_stream_from_the_library() {
    let (_mock, router) = two_deployments().await;
    let emb = router
        .embedding(EmbeddingRequest::new("chat", vec!["x", "y"]))
        .await
        .unwrap();
    assert_eq!(emb.response.data.len(), 2);
    use futures_util::StreamExt;
    let routed = router
        .completion_stream(ChatCompletionRequest::new(
            "chat",
            vec![ChatMessage::user("hi")],
        ))
        .await
        .unwrap();
    let stats_during = router.deployment_stats();
    assert_eq!(
        stats_during.iter().map(|(_, s)| s.in_flight).sum::<u64>(),
        1,
        "held while streaming"
    );
    let chunks: Vec<_> = routed.stream.collect().await;
    assert!(chunks.iter().all(Result::is_ok));
    assert_eq!(chunks.len(), 18);
    assert_eq!(
        router
            .deployment_stats()
            .iter()
            .map(|(_, s)| s.in_flight)
            .sum::<u64>(),
        0
    );
}

#[tokio::test]
async fn unknown_model_names_the_groups() {
    let (_mock, router) = two_deployments().await;
    let err = router
        .completion(ChatCompletionRequest::new(
            "nope",
            vec![ChatMessage::user("hi")],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(
        err.to_string().contains("available model groups: chat"),
        "{err}"
    );
}

/// A strategy that returns garbage: out-of-range and repeated indices.
#[derive(Debug)]
struct Careless;

impl lb_router::Strategy for Careless {
    fn name(&self) -> &'static str {
        "careless"
    }

    fn rank(
        &self,
        _call: &lb_router::CallContext,
        _candidates: &[lb_router::Candidate<'_>],
        _rng: &mut dyn rand::RngCore,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        out.extend([7, 1, 1, 0, 99]);
    }
}

#[tokio::test]
async fn a_custom_strategy_cannot_break_the_call_loop() {
    let mock = MockServer::start(2).await.unwrap();
    let mut builder = Router::builder().strategy(Box::new(Careless));
    for (i, d) in mock.deployments().iter().enumerate() {
        builder = builder.deployment(
            Deployment::new(format!("d{i}"), "chat", "openai", "m").with_api_base(d.base_url()),
        );
    }
    let router = builder.build().unwrap();
    mock.deployment(1).fail_next(1, Fault::status(500));
    let routed = router
        .completion(ChatCompletionRequest::new(
            "chat",
            vec![ChatMessage::user("hi")],
        ))
        .await
        .unwrap();
    // d1 (ranked first) failed once; the repeat and the out-of-range indices were dropped; d0 served.
    assert_eq!(routed.meta.deployment_id.as_str(), "d0");
    assert_eq!(routed.meta.attempts, 2);
    assert_eq!(mock.deployment(1).requests(), 1, "never tried twice");
}

#[tokio::test]
async fn metrics_snapshot_gives_embedders_the_same_counters_as_the_exposition() {
    let (mock, router) = two_deployments().await;
    mock.deployment(0).fail_next(1, Fault::status(500));
    mock.deployment(1).fail_next(1, Fault::status(500));
    // Two attempts fail (one per deployment), the third answers.
    let ok = router
        .completion(ChatCompletionRequest::new(
            "chat",
            vec![ChatMessage::user("hi")],
        ))
        .await
        .unwrap();
    assert_eq!(ok.meta.attempts, 3);
    let usage = ok.response.usage.unwrap();
    let snap = router.metrics_snapshot();
    assert_eq!(snap.deployments.len(), 2);
    let requests: u64 = snap.deployments.iter().map(|d| d.requests).sum();
    assert_eq!(requests, 3);
    for d in &snap.deployments {
        assert_eq!(
            d.failures,
            vec![(lb_router::ErrorClass::ServerError, 1)],
            "{}",
            d.id
        );
    }
    let answered = snap
        .deployments
        .iter()
        .find(|d| d.id == ok.meta.deployment_id)
        .unwrap();
    assert_eq!(answered.successes, 1);
    assert_eq!(answered.input_tokens, usage.prompt_tokens);
    assert_eq!(answered.output_tokens, usage.completion_tokens);
    assert_eq!(snap.groups.len(), 1);
    let g = &snap.groups[0];
    assert_eq!(&*g.model_group, "chat");
    assert_eq!((g.successes, g.failures, g.retries), (1, 0, 2));
    // The exposition says the same.
    let text = router.metrics_text().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("lb_retries_total{requested_model=\"chat\"} 2")),
        "{text}"
    );
}
