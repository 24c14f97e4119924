//! A cluster harness for the integration tests: the real service binaries (memory, generators,
//! gateway) as processes on 127.0.0.1 with free ports, each capped to a thread or two so
//! several fit on 2 cores, waited on through their health, and always torn down (killed on
//! drop). With [`Options::hosts`] each process runs on a test host of its own ([`netns`]);
//! with [`Options::link_delay`] every link goes through a proxy that delays it ([`delay`]).

pub mod delay;
pub mod load;
pub mod netns;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use memgpt_proto::gateway::v1::gateway_client::GatewayClient;
pub use memgpt_testkit::{bin_dir, data, Bearer};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A service process. Its stderr (JSON logs) is kept for failure messages.
pub struct Proc {
    /// Which binary.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    args: Vec<String>,
    /// The network namespace it runs in, if not this process's.
    netns: Option<String>,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `binary` with `args` (plus `--listen`, JSON logs and thread caps) and returns once
    /// it logged its address.
    pub fn spawn(binary: &str, listen: &str, args: &[String]) -> anyhow::Result<Self> {
        Self::spawn_in(None, binary, listen, args)
    }

    /// [`Proc::spawn`] inside the network namespace `netns` (`ip netns exec`, which becomes
    /// the binary itself).
    pub fn spawn_in(netns: Option<&str>, binary: &str, listen: &str, args: &[String]) -> anyhow::Result<Self> {
        let path = bin_dir().join(binary);
        if !path.exists() {
            bail!("{} is not built: build the workspace first (cargo build --release --workspace --all-targets)", path.display());
        }
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let mut child = command
            .args(["--listen", listen, "--log-format", "json", "--log", "info,qdrant_edge=error"])
            .args(args)
            .env("TOKIO_WORKER_THREADS", "2")
            .env("OMP_NUM_THREADS", "1")
            .env("RAYON_NUM_THREADS", "1")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", path.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addr) = tx.as_ref().and_then(|_| listen_addr(&line)) {
                        let _ = tx.take().expect("checked").send(addr);
                    }
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                bail!("{binary} did not report its address (exit {status:?}):\n{}", log.lock().unwrap().join("\n"))
            }
        };
        Ok(Self { name: binary.to_string(), addr, args: args.to_vec(), netns: netns.map(String::from), child, log })
    }

    /// SIGKILL, and wait.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (the graceful path), and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().expect("wait")
    }

    /// Starts the same binary again on the same address with the same arguments.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        let fresh = Self::spawn_in(self.netns.as_deref(), &self.name, &self.addr.to_string(), &self.args)?;
        *self = fresh;
        Ok(())
    }

    /// Resident memory in KiB (from /proc).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn listen_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("fields")?.get("addr")?.as_str()?.parse().ok()
}

/// Waits until `addr` reports `service` SERVING.
pub async fn wait_serving(addr: SocketAddr, service: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    let channel = tokio::time::timeout(within, memgpt_testkit::connect(&memgpt_testkit::endpoint(addr), deadline))
        .await
        .with_context(|| format!("cannot connect to {addr} within {within:?}"))?;
    memgpt_testkit::wait_serving(channel, service, deadline.saturating_duration_since(std::time::Instant::now()))
        .await
        .map_err(|e| anyhow::anyhow!("{addr}: {e}"))
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// Generator processes.
    pub generators: usize,
    /// API keys JSON (auth off when none).
    pub api_keys: Option<String>,
    /// Extra gateway arguments.
    pub gateway_args: Vec<String>,
    /// Extra generator arguments.
    pub generator_args: Vec<String>,
    /// Each process on a test host of its own: host 0 the gateway, 1 the memory service, 2 on
    /// the generators ([`Cluster::net`]).
    pub hosts: bool,
    /// Latency added to every link, both ways: client to gateway, gateway to each backend.
    pub link_delay: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self { generators: 2, api_keys: None, gateway_args: Vec::new(), generator_args: Vec::new(), hosts: false, link_delay: None }
    }
}

