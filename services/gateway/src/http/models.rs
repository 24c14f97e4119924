//! `GET /v1/models` (the generator's model, its `memgpt` alias, and the encoder as the
//! embedding model) and `POST /v1/embeddings` (the gateway's encoder: the vectors memory
//! search uses, L2-normalised; `float` or `base64` encoding, as the `openai` SDK asks).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::chat::MODEL_ALIAS;
use super::{read_json, ApiError, HttpState};
use crate::stages::Gateway;
use crate::validate;

/// Most inputs of one embeddings request (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

impl HttpState {
    /// The models this server has: the generator's (and its alias), then the encoder.
    async fn models(&self, gw: &Gateway, trace: &crate::trace::Trace) -> Result<Vec<(String, &'static str)>, ApiError> {
        let chat = self.model(gw, trace).await?;
        Ok(vec![(chat, "chat"), (MODEL_ALIAS.to_string(), "chat"), (gw.config.encoder_name(), "embeddings")])
    }
}

fn model_json(id: &str, kind: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "memgpt", "memgpt": {"kind": kind}})
}

/// `GET /v1/models`.
pub async fn list(State(state): State<HttpState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let (gw, _who, trace) = state.begin(&headers)?;
    let data: Vec<Value> = state.models(&gw, &trace).await?.iter().map(|(id, kind)| model_json(id, kind)).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/models/{id}`.
pub async fn retrieve(State(state): State<HttpState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (gw, _who, trace) = state.begin(&headers)?;
    let models = state.models(&gw, &trace).await?;
    match models.iter().find(|(m, _)| *m == id) {
        Some((m, kind)) => Ok(Json(model_json(m, kind))),
        None => Err(ApiError::unknown_model(&id, &models.into_iter().map(|(m, _)| m).collect::<Vec<_>>())),
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Input,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

/// `POST /v1/embeddings`.
pub async fn embeddings(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    let (gw, _who, _trace) = state.begin(&headers)?;
    let req: EmbeddingsRequest = read_json(&state, &headers, body).await?;
    let encoder = gw.config.encoder_name();
    if req.model != encoder {
        return Err(ApiError::unknown_model(&req.model, &[encoder]));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(ApiError::invalid(Some("encoding_format".into()), format!("`{other}` is not float or base64"))),
    };
    let inputs = match req.input {
        Input::One(s) => vec![s],
        Input::Many(v) => v,
    };
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        return Err(ApiError::invalid(Some("input".into()), format!("give 1 to {MAX_INPUTS} texts (got {})", inputs.len())));
    }
    let mut tokens = 0usize;
    for (i, text) in inputs.iter().enumerate() {
        validate::text(&format!("input[{i}]"), text, gw.config.max_document_bytes)?;
        tokens += gw.tokenizer.encode_with_offsets(text).map(|(ids, _)| ids.len() + 2).unwrap_or(0);
    }
    let span = tracing::info_span!("embeddings", inputs = inputs.len(), tokens);
    let vectors = tracing::Instrument::instrument(gw.encoder.encode(inputs), span).await?;
    if let (Some(d), Some(v)) = (req.dimensions, vectors.first()) {
        if d != v.len() {
            return Err(ApiError::invalid(Some("dimensions".into()), format!("this encoder's vectors have {} dimensions (got {d})", v.len())));
        }
    }
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data, "model": encoder, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})))
}
