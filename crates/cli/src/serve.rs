//! `memgpt serve`: gateway, memory (edge store) and generator in one process. The memory and
//! generator services listen on private loopback ports; the public address serves the
//! gateway and forwards the memory and generator APIs too (to keys allowed every namespace
//! when auth is on). Also what the evaluations start when no gateway is named.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Options of `memgpt serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address of the public gRPC port.
    #[arg(long, env = "MEMGPT_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Folder of the memory store (created when missing).
    #[arg(long, env = "MEMGPT_DATA_DIR", default_value = "memgpt-data")]
    pub data_dir: PathBuf,
    /// Folder of the model files (default: models/ at the repository root).
    #[arg(long, env = "MEMGPT_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Device of the encoder and decoder: auto, cpu or cuda:N.
    #[arg(long, env = "MEMGPT_DEVICE", default_value = "auto")]
    pub device: String,
    /// Intra-op threads of each model (0: all cores).
    #[arg(long, env = "MEMGPT_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Attend mode of requests that leave it unset.
    #[arg(long, env = "MEMGPT_ATTEND_MODE", default_value = "concat", value_parser = ["concat", "fused"])]
    pub attend_mode: String,
    /// Fused mode: leading tokens of each cached memory recomputed in place (default: the
    /// generator's, 4).
    #[arg(long, env = "MEMGPT_RECOMPUTE_HEAD_TOKENS")]
    pub recompute_head_tokens: Option<u32>,
    /// Fused mode: share (0 to 1) of each cached memory's other tokens also recomputed, the
    /// ones whose states deviate most (default: the generator's).
    #[arg(long, env = "MEMGPT_RECOMPUTE_RATIO")]
    pub recompute_ratio: Option<f32>,
    /// Fused mode: bytes of memory key/value states kept (default: the generator's, 1 GiB).
    #[arg(long, env = "MEMGPT_MEMORY_CACHE_BYTES")]
    pub memory_cache_bytes: Option<u64>,
    /// API keys file (JSON: [{"key": "...", "namespaces": ["*"], "rate_per_s": 50}]).
    #[arg(long, env = "MEMGPT_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Serve without authentication on a non-loopback address (loopback without keys is
    /// always served without).
    #[arg(long)]
    pub no_auth: bool,
    /// Address of the Prometheus `/metrics` endpoint (the gateway's and the process's metrics).
    #[arg(long, env = "MEMGPT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl ServeArgs {
    /// Defaults for an in-process stack on a free loopback port.
    pub fn loopback(data_dir: PathBuf, models_dir: Option<PathBuf>, threads: usize) -> Self {
        let mut args = Self::parse_from(["serve"]);
        args.listen = "127.0.0.1:0".parse().expect("literal address");
        (args.data_dir, args.models_dir, args.threads) = (data_dir, models_dir, threads);
        args
    }
}

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    serve: ServeArgs,
}

impl ServeArgs {
    fn parse_from<const N: usize>(argv: [&str; N]) -> Self {
        Wrapper::parse_from(argv).serve
    }
}

/// Running services; [`Stack::shutdown`] stops them and waits for each to finish.
pub struct Stack {
    /// The public address.
    pub addr: SocketAddr,
    /// Whether API keys are required.
    pub auth: bool,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Stack {
    /// The gateway's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the gateway first, then generator and memory (which flushes its store).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for task in self.tasks.into_iter().rev() {
            task.await??;
        }
        Ok(())
    }
}

/// Waits until `addr` reports `service` SERVING (follows the health watch stream).
pub async fn wait_serving(addr: SocketAddr, service: &str, within: Duration) -> anyhow::Result<()> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?;
    let work = async {
        let channel = loop {
            if let Ok(c) = endpoint.connect().await {
                break c;
            }
            tokio::task::yield_now().await;
        };
        let mut watch = HealthClient::new(channel).watch(HealthCheckRequest { service: service.into() }).await?.into_inner();
        while let Some(msg) = watch.message().await? {
            if msg.status == ServingStatus::Serving as i32 {
                return Ok(());
            }
        }
        anyhow::bail!("{addr}: the health stream ended")
    };
    tokio::time::timeout(within, work).await.with_context(|| format!("{addr} did not report {service} SERVING within {within:?}"))?
}

async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let a = l.local_addr()?;
    Ok((l, a))
}

