//! Prometheus metrics: a process-wide registry of counters, gauges and histograms (with
//! labels), gauges read from callbacks, a tower layer that counts and times every gRPC call by
//! method and status, and a small HTTP endpoint serving the text format on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Latency buckets, in seconds.
pub const SECONDS_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

type Labels = Vec<(String, String)>;

enum Series {
    Counter(Arc<AtomicU64>),
    Gauge(Arc<dyn Fn() -> f64 + Send + Sync>),
    Histogram(Arc<HistogramData>),
}

struct Family {
    help: String,
    kind: &'static str,
    series: BTreeMap<Labels, Series>,
}

/// Observations of one histogram series.
pub struct HistogramData {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A histogram series.
#[derive(Clone)]
pub struct Histogram(Arc<HistogramData>);

impl Histogram {
    /// Records one observation (seconds, or any unit the name says).
    pub fn observe(&self, value: f64) {
        let h = &self.0;
        if let Some(i) = h.bounds.iter().position(|b| value <= *b) {
            h.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        h.sum_micros.fetch_add((value.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        h.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// A counter series.
#[derive(Clone)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

fn registry() -> &'static Mutex<BTreeMap<String, Family>> {
    static R: OnceLock<Mutex<BTreeMap<String, Family>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn with_family<T>(name: &str, help: &str, kind: &'static str, f: impl FnOnce(&mut Family) -> T) -> T {
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    let family = r.entry(name.to_string()).or_insert_with(|| Family { help: help.into(), kind, series: BTreeMap::new() });
    f(family)
}

/// The counter `name{labels}` (created at first use).
pub fn counter(name: &str, help: &str, pairs: &[(&str, &str)]) -> Counter {
    with_family(name, help, "counter", |f| match f.series.entry(labels(pairs)).or_insert_with(|| Series::Counter(Arc::default())) {
        Series::Counter(c) => Counter(Arc::clone(c)),
        _ => Counter(Arc::default()),
    })
}

/// The histogram `name{labels}` with `bounds` (created at first use).
pub fn histogram(name: &str, help: &str, pairs: &[(&str, &str)], bounds: &[f64]) -> Histogram {
    with_family(name, help, "histogram", |f| {
        let series = f.series.entry(labels(pairs)).or_insert_with(|| {
            Series::Histogram(Arc::new(HistogramData {
                bounds: bounds.to_vec(),
                counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
                sum_micros: AtomicU64::new(0),
                count: AtomicU64::new(0),
            }))
        });
        match series {
            Series::Histogram(h) => Histogram(Arc::clone(h)),
            _ => Histogram(Arc::new(HistogramData { bounds: vec![], counts: vec![], sum_micros: AtomicU64::new(0), count: AtomicU64::new(0) })),
        }
    })
}

/// A gauge (or a counter, with `kind` "counter") whose value is read from `read` at scrape.
pub fn callback(name: &str, help: &str, kind: &'static str, pairs: &[(&str, &str)], read: impl Fn() -> f64 + Send + Sync + 'static) {
    with_family(name, help, kind, |f| {
        f.series.insert(labels(pairs), Series::Gauge(Arc::new(read)));
    });
}

fn render_labels(out: &mut String, labels: &Labels, extra: Option<(&str, String)>) {
    let mut all: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    if let Some((k, v)) = extra {
        all.push(format!("{k}=\"{v}\""));
    }
    if !all.is_empty() {
        let _ = write!(out, "{{{}}}", all.join(","));
    }
}

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    let r = registry().lock().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    for (name, f) in r.iter() {
        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {}", f.help, f.kind);
        for (labels, series) in &f.series {
            match series {
                Series::Counter(c) => {
                    out.push_str(name);
                    render_labels(&mut out, labels, None);
                    let _ = writeln!(out, " {}", c.load(Ordering::Relaxed));
                }
                Series::Gauge(read) => {
                    out.push_str(name);
                    render_labels(&mut out, labels, None);
                    let _ = writeln!(out, " {}", read());
                }
                Series::Histogram(h) => {
                    let mut cumulative = 0;
                    for (b, c) in h.bounds.iter().zip(&h.counts) {
                        cumulative += c.load(Ordering::Relaxed);
                        let _ = write!(out, "{name}_bucket");
                        render_labels(&mut out, labels, Some(("le", b.to_string())));
                        let _ = writeln!(out, " {cumulative}");
                    }
                    let count = h.count.load(Ordering::Relaxed);
                    let _ = write!(out, "{name}_bucket");
                    render_labels(&mut out, labels, Some(("le", "+Inf".into())));
                    let _ = writeln!(out, " {count}");
                    let _ = write!(out, "{name}_sum");
                    render_labels(&mut out, labels, None);
                    let _ = writeln!(out, " {}", h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
                    let _ = write!(out, "{name}_count");
                    render_labels(&mut out, labels, None);
                    let _ = writeln!(out, " {count}");
                }
            }
        }
    }
    out
}

/// Serves `GET /metrics` on `listener` (plain HTTP/1.1, one response per connection) until the
/// task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut read = 0;
            while read < buf.len() {
                match stream.read(&mut buf[read..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
                if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let request = String::from_utf8_lossy(&buf[..read]);
            let (status, body) = if request.starts_with("GET /metrics ") || request.starts_with("GET /metrics?") {
                ("200 OK", render())
            } else {
                ("404 Not Found", "only /metrics is served here\n".to_string())
            };
            let head = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Binds `addr` and serves metrics there in the background; returns the bound address.
pub async fn spawn_endpoint(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener));
    tracing::info!(addr = %bound, "metrics endpoint listening");
    Ok(bound)
}

/// A tower layer counting and timing every gRPC call:
/// `memgpt_grpc_requests_total{method, code}` and `memgpt_grpc_request_seconds{method}`
/// (for streams, the time to the response headers).
#[derive(Debug, Clone, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics(inner)
    }
}

/// The service of [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S>(S);

impl<S, B, RB> tower_service::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_string();
        let started = Instant::now();
        let fut = self.0.call(request);
        Box::pin(async move {
            let result = fut.await;
            let code = match &result {
                // A status in the headers is a trailers-only (error) response; otherwise the
                // call started normally.
                Ok(r) => r.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0").to_string(),
                Err(_) => "transport".into(),
            };
            counter("memgpt_grpc_requests_total", "gRPC calls by method and status code.", &[("method", &method), ("code", &code)]).add(1);
            histogram("memgpt_grpc_request_seconds", "Time to the response headers of gRPC calls.", &[("method", &method)], SECONDS_BUCKETS)
                .observe(started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        counter("t_requests_total", "Requests.", &[("code", "0")]).add(3);
        let h = histogram("t_seconds", "Latency.", &[("stage", "encode")], &[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        callback("t_queue", "Queue depth.", "gauge", &[], || 7.0);
        let text = render();
        assert!(text.contains("# TYPE t_requests_total counter\nt_requests_total{code=\"0\"} 3\n"), "{text}");
        assert!(text.contains("t_seconds_bucket{stage=\"encode\",le=\"0.1\"} 1\n"), "{text}");
        assert!(text.contains("t_seconds_bucket{stage=\"encode\",le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("t_seconds_bucket{stage=\"encode\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("t_seconds_count{stage=\"encode\"} 3\n"), "{text}");
        assert!(text.contains("t_queue 7\n"), "{text}");
    }

    #[tokio::test]
    async fn the_endpoint_serves_metrics_over_http() {
        counter("t_http_total", "Scrapes.", &[]).add(1);
        let addr = spawn_endpoint("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = get("/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK") && ok.contains("t_http_total 1"), "{ok}");
        assert!(get("/other").await.starts_with("HTTP/1.1 404"));
    }
}
