//! `serve`: the Gateway service on a bound listener (the server kit does health, reflection,
//! TLS and the drain). Health is SERVING while the encoder is loaded and at least one memory
//! and one generator endpoint is healthy. With `--http-listen` the OpenAI-compatible HTTP API
//! (`crate::http`) is served beside it, under the same drain.

use std::sync::Arc;
use std::time::Duration;

use memgpt_models::encoder::bert::Precision;
use memgpt_models::encoder::{EncoderConfig, EncoderHandle};
use memgpt_models::text::tokenizer::TextTokenizer;
use memgpt_proto::gateway::v1::gateway_server::GatewayServer;
use memgpt_server_kit::{HttpFace, Server, Serving, Shutdown, TlsFiles};
use tokio::net::TcpListener;
use tokio::sync::OnceCell;

use crate::auth::Auth;
use crate::clients::{GeneratorClient, MemoryClient, Pool, RouteLimits};
use crate::config::GatewayConfig;
use crate::error::{GatewayError, Result};
use crate::flows::chat::Sessions;
use crate::http::HttpState;
use crate::rpc::forward::{Forward, Forwarded, GeneratorApi, MemoryApi};
use crate::rpc::{GatewayService, GatewaySlot};
use crate::stages::encode::Encoder;
use crate::stages::Gateway;

/// Fully qualified name of the Gateway service, as health reports it.
pub const SERVICE_NAME: &str = "memgpt.gateway.v1.Gateway";

/// The API keys the configuration names (auth off only when asked for).
pub fn auth(config: &GatewayConfig) -> Result<Auth> {
    match (&config.api_keys_file, &config.api_keys, config.no_auth) {
        (_, _, true) => {
            tracing::warn!("authentication is disabled (--no-auth)");
            Ok(Auth::disabled())
        }
        (Some(path), _, false) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| GatewayError::invalid("api_keys_file", format!("cannot read {}: {e}", path.display())))?;
            Auth::from_json(&text, "api_keys_file")
        }
        (None, Some(json), false) => Auth::from_json(json, "api_keys"),
        (None, None, false) => Err(GatewayError::invalid(
            "api_keys",
            "no API keys configured: give --api-keys-file or MEMGPT_GATEWAY_API_KEYS, or --no-auth to serve without authentication",
        )),
    }
}

/// How the gateway serves beyond its own API.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Also serve the memory and generator APIs on this port, forwarded to the pools (the
    /// all-in-one server); their health follows the pools.
    pub forward_backends: bool,
}

/// Serves until `shutdown` resolves, then drains in-flight calls within the grace period.
pub fn serve(config: GatewayConfig, listener: TcpListener, shutdown: Shutdown) -> Serving<GatewayError> {
    serve_with(config, listener, shutdown, Options::default())
}

/// [`serve`] with [`Options`].
#[inline(never)]
pub fn serve_with(config: GatewayConfig, listener: TcpListener, shutdown: Shutdown, options: Options) -> Serving<GatewayError> {
    Box::pin(run(config, listener, shutdown, options))
}

async fn run(config: GatewayConfig, listener: TcpListener, shutdown: Shutdown, options: Options) -> Result<()> {
    let auth = Arc::new(auth(&config)?);
    let device = memgpt_models::device::parse_device(&config.device)?;
    let links = memgpt_server_kit::tls::client(config.backend_ca.as_ref(), config.backend_cert.as_ref(), config.backend_key.as_ref())
        .map_err(|e| GatewayError::invalid("backend_ca", e))?;
    let keepalive = Duration::from_millis(config.backend_keepalive_ms);
    let memory = Pool::new("memory", "memgpt.memory.v1.Memory", &config.memory, links.as_ref(), keepalive)?;
    let limits = RouteLimits { entries: config.generator_routing_entries as usize, load_bound: config.generator_load_bound };
    let generator = Pool::with_routing("generator", "memgpt.generator.v1.Generator", &config.generator, links.as_ref(), keepalive, limits)?;
    let interval = Duration::from_millis(config.health_interval_ms.max(50));
    memory.spawn_health_checks(interval);
    generator.spawn_health_checks(interval);
    let tokenizer = TextTokenizer::from_file(&config.encoder_dir().join("tokenizer.json"))?.without_truncation()?;

    let config = Arc::new(config);
    let slot: GatewaySlot = Arc::new(OnceCell::new());
    let sessions = Arc::new(Sessions::default());
    let forward_memory = options.forward_backends.then(|| Forward::<MemoryApi>::new(Arc::clone(&memory), Arc::clone(&auth)));
    let forward_generator =
        options.forward_backends.then(|| Forward::<GeneratorApi>::new(Arc::clone(&generator), Arc::clone(&auth)));
    let service = GatewayServer::new(GatewayService::new(Arc::clone(&slot), Arc::clone(&auth), Arc::clone(&sessions)))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);

    let precision = config.encoder_precision.parse::<Precision>()?;
    let encoder = EncoderHandle::spawn(EncoderConfig {
        dir: config.encoder_dir(),
        device,
        precision,
        batch_size: config.encoder_batch,
        queue: config.encoder_queue,
        threads: config.encoder_threads,
    });
    let http = match config.http_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.map_err(|e| GatewayError::invalid("http_listen", format!("cannot listen on {addr}: {e}")))?;
            let state = HttpState::new(Arc::clone(&slot), Arc::clone(&auth), config.http_max_body_bytes);
            Some(HttpFace::new(listener, crate::http::router(state)))
        }
        None => None,
    };
    let server = Server::new(SERVICE_NAME)
        .http(http)
        .tls(TlsFiles { cert: config.tls_cert.clone(), key: config.tls_key.clone(), client_ca: config.tls_client_ca.clone() })
        .grace(Duration::from_secs(config.shutdown_grace_secs))
        .metrics(config.metrics_listen);
    let ready = {
        let (slot, health, config) = (Arc::clone(&slot), server.health(), Arc::clone(&config));
        async move {
            encoder.wait_ready().await.inspect_err(|e| tracing::error!(error = %e, "the encoder did not load"))?;
            let ms = |ms: u64| Duration::from_millis(ms);
            let gw = Arc::new(Gateway {
                config: Arc::clone(&config),
                encoder: Encoder::new(encoder, config.encode_timeout_ms, config.encoder_batch),
                tokenizer,
                memory: MemoryClient::new(memory, ms(config.retrieve_timeout_ms), ms(config.write_timeout_ms)),
                generator: GeneratorClient::new(generator, ms(config.generate_timeout_ms), ms(config.retrieve_timeout_ms), config.generator_routing),
            });
            Sessions::spawn_expiry(Arc::clone(&gw), sessions, Duration::from_secs(config.session_idle_secs.max(1)));
            let _ = slot.set(Arc::clone(&gw));
            let mut last = None;
            health
                .follow(interval, || {
                    let (m, g) = (gw.memory.pool().any_healthy(), gw.generator.pool().any_healthy());
                    let changed = last.replace((m, g)) != Some((m, g));
                    let health = health.clone();
                    async move {
                        if changed {
                            tracing::info!(memory = m, generator = g, "backend health changed");
                            if options.forward_backends {
                                health.set_service(MemoryApi::NAME, m).await;
                                health.set_service(GeneratorApi::NAME, g).await;
                            }
                        }
                        m && g
                    }
                })
                .await;
            Ok::<(), GatewayError>(())
        }
    };
    let mut routes = tonic::service::Routes::new(service);
    if let (Some(memory), Some(generator)) = (forward_memory, forward_generator) {
        routes = routes.add_service(memory).add_service(generator);
    }
    server.serve(listener, routes, ready, shutdown).await
}
