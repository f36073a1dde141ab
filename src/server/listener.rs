//! The HTTP/1.1 listener: at most `max_connections` open, headers (and the wait for the next
//! request on a kept-alive connection) within `header_timeout_ms`, and on shutdown every
//! connection without a request in flight closed at once.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tower::ServiceExt;

/// Headers hyper parses before it refuses a request itself (a bare 431, no JSON body): far above
/// [`super::MAX_HEADERS`], which the router refuses with the JSON error, so only absurd heads
/// (or heads over hyper's ~400 KB buffer) meet hyper's own refusal.
const PARSED_HEADERS: usize = 1024;

/// How connections are bounded.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// After the shutdown signal, requests in flight get this long.
    pub grace: Duration,
}

/// File descriptors kept for everything but client connections (model files, vocabulary
/// writes, camera pipes, the broker, the listener itself).
const RESERVED_FDS: u64 = 256;

/// Raises the soft open-file limit to the hard one and returns how many client connections fit
/// below it: `wanted`, or fewer (with a warning) when the limit is lower.
pub(crate) fn fit_connections(wanted: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return wanted;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    let room = lim.rlim_cur.saturating_sub(RESERVED_FDS).max(1);
    if (wanted as u64) > room {
        tracing::warn!(
            wanted,
            open_files = lim.rlim_cur,
            "max_connections lowered to {room} to stay below the open-file limit (raise \
             LimitNOFILE / ulimit -n)"
        );
        room as usize
    } else {
        wanted
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then closes idle and half-open
/// connections at once and gives requests in flight `grace` to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    open: prometheus::IntGauge,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender: `recv` returns `None` once all have ended.
    let (alive_tx, mut alive_rx) = mpsc::channel::<Infallible>(1);
    tokio::pin!(shutdown);
    loop {
        // At the limit, new connections wait in the kernel's backlog until one closes.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before accept: wait a
                    // little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (app, stop, alive, open) =
            (app.clone(), stop_rx.clone(), alive_tx.clone(), open.clone());
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            open.inc();
            serve_connection(tcp, app, header_timeout, stop).await;
            open.dec();
            drop((slot, alive));
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    if tokio::time::timeout(limits.grace, alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: closing with requests still in flight");
    }
}

/// One connection: HTTP/1.1 with keep-alive and the header timeout. On shutdown it is dropped
/// (closed) when no request is in flight, else finishes the one it has and closes.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    app: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counter = in_flight.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = InFlight::enter(&counter);
        let app = app.clone();
        async move {
            let resp = app.oneshot(req.map(Body::new)).await?;
            Ok::<_, Infallible>(resp.map(|body| Tracked {
                body,
                _guard: guard,
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .max_headers(PARSED_HEADERS)
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    if in_flight.load(Ordering::Acquire) == 0 {
        return; // idle, or headers only half sent: dropping closes it
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Counts a request as in flight from its head until its response body has been sent.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted in flight until it ends or is dropped.
struct Tracked {
    body: Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
