//! A bounded load generator: N concurrent clients for T seconds, each sending Search or Ask
//! requests back to back. Every outcome is counted by status code; latencies of successes are
//! kept for percentiles.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::generator::v1 as gen;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Concurrent clients.
    pub clients: usize,
    /// How long.
    pub duration: Duration,
    /// Share of requests that are Ask (the rest Search), 0 to 1.
    pub ask_share: f64,
    /// Namespace to read.
    pub namespace: String,
    /// Questions, cycled.
    pub questions: Vec<String>,
    /// Tokens per answer.
    pub max_new_tokens: u32,
    /// API key.
    pub key: Option<String>,
}

/// What came back.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Requests by status code name ("Ok", "ResourceExhausted", ...).
    pub by_code: BTreeMap<String, usize>,
    /// Latencies of successful requests, milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
    /// Wall time.
    pub seconds: f64,
}

impl LoadReport {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.seconds.max(1e-9)
    }

    /// The `p` quantile of the latencies (0 when none).
    pub fn percentile(&self, p: f64) -> f64 {
        let l = &self.latencies_ms;
        if l.is_empty() {
            return 0.0;
        }
        l[((l.len() - 1) as f64 * p).round() as usize]
    }

    /// Codes other than OK and RESOURCE_EXHAUSTED (overload refusals are allowed).
    pub fn unexpected(&self) -> Vec<(&String, &usize)> {
        self.by_code.iter().filter(|(c, _)| c.as_str() != "Ok" && c.as_str() != "ResourceExhausted").collect()
    }

    /// One JSON line.
    pub fn json(&self, spec: &LoadSpec) -> serde_json::Value {
        serde_json::json!({
            "clients": spec.clients, "seconds": self.seconds, "ask_share": spec.ask_share,
            "ok": self.latencies_ms.len(), "by_code": self.by_code, "throughput_per_s": self.throughput(),
            "p50_ms": self.percentile(0.5), "p99_ms": self.percentile(0.99),
        })
    }
}

/// Runs the load against the gateway at `addr`.
pub async fn run(addr: SocketAddr, spec: &LoadSpec) -> anyhow::Result<LoadReport> {
    let started = Instant::now();
    let deadline = started + spec.duration;
    let mut tasks = Vec::new();
    for c in 0..spec.clients {
        let mut client = crate::client(addr, spec.key.as_deref()).await?;
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let mut codes: BTreeMap<String, usize> = BTreeMap::new();
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                let q = spec.questions[i % spec.questions.len()].clone();
                let ask = ((i * 7919) % 1000) as f64 / 1000.0 < spec.ask_share;
                i += spec.clients;
                let t0 = Instant::now();
                let outcome = if ask {
                    let params = gen::SamplingParams { max_new_tokens: Some(spec.max_new_tokens), temperature: Some(0.0), ..Default::default() };
                    let req = gw::AskRequest { question: q, namespaces: vec![spec.namespace.clone()], top_k: Some(2), params: Some(params), ..Default::default() };
                    client.ask(req).await.map(drop)
                } else {
                    let req = gw::SearchRequest { question: q, namespaces: vec![spec.namespace.clone()], top_k: Some(5), ..Default::default() };
                    client.search(req).await.map(drop)
                };
                match outcome {
                    Ok(()) => {
                        *codes.entry("Ok".into()).or_default() += 1;
                        lat.push(t0.elapsed().as_secs_f64() * 1e3);
                    }
                    Err(s) => {
                        *codes.entry(format!("{:?}", s.code())).or_default() += 1;
                        if s.code() == tonic::Code::ResourceExhausted {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
            (codes, lat)
        }));
    }
    let mut report = LoadReport::default();
    for t in tasks {
        let (codes, lat) = t.await?;
        for (k, v) in codes {
            *report.by_code.entry(k).or_default() += v;
        }
        report.latencies_ms.extend(lat);
    }
    report.latencies_ms.sort_by(f64::total_cmp);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
