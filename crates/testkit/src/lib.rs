//! Test support that every suite of the workspace uses (a dev-dependency only): a server on
//! its own runtime thread on port 0 ([`Running`]), waiting until a service reports SERVING
//! through its health watch stream (never a fixed sleep), the API key as metadata, and the
//! shared evaluation data.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

pub use memgpt_proto::auth::Bearer;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long a service may take to become SERVING (a model load on a busy 2-core machine).
pub const SERVING_WITHIN: Duration = Duration::from_secs(180);

/// The future a server under test is given as its shutdown signal.
pub type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server on its own runtime thread, listening on a free loopback port. Dropping it stops
/// the server and waits until it has finished (a store flushed before its folder goes away).
pub struct Running<T: Send + 'static = ()> {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<T>>,
}

impl<T: Send + 'static> Running<T> {
    /// Binds 127.0.0.1:0 on a fresh two-worker runtime and runs `serve` there with the
    /// listener and its stop signal.
    pub fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, Stop) -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a test runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free loopback port");
                addr_tx.send(listener.local_addr().expect("bound address")).expect("the spawner waits");
                serve(
                    listener,
                    Box::pin(async move {
                        let _ = stop_rx.await;
                    }),
                )
                .await
            })
        });
        let addr = addr_rx.recv().expect("the server thread binds");
        Self { addr, stop: Some(stop), thread: Some(thread) }
    }

    /// Asks the server to stop (drain), without waiting.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the server and returns what it returned.
    pub fn join(mut self) -> T {
        self.stop();
        let thread = self.thread.take().expect("joined once");
        thread.join().expect("the server thread panicked")
    }

    /// [`Running::join`] from async code (waits on a blocking thread).
    pub async fn stopped(self) -> T {
        tokio::task::spawn_blocking(move || self.join()).await.expect("join task")
    }

    /// Keeps the server for the rest of the process (shared by every test of a binary).
    pub fn detach(mut self) -> SocketAddr {
        self.stop.take().map(std::mem::forget);
        self.thread.take();
        self.addr
    }
}

impl<T: Send + 'static> Drop for Running<T> {
    fn drop(&mut self) {
        self.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The plaintext endpoint of a loopback address.
pub fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}")).expect("a socket address is a valid URI")
}

/// A channel, retrying until the endpoint accepts a connection (bounded by `deadline`).
pub async fn connect(endpoint: &Endpoint, deadline: Instant) -> Channel {
    loop {
        match endpoint.connect().await {
            Ok(channel) => return channel,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to {}: {e}", endpoint.uri());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Follows `service`'s health watch stream on `channel` until it reports SERVING; an error
/// names the address and the last status seen.
pub async fn wait_serving(channel: Channel, service: &str, within: Duration) -> Result<(), String> {
    let work = async {
        let mut watch = HealthClient::new(channel)
            .watch(HealthCheckRequest { service: service.into() })
            .await
            .map_err(|s| format!("health watch refused: {s}"))?
            .into_inner();
        let mut last = None;
        while let Some(msg) = watch.message().await.map_err(|s| format!("health stream failed: {s}"))? {
            if msg.status == ServingStatus::Serving as i32 {
                return Ok(());
            }
            last = Some(msg.status);
        }
        Err(format!("the health stream ended (last status {last:?})"))
    };
    tokio::time::timeout(within, work).await.map_err(|_| format!("`{service}` did not report SERVING within {within:?}"))?
}

/// A channel to `endpoint` once `service` reports SERVING there (panics after
/// [`SERVING_WITHIN`]).
pub async fn serving_on(endpoint: Endpoint, service: &str) -> Channel {
    let deadline = Instant::now() + SERVING_WITHIN;
    let channel = connect(&endpoint, deadline).await;
    if let Err(e) = wait_serving(channel.clone(), service, deadline.saturating_duration_since(Instant::now())).await {
        panic!("{}: {e}", endpoint.uri());
    }
    channel
}

/// [`serving_on`] a plaintext loopback address.
pub async fn serving(addr: SocketAddr, service: &str) -> Channel {
    serving_on(endpoint(addr), service).await
}

/// `authorization: Bearer <key>` on a request.
pub fn with_key<T>(msg: T, key: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    Bearer::new(Some(key)).expect("a key of printable ASCII").apply(req.metadata_mut());
    req
}

/// The repository's root (this crate sits in `crates/testkit`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The folder of this build's binaries (next to the running test executable's `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().expect("deps/");
    if dir.ends_with("deps") { dir.parent().expect("profile folder").to_path_buf() } else { dir.to_path_buf() }
}

/// A folder of the shared evaluation data (beside the repository, in `shared/data`).
pub fn data(name: &str) -> PathBuf {
    let p = root().join("../shared/data").join(name);
    assert!(p.exists(), "evaluation data not found at {}", p.display());
    p
}
