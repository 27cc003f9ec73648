//! The gateway as a real OpenAI client crate sees it.

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions,
    CreateChatCompletionRequestArgs,
};
use async_openai::types::embeddings::CreateEmbeddingRequestArgs;
use futures_util::StreamExt;
use lb_e2e::Harness;

fn client(h: &Harness, key: &str) -> Client<OpenAIConfig> {
    Client::with_config(OpenAIConfig::new().with_api_base(h.v1()).with_api_key(key))
}

fn request(stream: bool) -> async_openai::types::chat::CreateChatCompletionRequest {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model("gpt-4o")
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("hello there")
            .build()
            .unwrap()
            .into()]);
    if stream {
        args.stream_options(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        });
    }
    args.build().unwrap()
}

#[tokio::test]
async fn chat_completion_through_openai_client() {
    let h = Harness::start(1, "general_settings:\n  master_key: sk-master\n").await;
    let resp = client(&h, "sk-master")
        .chat()
        .create(request(false))
        .await
        .unwrap();
    let text = resp.choices[0].message.content.clone().unwrap();
    assert_eq!(text.split(' ').count(), 16, "{text}");
    assert_eq!(
        resp.model, "mock-0",
        "the upstream's model name, not rewritten"
    );
    let usage = resp.usage.unwrap();
    assert_eq!(usage.completion_tokens, 16);
    assert_eq!(h.dep(0).chat_requests(), 1);
}

#[tokio::test]
async fn streaming_through_openai_client_with_usage() {
    let h = Harness::start(1, "").await;
    let mut stream = client(&h, "any")
        .chat()
        .create_stream(request(true))
        .await
        .unwrap();
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    let mut chunks = 0;
    while let Some(item) = stream.next().await {
        let chunk = item.unwrap();
        chunks += 1;
        for c in &chunk.choices {
            if let Some(t) = &c.delta.content {
                text.push_str(t);
            }
            if c.finish_reason.is_some() {
                finish = c.finish_reason;
            }
        }
        if chunk.usage.is_some() {
            usage = chunk.usage;
        }
    }
    assert_eq!(text.split(' ').count(), 16, "{text}");
    assert!(finish.is_some());
    assert_eq!(usage.unwrap().completion_tokens, 16);
    // role chunk + 16 tokens + finish chunk + usage chunk
    assert_eq!(chunks, 19);
}

#[tokio::test]
async fn embeddings_and_models_through_openai_client() {
    let h = Harness::start(1, "").await;
    let c = client(&h, "any");
    let req = CreateEmbeddingRequestArgs::default()
        .model("gpt-4o")
        .input(vec!["a", "b", "c"])
        .build()
        .unwrap();
    let resp = c.embeddings().create(req).await.unwrap();
    assert_eq!(resp.data.len(), 3);
    assert_eq!(h.dep(0).embedding_requests(), 1);
    let models = c.models().list().await.unwrap();
    let ids: Vec<_> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["gpt-4o"]);
}

#[tokio::test]
async fn a_cut_stream_reaches_an_openai_client_whole_after_continuation() {
    let h = Harness::start_with(2, |u| {
        let mut yaml = String::from("model_list:\n");
        for (i, w) in [(0, 1000), (1, 1)] {
            yaml.push_str(&format!(
                "  - model_name: gpt-4o\n    litellm_params: {{model: openai_like/m, api_base: \"{}\", weight: {w}}}\n    model_info: {{id: dep-{i}}}\n",
                u[i]
            ));
        }
        yaml.push_str("router_settings:\n  routing_seed: 1\n");
        yaml
    })
    .await;
    for d in h.mock.deployments() {
        d.update_behavior(|b| b.completion_tokens = 60);
    }
    h.dep(0).fail_next(1, lb_mock::Fault::CutStreamAfter(40));
    let mut stream = client(&h, "any")
        .chat()
        .create_stream(request(true))
        .await
        .unwrap();
    let mut text = String::new();
    let mut finishes = 0;
    while let Some(item) = stream.next().await {
        let chunk = item.unwrap();
        for c in &chunk.choices {
            if let Some(t) = &c.delta.content {
                text.push_str(t);
            }
            if c.finish_reason.is_some() {
                finishes += 1;
            }
        }
    }
    assert_eq!(text, lb_mock::canonical_text(60));
    assert_eq!(finishes, 1);
    assert_eq!(h.dep(1).prefill_requests(), 1);
}
