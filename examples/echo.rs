//! An echo server on every path: the reference server for conformance runs.
//!
//! ```sh
//! cargo build --release --examples
//! target/release/examples/echo 127.0.0.1:9001
//! ```
//!
//! Every text or binary message comes back unchanged (fragmented messages
//! come back whole). Messages up to 64 MiB are accepted, enough for the
//! Autobahn suite's largest cases.

use std::net::SocketAddr;
use std::process::ExitCode;

use resonance::config::Config;
use resonance::custom::Route;
use resonance::server::Server;

#[tokio::main]
async fn main() -> ExitCode {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .unwrap_or("127.0.0.1:9001".into())
        .parse()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("usage: echo HOST:PORT ({e})");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::default();
    config.server.host = addr.ip().to_string();
    config.server.port = addr.port();
    let server = Server::builder(config)
        .route("/{*path}", Route::echo().max_message_bytes(64 << 20))
        .bind()
        .await;
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match server.local_addr() {
        Ok(a) => println!("echo listening on ws://{a}/"),
        Err(e) => eprintln!("echo: {e}"),
    }
    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    ExitCode::SUCCESS
}
