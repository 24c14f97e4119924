//! W3C trace context across gRPC: servers open one span per call whose parent is the caller's
//! `traceparent` ([`grpc_span`], for tonic's `trace_fn`; [`http_span`] for HTTP requests), and clients put the current span's
//! context into outgoing metadata ([`inject`]).

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct Metadata<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (tonic::metadata::MetadataKey::from_bytes(key.as_bytes()), value.parse()) {
            self.0.insert(k, v);
        }
    }
}

/// The span of one incoming gRPC call (`rpc` = the method path), continuing the caller's
/// trace when the request carries a `traceparent` header.
pub fn grpc_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!("grpc", rpc = %request.uri().path(), otel.kind = "server");
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// The span of one incoming HTTP request (`route`: the matched route, such as
/// `/v1/chat/completions`), continuing the caller's trace as [`grpc_span`] does.
pub fn http_span(method: &http::Method, route: &str, headers: &http::HeaderMap) -> tracing::Span {
    let span = tracing::info_span!("http", method = %method, route = %route, otel.kind = "server", status = tracing::field::Empty);
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// Writes the current span's trace context into outgoing metadata.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut Metadata(metadata)));
}

/// The trace id of the current span (32 hex digits; all zeros when no subscriber records
/// spans).
pub fn current_trace_id() -> String {
    tracing::Span::current().context().span().span_context().trace_id().to_string()
}