/// Starts memory, generator and gateway and waits until the gateway is SERVING.
pub async fn start(args: &ServeArgs) -> anyhow::Result<Stack> {
    let keys = match &args.api_keys_file {
        Some(path) => Some(path.display().to_string()),
        None => None,
    };
    let auth = match (&keys, args.listen.ip().is_loopback(), args.no_auth) {
        (Some(_), _, true) => anyhow::bail!("--no-auth and --api-keys-file contradict each other"),
        (Some(_), _, false) => true,
        (None, true, _) => {
            tracing::warn!(listen = %args.listen, "authentication is off: loopback address and no API keys configured");
            false
        }
        (None, false, true) => false,
        (None, false, false) => anyhow::bail!(
            "{} is not a loopback address: give --api-keys-file (or MEMGPT_API_KEYS_FILE), or --no-auth to serve it without authentication",
            args.listen
        ),
    };
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("cannot create the data folder {}", args.data_dir.display()))?;
    let (stop, _) = tokio::sync::watch::channel(false);
    let until = |stop: &tokio::sync::watch::Sender<bool>| {
        let mut rx = stop.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let models: Vec<String> = args.models_dir.iter().flat_map(|m| ["--models-dir".to_string(), m.display().to_string()]).collect();
    let threads = args.threads.to_string();
    let mut tasks = Vec::new();
    // A service that fails while starting ends the wait at once with its reason.
    let (failed_tx, mut failed) = tokio::sync::mpsc::unbounded_channel::<String>();
    let spawn = |name: &'static str, fut: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>| {
        let failed_tx = failed_tx.clone();
        tokio::spawn(async move {
            let result = fut.await;
            if let Err(e) = &result {
                let _ = failed_tx.send(format!("{name}: {e:#}"));
            }
            result
        })
    };

    let (ml, maddr) = bind("127.0.0.1:0".parse()?).await?;
    let memory = memgpt_memory::MemoryConfig::try_parse_from(["memgpt-memory", "--data-dir", &args.data_dir.display().to_string()])?;
    let m = memgpt_memory::serve(memory, ml, until(&stop));
    tasks.push(spawn("memory", Box::pin(async move { m.await.map_err(anyhow::Error::from) })));

    let (gl, gaddr) = bind("127.0.0.1:0".parse()?).await?;
    let mut g_argv: Vec<String> = ["memgpt-generator", "--threads", &threads, "--device", &args.device].map(String::from).to_vec();
    g_argv.extend(models.iter().cloned());
    if let Some(k) = args.recompute_head_tokens {
        g_argv.extend(["--recompute-head-tokens".to_string(), k.to_string()]);
    }
    if let Some(r) = args.recompute_ratio {
        g_argv.extend(["--recompute-ratio".to_string(), r.to_string()]);
    }
    if let Some(b) = args.memory_cache_bytes {
        g_argv.extend(["--memory-cache-bytes".to_string(), b.to_string()]);
    }
    let generator = memgpt_generator::GeneratorConfig::try_parse_from(g_argv)?;
    let g = memgpt_generator::serve(generator, gl, until(&stop));
    tasks.push(spawn("generator", Box::pin(async move { g.await.map_err(anyhow::Error::from) })));

    let (wl, waddr) = bind(args.listen).await?;
    let mut w_argv: Vec<String> = [
        "memgpt-gateway",
        "--memory",
        &format!("http://{maddr}"),
        "--generator",
        &format!("http://{gaddr}"),
        "--encoder-threads",
        &threads,
        "--device",
        &args.device,
        "--default-attend-mode",
        &args.attend_mode,
    ]
    .map(String::from)
    .to_vec();
    w_argv.extend(models.iter().cloned());
    match &keys {
        Some(path) => w_argv.extend(["--api-keys-file".to_string(), path.clone()]),
        None => w_argv.push("--no-auth".into()),
    }
    if let Some(m) = args.metrics_listen {
        w_argv.extend(["--metrics-listen".to_string(), m.to_string()]);
    }
    let gateway = memgpt_gateway::GatewayConfig::try_parse_from(w_argv)?;
    let options = memgpt_gateway::Options { forward_backends: true };
    let w = memgpt_gateway::serve_with(gateway, wl, until(&stop), options);
    tasks.push(spawn("gateway", Box::pin(async move { w.await.map_err(anyhow::Error::from) })));
    let stack = Stack { addr: waddr, auth, stop, tasks };
    let ready = tokio::select! {
        r = wait_serving(waddr, memgpt_gateway::SERVICE_NAME, Duration::from_secs(600)) => r,
        Some(why) = failed.recv() => Err(anyhow::anyhow!("a service failed to start: {why}")),
    };
    if let Err(e) = ready {
        let _ = stack.stop.send(true);
        for task in stack.tasks {
            let _ = task.await;
        }
        return Err(e);
    }
    Ok(stack)
}

/// `memgpt serve`: runs until SIGINT or SIGTERM.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let stack = tokio::select! {
            s = start(&args) => s?,
            () = memgpt_telemetry::lifecycle::shutdown_signal() => return Ok(()),
        };
        tracing::info!(addr = %stack.addr, auth = stack.auth, data_dir = %args.data_dir.display(), "serving");
        eprintln!(
            "memgpt serving on {} (gateway, memory, generator; auth {}; data in {})",
            stack.addr,
            if stack.auth { "on" } else { "off" },
            args.data_dir.display()
        );
        memgpt_telemetry::lifecycle::shutdown_signal().await;
        eprintln!("stopping");
        stack.shutdown().await
    })
}

/// Runs `job` on a new runtime against `addr`, or without one against an in-process stack
/// (`configure` adjusts its loopback options; its data lives in a temporary folder), which is
/// stopped afterwards whatever the job's outcome.
pub fn against<T, F, Fut>(addr: Option<&str>, model: &crate::ModelArgs, configure: impl FnOnce(&mut ServeArgs), job: F) -> anyhow::Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match addr {
            Some(a) => job(a.to_string()).await,
            None => {
                let data = tempfile::tempdir()?;
                let mut serve = ServeArgs::loopback(data.path().to_path_buf(), model.models_dir.clone(), model.threads);
                configure(&mut serve);
                let stack = start(&serve).await?;
                let outcome = job(stack.url()).await;
                stack.shutdown().await?;
                outcome
            }
        }
    })
}
