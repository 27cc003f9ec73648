//! The OTLP collector over real loopback HTTP.

// Test helpers (outside #[test] fns) unwrap freely too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lb_mock::OtlpCollector;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;

fn span(n: u8) -> Span {
    Span {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        name: format!("chat m-{n}"),
        kind: 2,
        attributes: vec![KeyValue {
            key: "gen_ai.request.model".to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("m".to_owned())),
            }),
        }],
        ..Span::default()
    }
}

/// Two resources, three scopes, `1 + 2 + 3` spans.
fn request() -> Vec<u8> {
    let scope = |spans: Vec<Span>| ScopeSpans {
        spans,
        ..ScopeSpans::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                scope_spans: vec![scope(vec![span(1)]), scope(vec![span(2), span(3)])],
                ..ResourceSpans::default()
            },
            ResourceSpans {
                scope_spans: vec![scope(vec![span(4), span(5), span(6)])],
                ..ResourceSpans::default()
            },
        ],
    }
    .encode_to_vec()
}

async fn post(c: &OtlpCollector, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/v1/traces", c.endpoint()))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn counting_and_keeping_collectors_count_the_same_spans() {
    let counting = OtlpCollector::start_counting().await.unwrap();
    let keeping = OtlpCollector::start().await.unwrap();
    for c in [&counting, &keeping] {
        assert_eq!(post(c, request()).await, 200);
        assert_eq!(post(c, request()).await, 200);
        assert_eq!(c.span_count(), 12);
        assert_eq!(c.requests_by_encoding(), (2, 0));
    }
    assert!(
        counting.spans().is_empty(),
        "the counting collector keeps nothing"
    );
    let kept = keeping.spans();
    assert_eq!(kept.len(), 12);
    assert_eq!(kept[5].name, "chat m-6");
}

#[tokio::test]
async fn a_body_that_is_not_an_export_request_is_a_400() {
    let counting = OtlpCollector::start_counting().await.unwrap();
    let mut bad = request();
    bad.truncate(bad.len() - 3);
    assert_eq!(post(&counting, bad).await, 400);
    assert_eq!(counting.span_count(), 0);
}
