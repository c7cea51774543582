//! The accept loop: hyper connections with bounded waits, and graceful draining.
//!
//! `axum::serve` would do, except that it cannot bound how long a client may take to send its
//! request head, nor how many connections are open at once: a slow or idle client would hold a
//! socket and a task forever. Here every connection gets a header-read timeout, at most
//! `max_connections` are served at once (further clients wait in the kernel's accept backlog),
//! and on shutdown the listener closes and each connection finishes the request it is serving.
//! When the drain outlives its grace period, the remaining connections are closed and counted:
//! each one was serving a request that never got its answer, and the caller turns a non-zero
//! count into a non-zero exit status.
//!
//! The loop is generic over axum's [`Listener`], so the same code serves TCP and a Unix-domain
//! socket (`--listen unix:/path`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::{Listener, ListenerExt};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// A TCP listener whose connections have Nagle's algorithm off: each answer is written at
/// once and small, so holding it back for an acknowledgement only adds latency.
pub(crate) fn without_nagle(listener: tokio::net::TcpListener) -> impl Listener {
    listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    })
}

/// Bounds on client connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time a client has to send a complete request head after connecting or after its
    /// previous request (keep-alive); the connection is closed after it.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long shutdown waits for requests in progress before closing their connections.
    pub shutdown_grace: Duration,
}

/// How the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections still serving a request when the grace period ran out (closed unanswered).
    pub unanswered: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains (see module docs).
pub async fn serve<L: Listener>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    // HTTP/1.1 only: local clients (curl, the adapter, Swagger UI) need nothing more, and
    // protocol detection would read the first bytes before any timeout applies.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        // axum's `accept` logs and backs off on errors itself (EMFILE and the like).
        let stream = tokio::select! {
            (stream, _peer) = listener.accept() => stream,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            let _slot = slot;
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drain = async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    };
    if tokio::time::timeout(limits.shutdown_grace, drain)
        .await
        .is_ok()
    {
        return Drained { unanswered: 0 };
    }
    let unanswered = connections.len();
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Drained { unanswered }
}
