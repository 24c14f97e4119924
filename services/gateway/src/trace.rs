//! The trace of one request: its id (returned to the client) and the outgoing requests that
//! carry it to the memory and generator services as W3C `traceparent` metadata.

use std::time::Duration;

/// The trace of one request.
#[derive(Debug, Clone)]
pub struct Trace {
    /// 32 hex digits.
    pub trace_id: String,
}

impl Trace {
    /// The trace of the current span (which continues the caller's `traceparent`, see
    /// `memgpt_telemetry::propagation::grpc_span`); a random id when no subscriber records
    /// spans.
    pub fn current() -> Self {
        let id = memgpt_telemetry::propagation::current_trace_id();
        let valid = id.len() == 32 && id.bytes().any(|b| b != b'0');
        Self { trace_id: if valid { id } else { format!("{:032x}", rand::random::<u128>()) } }
    }

    /// `msg` as a request carrying the current span's trace context and a deadline.
    pub fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        memgpt_telemetry::propagation::inject(req.metadata_mut());
        if !req.metadata().contains_key("traceparent") {
            let parent = format!("00-{}-{:016x}-01", self.trace_id, rand::random::<u64>().max(1));
            if let Ok(v) = parent.parse() {
                req.metadata_mut().insert("traceparent", v);
            }
        }
        req.set_timeout(timeout);
        req
    }
}
