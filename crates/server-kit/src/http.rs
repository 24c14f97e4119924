//! HTTP/JSON beside gRPC ([`crate::Server::http`]): an axum router on its own listener,
//! TCP_NODELAY, under the same drain as the gRPC port (it stops taking requests when shutdown
//! starts and in-flight ones get the grace period), with a span per request continuing the
//! caller's `traceparent` and the request metrics `memgpt_http_requests_total{route, status}`
//! and `memgpt_http_request_seconds{route}` (for streams, the time to the response headers).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::ListenerExt;
use memgpt_telemetry::metrics::{counter, histogram, SECONDS_BUCKETS};
use tokio::net::TcpListener;
use tracing::Instrument;

/// An HTTP face: the router and the listener it is served on.
pub struct HttpFace {
    pub(crate) listener: TcpListener,
    pub(crate) router: axum::Router,
}

impl HttpFace {
    /// `router` served on `listener`.
    pub fn new(listener: TcpListener, router: axum::Router) -> Self {
        Self { listener, router }
    }
}

/// The span and metrics of every request.
async fn observe(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let span = memgpt_telemetry::propagation::http_span(request.method(), &route, request.headers());
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("status", status.as_u16());
    counter("memgpt_http_requests_total", "HTTP requests by route and status.", &[("route", &route), ("status", status.as_str())]).add(1);
    histogram("memgpt_http_request_seconds", "Time to the response headers of HTTP requests.", &[("route", &route)], SECONDS_BUCKETS)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Serves `face` until `stop` resolves, then lets in-flight requests finish.
pub(crate) async fn serve(face: HttpFace, stop: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let addr = face.listener.local_addr()?;
    tracing::info!(http_addr = %addr, "HTTP listening");
    let listener = face.listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let router = face.router.route_layer(axum::middleware::from_fn(observe));
    axum::serve(listener, router).with_graceful_shutdown(stop).await
}
