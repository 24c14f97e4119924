//! Endpoint pools for the memory and generator services: several addresses, each health
//! checked in the background: in once a check passes, out when one is refused or answered
//! NOT_SERVING, or when [`SLOW_CHECKS_BEFORE_DOWN`] in a row get no answer in time. Calls go
//! to the healthy endpoint with the fewest calls in flight (or, for calls with routing keys,
//! cache-aware: see [`super::affinity`]), and idempotent calls are retried once on
//! UNAVAILABLE against another endpoint. Connections are pinged (HTTP/2 keepalive), so a
//! peer whose packets vanish fails its calls instead of hanging them until their deadlines.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::affinity::{self, Candidate, KeySet};
use crate::error::{GatewayError, Result};

/// Whether a call failed because the endpoint could not be reached (UNAVAILABLE, or a
/// transport error that tonic reports as UNKNOWN: connection refused or reset).
fn unreachable(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
        || (status.code() == tonic::Code::Unknown
            && std::error::Error::source(status).is_some_and(|e| e.is::<tonic::transport::Error>()))
}

/// Whether the call's own deadline expired on the client side with no answer (tonic says
/// CANCELLED "Timeout expired"): the backend may be partitioned or stalled. To the caller it
/// is UNAVAILABLE, retryable; the endpoint's health checks decide whether it is taken out.
pub fn no_answer(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Cancelled && status.message().contains("Timeout expired")
}

/// Health checks in a row with no answer within their timeout before an endpoint is taken
/// out. One slow answer is a busy or far peer more often than a lost one (a loaded 2-core
/// host, a link with a few hundred milliseconds of latency); a peer that is really gone is
/// found sooner by its calls (refused, or their pings unanswered), which take it out at once.
pub const SLOW_CHECKS_BEFORE_DOWN: u32 = 3;

/// What one health check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Serving,
    /// Answered, or refused, saying it does not serve.
    NotServing,
    /// No answer within the check's timeout.
    Slow,
}

/// One address of a backend.
pub struct Backend {
    /// The address.
    pub addr: String,
    channel: Channel,
    healthy: AtomicBool,
    /// Health checks in a row that got no answer in time.
    slow_checks: AtomicU32,
    inflight: AtomicUsize,
    /// The routing keys last sent here (what its cache likely holds).
    held: Mutex<KeySet>,
}

impl Backend {
    fn held(&self) -> std::sync::MutexGuard<'_, KeySet> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets what the endpoint was sent: once it is unreachable or not serving, it may come
    /// back as a new process with an empty cache, and a request routed by the old record (the
    /// keys of the very call that failed included) would miss there.
    fn forget_held(&self) {
        self.held().clear();
    }
}

