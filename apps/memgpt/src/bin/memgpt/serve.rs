//! `memgpt serve`: the options of the all-in-one stack (`memgpt_stack`: gateway, memory with
//! the edge store, generator in one process; the memory and generator APIs forwarded on the
//! public address to keys allowed every namespace when auth is on). Also what the
//! evaluations start when no gateway is named.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use memgpt_gateway::GatewayConfig;
use memgpt_generator::GeneratorConfig;
use memgpt_memory::MemoryConfig;
use memgpt_stack::{Stack, StackConfig};

/// Options of `memgpt serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address of the public gRPC port.
    #[arg(long, env = "MEMGPT_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Address of the OpenAI-compatible HTTP/JSON API beside it (none when unset).
    #[arg(long, env = "MEMGPT_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Folder of the memory store (created when missing).
    #[arg(long, env = "MEMGPT_DATA_DIR", default_value = "memgpt-data")]
    pub data_dir: PathBuf,
    /// Models folder, device and threads of the encoder and the decoder.
    #[command(flatten)]
    pub model: crate::ModelArgs,
    /// Attend mode of requests that leave it unset.
    #[arg(long, env = "MEMGPT_ATTEND_MODE", default_value = "concat", value_parser = ["concat", "fused"])]
    pub attend_mode: String,
    /// Fused mode: leading tokens of each cached memory recomputed in place (default: the
    /// generator's, 4).
    #[arg(long, env = "MEMGPT_RECOMPUTE_HEAD_TOKENS")]
    pub recompute_head_tokens: Option<u32>,
    /// Fused mode: share (0 to 1) of the cached memory tokens also recomputed, picked by the
    /// recompute rule (default: the generator's).
    #[arg(long, env = "MEMGPT_RECOMPUTE_RATIO")]
    pub recompute_ratio: Option<f32>,
    /// Fused mode: which memory tokens are recomputed, `query` or `deviation` (default: the
    /// generator's, deviation).
    #[arg(long, env = "MEMGPT_RECOMPUTE_RULE", value_enum)]
    pub recompute_rule: Option<memgpt_generator::engine::RecomputeRule>,
    /// Fused mode: temperature and scale of the attention to memories, each 0.25 to 4 (1 and
    /// 1: exact; default: the generator's).
    #[arg(long, env = "MEMGPT_MEMORY_TEMPERATURE")]
    pub memory_temperature: Option<f32>,
    #[arg(long, env = "MEMGPT_MEMORY_SCALE")]
    pub memory_scale: Option<f32>,
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
    pub fn loopback(data_dir: PathBuf, model: &crate::ModelArgs) -> Self {
        let mut args = Self::parse_from(["serve"]);
        args.listen = "127.0.0.1:0".parse().expect("literal address");
        (args.data_dir, args.model) = (data_dir, model.clone());
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

impl ServeArgs {
    /// The stack's configuration: each service's defaults with this command's options, and
    /// the authentication the address calls for (off only on loopback without keys).
    pub fn stack_config(&self) -> anyhow::Result<StackConfig> {
        let loopback = self.listen.ip().is_loopback() && self.http_listen.is_none_or(|a| a.ip().is_loopback());
        let auth = match (&self.api_keys_file, loopback, self.no_auth) {
            (Some(_), _, true) => anyhow::bail!("--no-auth and --api-keys-file contradict each other"),
            (Some(_), _, false) => true,
            (None, true, _) => {
                tracing::warn!(listen = %self.listen, "authentication is off: loopback address and no API keys configured");
                false
            }
            (None, false, true) => false,
            (None, false, false) => anyhow::bail!(
                "{} is not a loopback address: give --api-keys-file (or MEMGPT_API_KEYS_FILE), or --no-auth to serve it without authentication",
                self.http_listen.filter(|a| !a.ip().is_loopback()).unwrap_or(self.listen)
            ),
        };
        let mut memory = MemoryConfig::defaults();
        memory.data_dir = self.data_dir.clone();
        let mut generator = GeneratorConfig::defaults();
        let m = &self.model;
        (generator.threads, generator.device, generator.models_dir) = (m.threads, m.device.clone(), m.models_dir.clone());
        if let Some(k) = self.recompute_head_tokens {
            generator.recompute_head_tokens = k;
        }
        if let Some(r) = self.recompute_ratio {
            anyhow::ensure!((0.0..=1.0).contains(&r), "--recompute-ratio {r} is not between 0 and 1");
            generator.recompute_ratio = r;
        }
        if let Some(rule) = self.recompute_rule {
            generator.recompute_rule = rule;
        }
        for (flag, value, field) in [("--memory-temperature", self.memory_temperature, &mut generator.memory_temperature), ("--memory-scale", self.memory_scale, &mut generator.memory_scale)] {
            if let Some(v) = value {
                anyhow::ensure!(memgpt_generator::validate::MEMORY_CALIBRATION.contains(&v), "{flag} {v} is not between 0.25 and 4");
                *field = v;
            }
        }
        if let Some(b) = self.memory_cache_bytes {
            generator.memory_cache_bytes = b;
        }
        let mut gateway = GatewayConfig::defaults();
        (gateway.encoder_threads, gateway.device, gateway.models_dir) = (m.threads, m.device.clone(), m.models_dir.clone());
        gateway.default_attend_mode = Some(self.attend_mode.clone());
        (gateway.metrics_listen, gateway.http_listen) = (self.metrics_listen, self.http_listen);
        (gateway.api_keys_file, gateway.no_auth) = (self.api_keys_file.clone(), !auth);
        Ok(StackConfig { listen: self.listen, memory, generator, gateway, ready_within: Duration::from_secs(600) })
    }
}

/// Starts the stack of `args` once its data folder exists.
pub async fn start(args: &ServeArgs) -> anyhow::Result<Stack> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("cannot create the data folder {}", args.data_dir.display()))?;
    Ok(memgpt_stack::start(args.stack_config()?).await?)
}

/// `memgpt serve`: runs until SIGINT or SIGTERM.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let stack = tokio::select! {
            s = start(&args) => s?,
            () = memgpt_server_kit::shutdown_signal() => return Ok(()),
        };
        tracing::info!(addr = %stack.addr, auth = stack.auth, data_dir = %args.data_dir.display(), "serving");
        eprintln!(
            "memgpt serving on {} (gateway, memory, generator; auth {}; data in {})",
            stack.addr,
            if stack.auth { "on" } else { "off" },
            args.data_dir.display()
        );
        if let Some(http) = args.http_listen {
            eprintln!("OpenAI-compatible HTTP API on http://{http}/v1 (chat model `memgpt`; /openapi.json)");
        }
        memgpt_server_kit::shutdown_signal().await;
        eprintln!("stopping");
        Ok(stack.shutdown().await?)
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
                let mut serve = ServeArgs::loopback(data.path().to_path_buf(), model);
                configure(&mut serve);
                let stack = start(&serve).await?;
                let outcome = job(stack.url()).await;
                stack.shutdown().await?;
                outcome
            }
        }
    })
}
