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
//!   `Content-Length` before reading, and stops reading at the limit);
//! - all bodies being received together hold at most [`ServeLimits::max_body_memory`] bytes:
//!   a body takes its share of that budget as its bytes arrive and gives it back when the
//!   request is done; while the budget is spent, reading stops (the clients wait, and their
//!   body timeouts keep running), so bodies held open by slow or hostile clients cannot take
//!   more than the budget, whatever the number of connections.
//!
//! Memory for request bodies is therefore bounded by `max_body_memory` plus one read buffer
//! per connection. On shutdown the listener closes, requests in progress finish (for at most
//! [`ServeLimits::shutdown_grace`]), and idle connections are closed.

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
    /// Bytes of request bodies held at once, all connections together.
    pub max_body_memory: usize,
    /// How long shutdown waits for requests in progress.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 128,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_body_memory: 128 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Budget units are KiB, so a semaphore's permit count covers any budget.
const UNIT: usize = 1024;

/// A request body that takes its bytes' share of the shared body budget before handing them
/// on, and fails with [`std::io::ErrorKind::TimedOut`] once its deadline passes.
struct BudgetedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    budget: Arc<Semaphore>,
    /// The share this body holds, returned when it is dropped.
    held: Option<tokio::sync::OwnedSemaphorePermit>,
    /// A frame read but not yet paid for, and the wait for its share.
    waiting: Option<(Frame<Bytes>, PermitFuture)>,
}

type PermitFuture = Pin<
    Box<
        dyn Future<Output = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>>
            + Send
            + Sync,
    >,
>;

impl BudgetedBody {
    fn timed_out() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "request body not received in time",
        )
    }
}

impl hyper::body::Body for BudgetedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.waiting.is_none() {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let units = frame
                        .data_ref()
                        .map_or(0, |d| d.len().div_ceil(UNIT))
                        .min(u32::MAX as usize) as u32;
                    if units == 0 {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    let wait = Box::pin(this.budget.clone().acquire_many_owned(units));
                    this.waiting = Some((frame, wait));
                }
                Poll::Ready(other) => {
                    return Poll::Ready(other.map(|r| r.map_err(std::io::Error::other)));
                }
                Poll::Pending => {}
            }
        }
        if let Some((_, wait)) = &mut this.waiting
            && let Poll::Ready(permit) = wait.as_mut().poll(cx)
        {
            let Some((frame, _)) = this.waiting.take() else {
                return Poll::Pending;
            };
            if let Ok(permit) = permit {
                match &mut this.held {
                    Some(held) => held.merge(permit),
                    None => this.held = Some(permit),
                }
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Self::timed_out()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
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
    let budget = Arc::new(Semaphore::new(
        (limits.max_body_memory / UNIT).clamp(1, Semaphore::MAX_PERMITS),
    ));
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
        let budget = budget.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let router = router.clone();
            let budget = budget.clone();
            async move {
                let req = req.map(|inner| {
                    Body::new(
                        BudgetedBody {
                            inner,
                            deadline: Box::pin(tokio::time::sleep(body_timeout)),
                            budget,
                            held: None,
                            waiting: None,
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
