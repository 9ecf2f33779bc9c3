//! HTTP serving hardened for an open network, used by the chain RPC and the gateway alike.
//!
//! `axum::serve` has no timers: a connection that sends its request head one byte a minute
//! (slowloris), or opens and says nothing, is held forever, a client that stops reading a
//! streamed answer keeps its task (and the permits it holds), and an oversized body is answered
//! and then reset, so the client often never reads its `413`. [`serve`] bounds each of these:
//! - a request head must arrive within [`HttpLimits::header_timeout`], which is also how long a
//!   kept-alive connection may sit idle;
//! - a request body must arrive within [`HttpLimits::body_timeout`] (`408` otherwise), and is
//!   read before any handler runs: one over [`HttpLimits::body_max`] is still read to its end (up
//!   to [`DRAIN_MAX`]) so the client reads the handler's refusal instead of a reset connection;
//! - a response whose writes make no progress for [`HttpLimits::write_stall`] closes its
//!   connection, dropping the handler's stream (a generation ends as cancelled);
//! - at most [`HttpLimits::connections_max`] connections are open; one more is closed on accept.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

/// Most bytes read from an oversized body so that its client reads the refusal; past this the
/// connection is closed (and the client may see a reset).
pub const DRAIN_MAX: usize = 64 << 20;

/// How long this project's HTTP clients keep an idle pooled link: well under the servers'
/// [`HttpLimits::header_timeout`], so a request never goes out on a link the server is closing.
pub const CLIENT_IDLE_MAX: Duration = Duration::from_secs(4);

/// Bounds on what one connection may hold.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A request head must arrive whole within this; also the idle time allowed between two
    /// requests on a kept-alive connection.
    pub header_timeout: Duration,
    /// A request body must arrive whole within this.
    pub body_timeout: Duration,
    /// A response write that makes no progress for this long closes the connection.
    pub write_stall: Duration,
    /// Largest body passed to a handler; bytes past it are read and dropped.
    pub body_max: usize,
    /// Most connections open at once.
    pub connections_max: usize,
}

impl HttpLimits {
    /// The defaults with `body_max` as the largest body.
    pub fn with_body_max(body_max: usize) -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_stall: Duration::from_secs(30),
            body_max,
            connections_max: 16_384,
        }
    }
}

/// Serves `router` on `listener` within `limits` until the task is dropped. Accept errors (out
/// of file descriptors, say) are logged and retried after a pause; they never end the server.
pub async fn serve(listener: TcpListener, router: Router, limits: HttpLimits) -> io::Result<()> {
    let router = router.layer(axum::middleware::from_fn_with_state(limits, read_body));
    let open = Arc::new(Semaphore::new(limits.connections_max));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "connection limit reached; closing a new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let io = TokioIo::new(Stalling::new(stream, limits.write_stall));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(io, service);
            if let Err(e) = connection.await {
                tracing::debug!(%remote, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
}

/// Reads the whole request body (within the body timeout) before the handler runs; an
/// oversized one is read to its end and the handler gets its first `body_max + 1` bytes, so it
/// refuses it in its own words.
async fn read_body(State(limits): State<HttpLimits>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let mut chunks = body.into_data_stream();
    let keep = limits.body_max.saturating_add(1);
    let mut kept = Vec::new();
    let mut total = 0usize;
    let reading = async {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| (StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
            total = total.saturating_add(chunk.len());
            if kept.len() < keep {
                let room = keep - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            if total > DRAIN_MAX {
                return Err((StatusCode::PAYLOAD_TOO_LARGE, format!("body over {DRAIN_MAX} bytes")));
            }
        }
        Ok(())
    };
    let read = match tokio::time::timeout(limits.body_timeout, reading).await {
        Ok(read) => read,
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} s", limits.body_timeout.as_secs()),
        )),
    };
    if let Err((status, why)) = read {
        return (status, why).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(Bytes::from(kept)))).await
}

/// A TCP stream whose writes fail with `TimedOut` once one has been pending for `stall`.
struct Stalling {
    inner: TcpStream,
    stall: Duration,
    /// Running while a write or flush waits on the peer.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl Stalling {
    fn new(inner: TcpStream, stall: Duration) -> Self {
        Self { inner, stall, waiting: None }
    }

    /// Passes `polled` on, starting the stall timer when it is pending and failing once the
    /// timer runs out; any progress stops the timer.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let stall = self.stall;
        let timer = self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {} s", stall.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Stalling {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stalling {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
