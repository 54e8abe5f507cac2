//! An echo server on the lean WebSocket connection (`resonance::ws::lean`),
//! for conformance runs: `lean_echo 127.0.0.1:9001`, then
//! `/work/shared/autobahn/check.sh ws://127.0.0.1:9001/`. Echoes of the
//! messages before a close or a protocol error go out before the close frame.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use resonance::ws::{self, LeanSocket, lean::Incoming, lean::Step};

/// Autobahn's largest case sends 16 MiB messages.
const MAX_MESSAGE: usize = 64 << 20;

async fn echo(mut socket: LeanSocket) {
    let mut replies: Vec<(bool, Vec<u8>)> = Vec::new();
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        let step = socket.read_available(|message| match message {
            Incoming::Text(text) => replies.push((false, text.as_bytes().to_vec())),
            Incoming::Binary(data) => replies.push((true, data.to_vec())),
            Incoming::Ping(_) | Incoming::Pong(_) => {}
        });
        for (binary, payload) in replies.drain(..) {
            socket.queue_frame(binary, &payload);
        }
        match step {
            Step::Open => {
                if socket.flush().await.is_err() {
                    return;
                }
            }
            Step::Closed | Step::Failed(_) => {
                socket.finish(Duration::from_secs(2)).await;
                return;
            }
        }
    }
}

async fn handle(mut req: Request<Body>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    match ws::handshake(&mut req, None) {
        Ok(handshake) => {
            tokio::spawn(async move {
                let Ok(upgraded) = handshake.upgrade.await else {
                    return;
                };
                if let Ok(socket) = LeanSocket::from_upgraded(upgraded, MAX_MESSAGE) {
                    echo(socket).await;
                }
            });
            Ok(handshake.response)
        }
        Err(response) => Ok(*response),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("lean_echo listening on ws://{addr}/");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .with_upgrades()
                .await;
        });
    }
}
