//! The OpenAI-compatible HTTP/JSON API (`--http-listen`), over the same flows, keys, rate
//! limits and validation as gRPC:
//!
//! - `POST /v1/chat/completions` ([`chat`]): the question is the last user message, answered
//!   through encode → retrieve → attend → decode → output over the namespaces of the `memgpt`
//!   extension object; `stream: true` sends server-sent events; citations ride in `memgpt`;
//! - `POST /v1/embeddings`, `GET /v1/models` ([`models`]);
//! - `/v1/memories` ([`memories`]): remember (documents as text or files), search, forget;
//! - `GET /openapi.json` ([`openapi`]), `GET /healthz`.
//!
//! Errors are OpenAI-shaped (`{"error": {"message", "type", "param", "code"}}`) with the
//! HTTP status an OpenAI client expects ([`error`]); the server kit adds a span and the
//! request metrics to every route.

pub mod chat;
pub mod error;
pub mod json;
pub mod memories;
pub mod models;
pub mod openapi;

use std::sync::Arc;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use self::error::ApiError;
use crate::auth::{Auth, Principal};
use crate::rpc::GatewaySlot;
use crate::stages::Gateway;
use crate::trace::Trace;

/// What every HTTP handler runs on.
#[derive(Clone)]
pub struct HttpState {
    slot: GatewaySlot,
    auth: Arc<Auth>,
    max_body: usize,
    model: Arc<OnceCell<String>>,
}

impl HttpState {
    /// The state over the gateway's slot and keys; bodies over `max_body` bytes are refused.
    pub fn new(slot: GatewaySlot, auth: Arc<Auth>, max_body: usize) -> Self {
        Self { slot, auth, max_body, model: Arc::default() }
    }

    /// Authenticates the request (and takes a token of its key's rate), then the gateway.
    fn begin(&self, headers: &HeaderMap) -> Result<(Arc<Gateway>, Principal, Trace), ApiError> {
        let header = headers.get(axum::http::header::AUTHORIZATION).map(|v| v.to_str().unwrap_or_default());
        let who = self.auth.authorize_header(header)?;
        let gw = self.slot.get().cloned().ok_or(crate::GatewayError::Unavailable("encoder (still loading)"))?;
        Ok((gw, who, Trace::current()))
    }

    /// The generator's model, as an id (asked once; it names the model in every answer).
    async fn model(&self, gw: &Gateway, trace: &Trace) -> Result<String, ApiError> {
        let name = self
            .model
            .get_or_try_init(|| async {
                gw.generator.info(trace).await.map(|i| slug(&i.model)).filter(|m| !m.is_empty()).ok_or(crate::GatewayError::Unavailable("generator"))
            })
            .await?;
        Ok(name.clone())
    }
}

/// A model name as an id: lower case, words joined by `-` ("SmolLM2 135M" is `smollm2-135m`).
fn slug(name: &str) -> String {
    name.split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '_')).filter(|w| !w.is_empty()).collect::<Vec<_>>().join("-").to_lowercase()
}

/// The JSON body of a request, within the size limit: 413 over it, 400 naming the field (its
/// path) when the JSON is malformed or a field has the wrong type.
async fn read_json<T: DeserializeOwned>(state: &HttpState, headers: &HeaderMap, body: Body) -> Result<T, ApiError> {
    let declared = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.max_body) {
        return Err(ApiError::too_large(state.max_body));
    }
    let bytes = axum::body::to_bytes(body, state.max_body).await.map_err(|_| ApiError::too_large(state.max_body))?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(None, format!("the body is not valid JSON: {inner}"))
        } else {
            let param = (path != ".").then_some(path);
            ApiError::invalid(param.clone(), format!("{}: {inner}", param.as_deref().unwrap_or("the body")))
        }
    })
}

async fn healthz(axum::extract::State(state): axum::extract::State<HttpState>) -> axum::http::StatusCode {
    match state.slot.get() {
        Some(gw) if gw.memory.pool().any_healthy() && gw.generator.pool().any_healthy() => axum::http::StatusCode::OK,
        _ => axum::http::StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Every route of the HTTP API.
pub fn router(state: HttpState) -> axum::Router {
    axum::Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/embeddings", post(models::embeddings))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::retrieve))
        .route("/v1/memories", post(memories::remember))
        .route("/v1/memories/search", post(memories::search))
        .route("/v1/memories/forget", post(memories::forget))
        .route("/openapi.json", get(openapi::document))
        .route("/healthz", get(healthz))
        .fallback(|uri: axum::http::Uri| async move { ApiError::not_found(format!("unknown request URL: {}", uri.path())) })
        .with_state(state)
}