/// Counts a call in flight on a backend until dropped (a stream keeps it while it lives).
pub struct InFlight(Arc<Backend>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The endpoints of one backend service.
pub struct Pool {
    name: &'static str,
    service: &'static str,
    backends: Vec<Arc<Backend>>,
    next: AtomicUsize,
    /// How far above the least loaded endpoint's calls in flight a routed call may still go
    /// to the endpoint holding its keys.
    load_bound: usize,
}

/// Cache-aware routing of an endpoint pool: per endpoint at most `entries` keys remembered,
/// and the load bound of [`affinity::choose`].
#[derive(Debug, Clone, Copy)]
pub struct RouteLimits {
    /// Keys remembered per endpoint.
    pub entries: usize,
    /// The load bound.
    pub load_bound: usize,
}

impl Default for RouteLimits {
    fn default() -> Self {
        Self { entries: 4096, load_bound: 4 }
    }
}

impl Pool {
    /// A pool over `addrs` (connections are made lazily). `service` is the name health is
    /// asked about.
    pub fn new(name: &'static str, service: &'static str, addrs: &[String], tls: Option<&ClientTlsConfig>, keepalive: Duration) -> Result<Arc<Self>> {
        Self::with_routing(name, service, addrs, tls, keepalive, RouteLimits::default())
    }

    /// [`Pool::new`] with the limits of cache-aware routing.
    pub fn with_routing(
        name: &'static str,
        service: &'static str,
        addrs: &[String],
        tls: Option<&ClientTlsConfig>,
        keepalive: Duration,
        limits: RouteLimits,
    ) -> Result<Arc<Self>> {
        if addrs.is_empty() {
            return Err(GatewayError::invalid(name, "at least one endpoint is needed"));
        }
        let mut backends = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let uri = if addr.contains("://") { addr.clone() } else { format!("{scheme}://{addr}") };
            let mut endpoint = Endpoint::from_shared(uri)
                .map_err(|e| GatewayError::invalid(name, format!("`{addr}` is not a valid address: {e}")))?
                .connect_timeout(Duration::from_secs(2))
                .http2_keep_alive_interval(keepalive)
                .keep_alive_timeout(keepalive)
                .keep_alive_while_idle(true)
                .tcp_nodelay(true);
            if let Some(tls) = tls {
                endpoint = endpoint.tls_config(tls.clone()).map_err(|e| GatewayError::invalid(name, format!("TLS for `{addr}`: {e}")))?;
            }
            backends.push(Arc::new(Backend {
                addr: addr.clone(),
                channel: endpoint.connect_lazy(),
                // Out until its first check passes: a gateway that says it serves before it has
                // asked would send its first calls to backends still loading their models.
                healthy: AtomicBool::new(false),
                slow_checks: AtomicU32::new(0),
                inflight: AtomicUsize::new(0),
                held: Mutex::new(KeySet::new(limits.entries)),
            }));
        }
        Ok(Arc::new(Self { name, service, backends, next: AtomicUsize::new(0), load_bound: limits.load_bound }))
    }

    /// Health-checks every endpoint every `interval` until the pool is dropped.
    pub fn spawn_health_checks(self: &Arc<Self>, interval: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(pool) = weak.upgrade() else { return };
                pool.check_all(interval).await;
                drop(pool);
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// Checks every endpoint once now, each given `timeout` but at least a second: a check's
    /// answer crosses the link twice, and a link with a few hundred milliseconds of latency is
    /// slow, not down (pings and deadlines find the ones that are).
    pub async fn check_all(&self, timeout: Duration) {
        let checks = self.backends.iter().map(|b| async move {
            let mut client = HealthClient::new(b.channel.clone());
            let request = HealthCheckRequest { service: self.service.into() };
            let check = match tokio::time::timeout(timeout.max(Duration::from_secs(1)), client.check(request)).await {
                Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => Check::Serving,
                Ok(_) => Check::NotServing,
                Err(_) => Check::Slow,
            };
            let slow = match check {
                Check::Slow => b.slow_checks.fetch_add(1, Ordering::Relaxed) + 1,
                _ => {
                    b.slow_checks.store(0, Ordering::Relaxed);
                    0
                }
            };
            let ok = match check {
                Check::Serving => true,
                Check::NotServing => false,
                Check::Slow if slow < SLOW_CHECKS_BEFORE_DOWN => return,
                Check::Slow => false,
            };
            if !ok {
                b.forget_held();
            }
            match (b.healthy.swap(ok, Ordering::Relaxed), ok) {
                (false, true) => tracing::info!(backend = self.name, addr = %b.addr, healthy = ok, "endpoint health changed"),
                (true, false) => tracing::warn!(backend = self.name, addr = %b.addr, healthy = ok, ?check, slow_checks = slow, "endpoint health changed"),
                _ => {}
            }
        });
        futures::future::join_all(checks).await;
    }

    /// Each endpoint: address, last health, calls in flight.
    pub fn endpoints(&self) -> Vec<(String, bool, usize)> {
        self.backends.iter().map(|b| (b.addr.clone(), b.healthy.load(Ordering::Relaxed), b.inflight.load(Ordering::Relaxed))).collect()
    }

    /// Whether any endpoint is healthy.
    pub fn any_healthy(&self) -> bool {
        self.backends.iter().any(|b| b.healthy.load(Ordering::Relaxed))
    }

    /// Channels to every healthy endpoint (work each replica must do, such as warming caches).
    pub fn healthy_channels(&self) -> Vec<(String, Channel)> {
        self.backends.iter().filter(|b| b.healthy.load(Ordering::Relaxed)).map(|b| (b.addr.clone(), b.channel.clone())).collect()
    }

    /// A channel to the healthy endpoint with the fewest calls in flight.
    pub fn healthy_channel(&self) -> Option<Channel> {
        self.pick(None, &[]).map(|b| b.channel.clone())
    }

    /// A channel to the healthy endpoint a call with routing `keys` goes to (cache-aware),
    /// the keys recorded there; its address too.
    pub fn routed_channel(&self, keys: &[u64]) -> Option<(String, Channel)> {
        self.pick(None, keys).map(|b| (b.addr.clone(), b.channel.clone()))
    }

    /// The healthy endpoint a call goes to, avoiding `exclude`: without routing `keys`, the
    /// one with the fewest calls in flight (round robin among equals); with them, the one
    /// [`affinity::choose`] picks, which then records them.
    fn pick(&self, exclude: Option<&str>, keys: &[u64]) -> Option<Arc<Backend>> {
        let n = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let healthy: Vec<&Arc<Backend>> = (0..n)
            .map(|i| &self.backends[(start + i) % n])
            .filter(|b| b.healthy.load(Ordering::Relaxed) && Some(b.addr.as_str()) != exclude)
            .collect();
        let candidates: Vec<Candidate> = healthy
            .iter()
            .map(|b| Candidate { held: if keys.is_empty() { 0 } else { b.held().count(keys) }, in_flight: b.inflight.load(Ordering::Relaxed) })
            .collect();
        let chosen = healthy[affinity::choose(&candidates, self.load_bound)?];
        if !keys.is_empty() {
            chosen.held().insert(keys);
        }
        Some(Arc::clone(chosen))
    }

    /// Calls `f` on a chosen endpoint; when `idempotent` and the answer is UNAVAILABLE, marks
    /// that endpoint down and tries once more on another. The [`InFlight`] guard counts the
    /// call until dropped.
    pub async fn call<T, F, Fut>(&self, idempotent: bool, f: F) -> Result<(T, InFlight)>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        self.call_routed(idempotent, &[], f).await
    }

    /// [`Pool::call`] routed by `keys` (cache-aware; none: least in flight).
    pub async fn call_routed<T, F, Fut>(&self, idempotent: bool, keys: &[u64], f: F) -> Result<(T, InFlight)>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let mut tried: Option<String> = None;
        loop {
            let backend = self.pick(tried.as_deref(), keys).ok_or(GatewayError::Unavailable(self.name))?;
            backend.inflight.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight(Arc::clone(&backend));
            match f(backend.channel.clone()).await {
                Ok(v) => return Ok((v, guard)),
                Err(status) if unreachable(&status) => {
                    let status = tonic::Status::unavailable(status.message().to_string());
                    backend.healthy.store(false, Ordering::Relaxed);
                    backend.forget_held();
                    tracing::warn!(backend = self.name, addr = %backend.addr, error = %status.message(), "endpoint unavailable; taken out until healthy");
                    if idempotent && tried.is_none() && self.backends.len() > 1 {
                        tried = Some(backend.addr.clone());
                        continue;
                    }
                    return Err(GatewayError::Backend { backend: self.name, status });
                }
                Err(status) if no_answer(&status) => {
                    tracing::warn!(backend = self.name, addr = %backend.addr, "no answer within the call's deadline");
                    let status = tonic::Status::unavailable(format!("no answer from {} within the deadline", backend.addr));
                    return Err(GatewayError::Backend { backend: self.name, status });
                }
                Err(status) => return Err(GatewayError::Backend { backend: self.name, status }),
            }
        }
    }
}
