//! The three services in one process (`memgpt serve`, and the evaluations' in-process stack):
//! memory and generator on private loopback ports, the gateway on the public address,
//! forwarding the memory and generator APIs too. Each service gets its own typed
//! configuration; the stack fills in only the addresses that join them.
//!
//! The library of the `memgpt` package, whose binary sits above it: the one package that
//! depends on all three services.

pub mod scoring;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use memgpt_gateway::GatewayConfig;
use memgpt_generator::GeneratorConfig;
use memgpt_memory::MemoryConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Every failure of the stack.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// An address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The memory service failed.
    #[error("memory: {0}")]
    Memory(#[from] memgpt_memory::MemoryError),
    /// The generator failed.
    #[error("generator: {0}")]
    Generator(#[from] memgpt_generator::GeneratorError),
    /// The gateway failed.
    #[error("gateway: {0}")]
    Gateway(#[from] memgpt_gateway::GatewayError),
    /// The gateway did not become SERVING.
    #[error("the gateway at {addr} did not report SERVING: {reason}")]
    NotServing {
        /// Its address.
        addr: SocketAddr,
        /// What was seen.
        reason: String,
    },
    /// A service task ended abnormally.
    #[error("the {0} task panicked or was cancelled")]
    Task(&'static str),
}

/// The configuration of a stack: the public address and each service's own configuration
/// (their `listen` addresses, and the gateway's backend lists, are the stack's to set).
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The public address: the gateway, and the forwarded memory and generator APIs.
    pub listen: SocketAddr,
    /// The memory service.
    pub memory: MemoryConfig,
    /// The generator.
    pub generator: GeneratorConfig,
    /// The gateway.
    pub gateway: GatewayConfig,
    /// How long to wait for the gateway to become SERVING (models load meanwhile).
    pub ready_within: Duration,
}

type Task = tokio::task::JoinHandle<Result<(), StackError>>;

/// Running services; [`Stack::shutdown`] stops them and waits for each to finish.
pub struct Stack {
    /// The public address.
    pub addr: SocketAddr,
    /// Whether API keys are required.
    pub auth: bool,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, Task)>,
}

impl Stack {
    /// The gateway's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the gateway first, then generator and memory (which flushes its store).
    pub async fn shutdown(self) -> Result<(), StackError> {
        let _ = self.stop.send(true);
        let mut first = Ok(());
        for (name, task) in self.tasks.into_iter().rev() {
            let outcome = task.await.map_err(|_| StackError::Task(name)).and_then(|r| r);
            if first.is_ok() {
                first = outcome;
            }
        }
        first
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StackError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| StackError::Listen { addr, source })?;
    let bound = listener.local_addr().map_err(|source| StackError::Listen { addr, source })?;
    Ok((listener, bound))
}

/// Starts memory, generator and gateway and waits until the gateway is SERVING. A service
/// that fails while starting ends the wait at once with its reason.
pub async fn start(config: StackConfig) -> Result<Stack, StackError> {
    let StackConfig { listen, mut memory, mut generator, mut gateway, ready_within } = config;
    let (stop, _) = watch::channel(false);
    let until = |stop: &watch::Sender<bool>| -> memgpt_server_kit::Shutdown {
        let mut rx = stop.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|s| *s).await;
        })
    };
    let (failed_tx, mut failed) = tokio::sync::mpsc::unbounded_channel::<String>();
    let spawn = |name: &'static str, service: Pin<Box<dyn Future<Output = Result<(), StackError>> + Send>>| {
        let failed_tx = failed_tx.clone();
        let task = tokio::spawn(async move {
            let result = service.await;
            if let Err(e) = &result {
                let _ = failed_tx.send(e.to_string());
            }
            result
        });
        (name, task)
    };
    let private: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (memory_listener, memory_addr) = bind(private).await?;
    let (generator_listener, generator_addr) = bind(private).await?;
    let (gateway_listener, addr) = bind(listen).await?;
    (memory.listen, generator.listen, gateway.listen) = (memory_addr, generator_addr, addr);
    gateway.memory = vec![format!("http://{memory_addr}")];
    gateway.generator = vec![format!("http://{generator_addr}")];
    let auth = !gateway.no_auth;
    let options = memgpt_gateway::Options { forward_backends: true };
    let (memory_stop, generator_stop, gateway_stop) = (until(&stop), until(&stop), until(&stop));
    let tasks = vec![
        spawn("memory", Box::pin(async move { Ok(memgpt_memory::serve(memory, memory_listener, memory_stop).await?) })),
        spawn("generator", Box::pin(async move { Ok(memgpt_generator::serve(generator, generator_listener, generator_stop).await?) })),
        spawn("gateway", Box::pin(async move { Ok(memgpt_gateway::serve_with(gateway, gateway_listener, gateway_stop, options).await?) })),
    ];
    let stack = Stack { addr, auth, stop, tasks };
    let ready = tokio::select! {
        r = gateway_serving(addr, ready_within) => r,
        Some(why) = failed.recv() => Err(StackError::NotServing { addr, reason: format!("a service failed to start: {why}") }),
    };
    match ready {
        Ok(()) => Ok(stack),
        Err(e) => {
            let _ = stack.shutdown().await;
            Err(e)
        }
    }
}

/// Follows the gateway's health watch stream until it reports SERVING.
async fn gateway_serving(addr: SocketAddr, within: Duration) -> Result<(), StackError> {
    let not_serving = |reason: String| StackError::NotServing { addr, reason };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).map_err(|e| not_serving(e.to_string()))?;
    let work = async {
        let channel = endpoint.connect().await.map_err(|e| not_serving(e.to_string()))?;
        let request = HealthCheckRequest { service: memgpt_gateway::SERVICE_NAME.into() };
        let mut watch = HealthClient::new(channel).watch(request).await.map_err(|s| not_serving(s.to_string()))?.into_inner();
        while let Some(msg) = watch.message().await.map_err(|s| not_serving(s.to_string()))? {
            if msg.status == ServingStatus::Serving as i32 {
                return Ok(());
            }
        }
        Err(not_serving("the health stream ended".into()))
    };
    tokio::time::timeout(within, work).await.map_err(|_| not_serving(format!("not within {within:?}")))?
}