/// Memory, generators and gateway.
pub struct Cluster {
    /// The memory service.
    pub memory: Proc,
    /// The generators.
    pub generators: Vec<Proc>,
    /// The gateway.
    pub gateway: Proc,
    /// Data folder (memory store, keys file).
    pub dir: tempfile::TempDir,
    /// Where clients connect: the gateway, or the proxy in front of it.
    pub entry: SocketAddr,
    /// The proxies of [`Options::link_delay`].
    pub delays: Vec<delay::Delay>,
    /// The test hosts, with [`Options::hosts`] (last: removed after the processes end).
    pub net: Option<netns::Net>,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

impl Cluster {
    /// Starts everything and waits until the gateway is SERVING.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("memory");
        let net = if options.hosts { Some(netns::Net::new(2 + options.generators)?) } else { None };
        let host = |i: usize| net.as_ref().map(|n| &n.hosts()[i]);
        let listen = |i: usize| host(i).map_or("127.0.0.1:0".to_string(), |h| format!("{}:0", h.addr));
        let netns = |i: usize| host(i).map(|h| h.netns.as_str());
        let memory = Proc::spawn_in(netns(1), "memgpt-memory", &listen(1), &strings(&["--data-dir", data.to_str().context("path")?]))?;
        let mut generators = Vec::new();
        for i in 0..options.generators {
            let mut args = strings(&["--threads", "1", "--device", "cpu"]);
            args.extend(options.generator_args.iter().cloned());
            generators.push(Proc::spawn_in(netns(2 + i), "memgpt-generator", &listen(2 + i), &args)?);
        }
        let mut delays = Vec::new();
        // The address the gateway is given for `addr`: itself, or a delaying proxy's.
        let mut link = async |addr: SocketAddr| -> anyhow::Result<SocketAddr> {
            let Some(delay) = options.link_delay else { return Ok(addr) };
            let proxy = delay::Delay::start(addr, delay).await?;
            let entry = proxy.addr;
            delays.push(proxy);
            Ok(entry)
        };
        let memory_link = link(memory.addr).await?;
        let mut gens = Vec::new();
        for g in &generators {
            gens.push(format!("http://{}", link(g.addr).await?));
        }
        let mut args = strings(&["--memory", &format!("http://{memory_link}"), "--generator", &gens.join(",")]);
        args.extend(strings(&["--encoder-threads", "1", "--device", "cpu", "--health-interval-ms", "200"]));
        match &options.api_keys {
            Some(keys) => {
                let path = dir.path().join("keys.json");
                std::fs::write(&path, keys)?;
                args.extend(strings(&["--api-keys-file", path.to_str().context("path")?]));
            }
            None => args.push("--no-auth".into()),
        }
        args.extend(options.gateway_args.iter().cloned());
        let gateway = Proc::spawn_in(netns(0), "memgpt-gateway", &listen(0), &args)?;
        let entry = link(gateway.addr).await?;
        let cluster = Self { memory, generators, gateway, dir, entry, delays, net };
        if let Err(e) = wait_serving(cluster.gateway.addr, "memgpt.gateway.v1.Gateway", Duration::from_secs(300)).await {
            bail!("{e:#}\n--- gateway log:\n{}\n--- memory log:\n{}", cluster.gateway.log(), cluster.memory.log());
        }
        Ok(cluster)
    }

    /// A gateway client sending `key` (none: no authorization header).
    pub async fn client(&self, key: Option<&str>) -> anyhow::Result<Client> {
        client(self.entry, key).await
    }

    /// Resident memory of every process, in MiB, by name.
    pub fn rss_mib(&self) -> Vec<(String, f64)> {
        let mut all = vec![(&self.memory, "memory".to_string()), (&self.gateway, "gateway".to_string())];
        all.extend(self.generators.iter().enumerate().map(|(i, g)| (g, format!("generator-{i}"))));
        all.into_iter().map(|(p, n)| (n, p.rss_kib().unwrap_or(0) as f64 / 1024.0)).collect()
    }
}

/// A gateway client.
pub type Client = GatewayClient<InterceptedService<Channel, Bearer>>;

/// Connects to a gateway at `addr` with `key`.
pub async fn client(addr: SocketAddr, key: Option<&str>) -> anyhow::Result<Client> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
    let bearer = Bearer::new(key)?;
    Ok(GatewayClient::with_interceptor(channel, bearer).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20))
}
