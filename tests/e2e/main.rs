//! End-to-end tests: lb-mock upstreams, the router and the gateway on
//! loopback, driven by a real OpenAI client and by raw HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns fail loudly too

mod continuation;
mod errors;
mod gateway;
mod library;
mod limits;
mod metrics;
mod openai_client;
mod redis;
mod reliability;
mod strategies;
mod streaming;
mod tracing;
