//! Connecting to a gateway: address, API key (sent as `authorization: Bearer`), optional TLS;
//! and the wire form of a ranking that the client commands and batch lines ask for.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use memgpt_proto::gateway::v1::gateway_client::GatewayClient;
use memgpt_proto::generator::v1::generator_client::GeneratorClient;
use memgpt_proto::memory::v1 as mem;
use memgpt_proto::auth::Bearer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Where the gateway is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Gateway address (http://host:port, https:// for TLS, or host:port).
    #[arg(long, env = "MEMGPT_ADDR", default_value = "http://127.0.0.1:50051", global = true)]
    pub addr: String,
    /// API key.
    #[arg(long, env = "MEMGPT_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// CA certificate (PEM) that signed the gateway's certificate (implies TLS).
    #[arg(long, env = "MEMGPT_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
}

/// A gateway client with the key attached.
pub type Gateway = GatewayClient<InterceptedService<Channel, Bearer>>;

/// A generator client with the key attached.
pub type Generator = GeneratorClient<InterceptedService<Channel, Bearer>>;

impl ClientArgs {
    /// The endpoint (not yet connected).
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let tls = self.ca_cert.is_some() || self.addr.starts_with("https://");
        let uri = if self.addr.contains("://") { self.addr.clone() } else { format!("{}://{}", if tls { "https" } else { "http" }, self.addr) };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .with_context(|| format!("`{}` is not a valid gateway address", self.addr))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if tls {
            let mut config = ClientTlsConfig::new().with_enabled_roots();
            if let Some(ca) = &self.ca_cert {
                let pem = std::fs::read(ca).with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
                config = config.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(config).context("TLS configuration")?;
        }
        Ok(endpoint)
    }

    /// Connects (fails at once when nothing answers at the address).
    pub async fn connect(&self) -> anyhow::Result<Gateway> {
        let channel = self.endpoint()?.connect().await.with_context(|| format!("cannot reach the gateway at {}", self.addr))?;
        self.client(channel)
    }

    /// Connects on first use (for long jobs that should start even while the gateway restarts).
    pub fn connect_lazy(&self) -> anyhow::Result<Gateway> {
        self.client(self.endpoint()?.connect_lazy())
    }

    fn bearer(&self) -> anyhow::Result<Bearer> {
        Bearer::new(self.api_key.as_deref()).context("the API key holds characters not allowed in gRPC metadata")
    }

    fn client(&self, channel: Channel) -> anyhow::Result<Gateway> {
        Ok(GatewayClient::with_interceptor(channel, self.bearer()?).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20))
    }

    /// A generator client at the address (a generator, or `memgpt serve`, which forwards the
    /// generator API; fails at once when nothing answers).
    pub async fn connect_generator(&self) -> anyhow::Result<Generator> {
        let channel = self.endpoint()?.connect().await.with_context(|| format!("cannot reach the generator at {}", self.addr))?;
        Ok(GeneratorClient::with_interceptor(channel, self.bearer()?).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20))
    }
}

/// A gRPC status as one line: its code and message.
pub fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// A ranking from its names (unknown or absent names leave the server's default).
pub fn ranking(mode: Option<&str>, fusion: Option<&str>, rrf_k: Option<u32>, dense_weight: Option<f32>) -> mem::Retrieval {
    let mode = match mode {
        Some("dense") => mem::RetrievalMode::Dense,
        Some("sparse") => mem::RetrievalMode::Sparse,
        Some("hybrid") => mem::RetrievalMode::Hybrid,
        _ => mem::RetrievalMode::Unspecified,
    };
    let fusion = match fusion {
        Some("rrf") => mem::Fusion::Rrf,
        Some("convex") => mem::Fusion::Convex,
        _ => mem::Fusion::Unspecified,
    };
    mem::Retrieval { mode: mode as i32, fusion: fusion as i32, rrf_k, dense_weight }
}
