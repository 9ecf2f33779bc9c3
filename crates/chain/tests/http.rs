#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The hardened HTTP server the RPC and the gateway share, against hostile clients on loopback:
//! an oversized body is answered with the handler's `413` (never a reset), a slow head
//! (slowloris) or a slow body is cut off, and a client that stops reading a stream loses its
//! connection and the stream, while normal requests keep being served throughout.

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use polylink_chain::http::{HttpLimits, serve};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BODY_MAX: usize = 1 << 20;

/// Counts the streams alive: a stream's guard drops with it.
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A server on 127.0.0.1 with short timers; returns its address and the live-stream count.
async fn start() -> (String, Arc<AtomicUsize>) {
    let alive = Arc::new(AtomicUsize::new(0));
    let streams = alive.clone();
    let router = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/echo", post(|body: axum::body::Bytes| async move { body.len().to_string() }))
        .route(
            "/stream",
            get(move || {
                streams.fetch_add(1, Ordering::SeqCst);
                let guard = Alive(streams.clone());
                // Endless: only the client's going away (or its stall) ends it.
                let chunks = futures::stream::unfold(guard, |guard| async move {
                    Some((Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024]), guard))
                });
                async move { Body::from_stream(chunks) }
            }),
        )
        .layer(DefaultBodyLimit::max(BODY_MAX));
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(2),
        write_stall: Duration::from_secs(1),
        body_max: BODY_MAX,
        connections_max: 1024,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve(listener, router, limits));
    (addr, alive)
}

/// Sends `head` and `body` on a new connection and reads the whole answer (the request asks
/// the server to close after it).
async fn exchange(addr: &str, head: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let sending = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await
    };
    match tokio::time::timeout(Duration::from_secs(60), sending).await {
        Ok(sent) => sent.expect("the server reset the connection while the body was sent"),
        Err(_) => panic!("the server stopped reading the body"),
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("the server reset the connection instead of answering");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn normal_request_works(addr: &str) {
    let answer = exchange(addr, "GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", b"").await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
}

/// Waits (bounded generously) until the server closes `stream`, reading and dropping what it sends.
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buf = vec![0u8; 1 << 16];
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_answered_413_and_never_reset() {
    let (addr, _) = start().await;
    // Larger than the socket buffers: a server that stopped reading would hold it up.
    let big = vec![b'a'; 16 * BODY_MAX];
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    let answer = exchange(&addr, &head, &big).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // The same without a declared length (chunked), and a body that fits still passes.
    let chunked = format!("{:x}\r\n{}\r\n0\r\n\r\n", big.len(), String::from_utf8(big.clone()).unwrap());
    let head = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let answer = exchange(&addr, head, chunked.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let head = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\n";
    let answer = exchange(&addr, head, b"hello").await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n5"), "{answer}");
    normal_request_works(&addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_or_body_or_a_silent_connection_is_cut_off() {
    let (addr, _) = start().await;
    // Slowloris: a head sent a byte every 300 ms never completes within the 1 s allowed.
    let mut slow_head = TcpStream::connect(&addr).await.unwrap();
    let dripping = async {
        for b in b"GET /ok HTTP/1.1\r\nHost: t\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
            if slow_head.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut slow_body = TcpStream::connect(&addr).await.unwrap();
    slow_body.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc").await.unwrap();
    // Meanwhile normal requests are served.
    normal_request_works(&addr).await;
    dripping.await;
    closed_by_server(&mut slow_head).await;
    closed_by_server(&mut silent).await;
    let mut answer = Vec::new();
    let _ = slow_body.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    normal_request_works(&addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_stream() {
    let (addr, alive) = start().await;
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled.write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    // It reads nothing: the socket buffers fill, the server's writes stall for 1 s, and the
    // connection closes with the stream dropped.
    let dropped = tokio::time::timeout(Duration::from_secs(60), async {
        while alive.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while alive.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(dropped.is_ok(), "the stalled client's stream is still running");
    normal_request_works(&addr).await;
    drop(stalled);
}
