//! The local HTTP server of `doorbell dev`: the ingest app over HTTP/1.1 (hyper), with the
//! bounds a server facing untrusted clients needs.
//!
//! - at most [`ServeLimits::max_connections`] connections are served at once; further ones
//!   wait in the listen backlog until one closes;
//! - a request's headers must arrive within [`ServeLimits::header_timeout`] of the request's
//!   start (the connection is closed otherwise), and its whole body within
//!   [`ServeLimits::body_timeout`] of the headers (the request then fails: ingest answers 408
//!   and the connection is closed); an idle keep-alive connection is closed after the header
//!   timeout too;
//! - each request buffers at most its source's `max_body_bytes` (ingest refuses a larger
//!   `Content-Length` before reading, and stops reading at the limit).
//!
//! Memory for request bodies is therefore bounded by `max_connections` × the largest
//! `max_body_bytes` of the sources. On shutdown the listener closes, requests in progress
//! finish (for at most [`ServeLimits::shutdown_grace`]), and idle connections are closed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Bounds of the server. See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time allowed for a request's headers (and for an idle keep-alive connection).
    pub header_timeout: Duration,
    /// Time allowed for a request's whole body, from the end of its headers.
    pub body_timeout: Duration,
    /// How long shutdown waits for requests in progress.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 128,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A request body that fails with [`std::io::ErrorKind::TimedOut`] once its deadline passes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(r) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(r.map(|f| f.map_err(std::io::Error::other)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request body not received in time",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then drains.
///
/// # Errors
/// When accepting connections fails for good (the listener is closed).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let body_timeout = limits.body_timeout;
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let router = router.clone();
            async move {
                let req = req.map(|inner| {
                    Body::new(
                        DeadlineBody {
                            inner,
                            deadline: Box::pin(tokio::time::sleep(body_timeout)),
                        }
                        .boxed(),
                    )
                });
                Ok::<_, Infallible>(match router.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                })
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in progress at shutdown were cut off");
    }
    Ok(())
}
