//! The three services in this process on port 0 with the real default models, each waited
//! on through its health service.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use memgpt_proto::gateway::v1::gateway_client::GatewayClient;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A server on its own runtime thread; [`Running::stop`] or dropping it shuts it down.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Running {
    /// Stops the server and waits until it has (the memory store flushed before its folder
    /// goes away).
    fn drop(&mut self) {
        self.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn spawn<F, Fut>(run: F) -> Running
where
    F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            run(listener, stop_rx).await;
        });
    });
    Running { addr: addr_rx.recv().unwrap(), stop: Some(stop), thread: Some(thread) }
}

pub fn memory(data_dir: &std::path::Path) -> Running {
    memory_with(data_dir, &[])
}

pub fn memory_with(data_dir: &std::path::Path, extra: &[&str]) -> Running {
    let mut args = vec!["memgpt-memory", "--data-dir", data_dir.to_str().unwrap(), "--optimize-delay-ms", "50", "--shutdown-grace-secs", "1"];
    args.extend(extra);
    let config = memgpt_memory::MemoryConfig::parse_from(args);
    spawn(move |l, stop| async move {
        memgpt_memory::serve(config, l, async move {
            let _ = stop.await;
        })
        .await
        .unwrap();
    })
}

pub fn generator() -> Running {
    generator_with(&[])
}

pub fn generator_with(extra: &[&str]) -> Running {
    let mut args = vec!["memgpt-generator", "--shutdown-grace-secs", "0"];
    args.extend(extra);
    let config = memgpt_generator::GeneratorConfig::parse_from(args);
    spawn(move |l, stop| async move {
        memgpt_generator::serve(config, l, async move {
            let _ = stop.await;
        })
        .await
        .unwrap();
    })
}

pub fn gateway(memory: &[SocketAddr], generator: &[SocketAddr], extra: &[&str]) -> Running {
    gateway_with("http", memory, generator, extra)
}

pub fn gateway_with(scheme: &str, memory: &[SocketAddr], generator: &[SocketAddr], extra: &[&str]) -> Running {
    let list = |a: &[SocketAddr]| a.iter().map(|a| format!("{scheme}://{a}")).collect::<Vec<_>>().join(",");
    let mut args = vec![
        "memgpt-gateway".to_string(),
        "--memory".into(),
        list(memory),
        "--generator".into(),
        list(generator),
        "--health-interval-ms".into(),
        "200".into(),
        "--shutdown-grace-secs".into(),
        "1".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = memgpt_gateway::GatewayConfig::parse_from(args);
    spawn(move |l, stop| async move {
        memgpt_gateway::serve(config, l, async move {
            let _ = stop.await;
        })
        .await
        .unwrap();
    })
}

/// A channel once `service` reports SERVING.
pub async fn serving(addr: SocketAddr, service: &str) -> Channel {
    serving_on(tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap(), service).await
}

/// As [`serving`], on a configured endpoint (TLS).
pub async fn serving_on(endpoint: tonic::transport::Endpoint, service: &str) -> Channel {
    let addr = endpoint.uri().clone();
    let deadline = Instant::now() + Duration::from_secs(180);
    let channel = loop {
        match endpoint.connect().await {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to {addr}: {e}");
                tokio::task::yield_now().await;
            }
        }
    };
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest { service: service.into() })
        .await
        .unwrap()
        .into_inner();
    loop {
        let msg = tokio::time::timeout_at(deadline.into(), watch.message()).await.expect("SERVING in time").unwrap();
        if msg.expect("health stream open").status == ServingStatus::Serving as i32 {
            return channel;
        }
    }
}

pub async fn gateway_client(addr: SocketAddr) -> GatewayClient<Channel> {
    GatewayClient::new(serving(addr, memgpt_gateway::SERVICE_NAME).await)
}
