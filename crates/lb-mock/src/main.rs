//! `lb-mock`: serve N mock OpenAI-compatible deployments until Ctrl-C.
//!
//! Prints one base URL (`http://127.0.0.1:PORT/v1`) per line. Each port is
//! controlled over HTTP under `/__mock/` (see the library docs).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use lb_mock::{Behavior, Fault, MockServer};

/// A fake OpenAI-compatible upstream on loopback.
#[derive(Debug, Parser)]
#[command(name = "lb-mock", version, about)]
struct Args {
    /// Number of deployments (ports) to serve.
    #[arg(long, default_value_t = 1)]
    ports: usize,
    /// First port (the others follow); 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    base_port: u16,
    /// Address to bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Latency before every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Uniform extra latency in 0..jitter, in milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Probability in [0, 1] of answering with --failure-status.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Status of the drawn failures.
    #[arg(long, default_value_t = 500)]
    failure_status: u16,
    /// Tokens in every answer.
    #[arg(long, default_value_t = 16)]
    completion_tokens: u32,
    /// Delay between stream chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    token_interval_ms: u64,
    /// Seed of the jitter/failure draws (deployment i uses seed + i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let addrs = (0..args.ports).map(|i| {
        let port = if args.base_port == 0 {
            0
        } else {
            u16::try_from(i)
                .ok()
                .and_then(|i| args.base_port.checked_add(i))
                .unwrap_or(0)
        };
        SocketAddr::new(args.host, port)
    });
    let server = MockServer::start_on(addrs).await?;
    for (i, d) in server.deployments().iter().enumerate() {
        d.set_behavior(Behavior {
            latency: Duration::from_millis(args.latency_ms),
            jitter: Duration::from_millis(args.jitter_ms),
            failure_rate: args.failure_rate,
            failure: Fault::status(args.failure_status),
            completion_tokens: args.completion_tokens,
            token_interval: Duration::from_millis(args.token_interval_ms),
            seed: args.seed.wrapping_add(i as u64),
            ..Behavior::default()
        });
        println!("{}", d.base_url());
    }
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
