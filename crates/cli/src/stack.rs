//! The three services in this process, each on 127.0.0.1 port 0, the gateway without
//! authentication: what `memgpt eval gateway-retrieval` runs against when no gateway is named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Running services; [`Stack::shutdown`] stops them and waits for each to finish.
pub struct Stack {
    /// The gateway's address.
    pub gateway: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Stack {
    /// Stops the gateway first, then generator and memory (which flushes its store).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for task in self.tasks.into_iter().rev() {
            task.await??;
        }
        Ok(())
    }
}

async fn bind() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let a = l.local_addr()?;
    Ok((l, a))
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

/// Starts memory (edge store under `data_dir`), generator and gateway.
pub async fn start(data_dir: &Path, models_dir: Option<PathBuf>, threads: usize) -> anyhow::Result<Stack> {
    let (stop, _) = tokio::sync::watch::channel(false);
    let until = |stop: &tokio::sync::watch::Sender<bool>| {
        let mut rx = stop.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let models = models_dir.map(|p| p.display().to_string());
    let with_models = |mut args: Vec<String>| {
        if let Some(m) = &models {
            args.extend(["--models-dir".to_string(), m.clone()]);
        }
        args
    };
    let (ml, maddr) = bind().await?;
    let memory = memgpt_memory::MemoryConfig::parse_from(["memgpt-memory", "--data-dir", &data_dir.display().to_string()]);
    let mut tasks = Vec::new();
    let m = memgpt_memory::serve(memory, ml, until(&stop));
    tasks.push(tokio::spawn(async move { m.await.map_err(anyhow::Error::from) }));
    let (gl, gaddr) = bind().await?;
    let generator = memgpt_generator::GeneratorConfig::parse_from(with_models(vec!["memgpt-generator".into(), "--threads".into(), threads.to_string()]));
    let g = memgpt_generator::serve(generator, gl, until(&stop));
    tasks.push(tokio::spawn(async move { g.await.map_err(anyhow::Error::from) }));
    let (wl, waddr) = bind().await?;
    let gateway = memgpt_gateway::GatewayConfig::parse_from(with_models(vec![
        "memgpt-gateway".into(),
        "--no-auth".into(),
        "--memory".into(),
        format!("http://{maddr}"),
        "--generator".into(),
        format!("http://{gaddr}"),
        "--encoder-threads".into(),
        threads.to_string(),
    ]));
    let w = memgpt_gateway::serve(gateway, wl, until(&stop));
    tasks.push(tokio::spawn(async move { w.await.map_err(anyhow::Error::from) }));
    wait_serving(waddr, memgpt_gateway::SERVICE_NAME, Duration::from_secs(300)).await?;
    Ok(Stack { gateway: waddr, stop, tasks })
}
