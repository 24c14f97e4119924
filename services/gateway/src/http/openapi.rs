//! `GET /openapi.json`: the HTTP API described as OpenAPI 3.1 (no key needed).

use axum::Json;
use serde_json::{json, Value};

fn body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn answers(schema: &str, description: &str) -> Value {
    json!({
        "200": {"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
        "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/Error"},
        "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}
    })
}

fn filter() -> Value {
    json!({"type": "object", "properties": {"must": {"type": "array", "items": {"type": "object", "required": ["key"], "properties": {
        "key": {"type": "string"}, "equals": {"type": "string"}, "any_of": {"type": "array", "items": {"type": "string"}},
        "range": {"type": "object", "properties": {"gt": {"type": "number"}, "gte": {"type": "number"}, "lt": {"type": "number"}, "lte": {"type": "number"}}}}}}}})
}

fn retrieval() -> Value {
    json!({"type": "object", "required": ["mode"], "properties": {"mode": {"enum": ["dense", "sparse", "hybrid"]}, "fusion": {"enum": ["rrf", "convex"]},
        "rrf_k": {"type": "integer", "minimum": 1}, "dense_weight": {"type": "number", "minimum": 0, "maximum": 1}}})
}

/// The document.
pub async fn document() -> Json<Value> {
    let citation = json!({"type": "object", "properties": {
        "memory_id": {"type": "string"}, "document_id": {"type": "string"}, "namespace": {"type": "string"},
        "score": {"type": "number", "description": "retrieval score (cosine, BM25 or fused)"},
        "attention": {"type": "number", "description": "share of the answer's attention on the memories that went to this one (they sum to 1)"},
        "ablation": {"type": "number", "description": "with attribution ablation: the drop in the answer's log-likelihood (nats) without this memory"},
        "snippet": {"type": "string"}, "page": {"type": "integer", "description": "PDF page the chunk is from"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}});
    let extension = json!({"type": "object", "description": "MemGPT extension: what is searched and how", "properties": {
        "namespaces": {"type": "array", "items": {"type": "string"}}, "top_k": {"type": "integer"}, "filter": filter(),
        "min_score": {"type": "number"}, "retrieval": retrieval(), "attend_mode": {"enum": ["concat", "fused"]},
        "max_hops": {"type": "integer", "minimum": 1}, "as_of": {"type": "string", "format": "date-time"},
        "answer_style": {"enum": ["free", "extractive"]}, "attribution": {"enum": ["attention", "ablation"]},
        "order_by_attribution": {"type": "boolean"}, "max_sentences": {"type": "integer", "minimum": 0}}});
    let message = json!({"type": "object", "required": ["role", "content"], "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant"]},
        "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}}]}}});
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "MemGPT gateway", "version": env!("CARGO_PKG_VERSION"),
                 "description": "OpenAI-compatible chat completions and embeddings, answered from memory, and memories over REST."},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/chat/completions": {"post": {"summary": "Answer the last user message from memory (stream: server-sent events)",
                "requestBody": body("ChatCompletionRequest"), "responses": answers("ChatCompletion", "the answer, or text/event-stream chunks when stream is true")}},
            "/v1/embeddings": {"post": {"summary": "Vectors of the encoder memory search uses", "requestBody": body("EmbeddingsRequest"), "responses": answers("Embeddings", "one vector per input")}},
            "/v1/models": {"get": {"summary": "The chat model, its alias and the embedding model", "responses": answers("Models", "the models")}},
            "/v1/models/{id}": {"get": {"summary": "One model", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "responses": answers("Model", "the model")}},
            "/v1/memories": {"post": {"summary": "Remember documents (text, or files: PDF, HTML, Markdown) and facts", "requestBody": body("RememberRequest"), "responses": answers("RememberResponse", "each document's result")}},
            "/v1/memories/search": {"post": {"summary": "Search memory", "requestBody": body("SearchRequest"), "responses": answers("SearchResponse", "citations, best first")}},
            "/v1/memories/forget": {"post": {"summary": "Forget documents, what a filter matches, or the expired", "requestBody": body("ForgetRequest"), "responses": answers("ForgetResponse", "chunks deleted")}},
            "/healthz": {"get": {"summary": "200 when the gateway can answer", "security": [], "responses": {"200": {"description": "serving"}, "503": {"description": "not serving"}}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "an API key of the gateway"}},
            "responses": {"Error": {"description": "an OpenAI-shaped error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
                "Citation": citation,
                "ChatCompletionRequest": {"type": "object", "required": ["model", "messages"], "properties": {
                    "model": {"type": "string"}, "messages": {"type": "array", "items": message}, "temperature": {"type": "number"}, "top_p": {"type": "number"},
                    "max_tokens": {"type": "integer"}, "max_completion_tokens": {"type": "integer"}, "seed": {"type": "integer"},
                    "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}, "stream": {"type": "boolean"},
                    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}, "memgpt": extension}},
                "ChatCompletion": {"type": "object", "properties": {"id": {"type": "string"}, "object": {"const": "chat.completion"}, "created": {"type": "integer"},
                    "model": {"type": "string"}, "choices": {"type": "array"}, "usage": {"type": "object"},
                    "memgpt": {"type": "object", "properties": {"citations": {"type": "array", "items": {"$ref": "#/components/schemas/Citation"}}, "trace_id": {"type": "string"}, "timings": {"type": "object"}}}}},
                "EmbeddingsRequest": {"type": "object", "required": ["model", "input"], "properties": {"model": {"type": "string"},
                    "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}, "encoding_format": {"enum": ["float", "base64"]}, "dimensions": {"type": "integer"}}},
                "Embeddings": {"type": "object", "properties": {"object": {"const": "list"}, "data": {"type": "array"}, "model": {"type": "string"}, "usage": {"type": "object"}}},
                "Model": {"type": "object", "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "owned_by": {"type": "string"}}},
                "Models": {"type": "object", "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}},
                "RememberRequest": {"type": "object", "required": ["namespace"], "properties": {"namespace": {"type": "string"},
                    "documents": {"type": "array", "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "text": {"type": "string"},
                        "content_base64": {"type": "string", "contentEncoding": "base64"}, "media_type": {"enum": ["application/pdf", "text/html", "application/xhtml+xml", "text/markdown", "text/plain"]},
                        "metadata": {"type": "object", "additionalProperties": {"type": "string"}}, "valid_from": {"type": "string"}, "valid_until": {"type": "string"}}}},
                    "facts": {"type": "array", "items": {"type": "object", "required": ["subject", "relation", "object"]}}, "warm": {"type": "boolean"}, "ttl_seconds": {"type": "integer"}}},
                "RememberResponse": {"type": "object", "properties": {"results": {"type": "array", "items": {"type": "object", "properties": {
                    "document_id": {"type": "string"}, "chunks": {"type": "integer"}, "status": {"enum": ["stored", "failed"]}, "error": {"type": "string"}}}}, "warmed_chunks": {"type": "integer"}}},
                "SearchRequest": {"type": "object", "required": ["question", "namespaces"], "properties": {"question": {"type": "string"},
                    "namespaces": {"type": "array", "items": {"type": "string"}}, "top_k": {"type": "integer"}, "filter": filter(), "min_score": {"type": "number"},
                    "group_by_document": {"type": "boolean"}, "retrieval": retrieval(), "as_of": {"type": "string"}}},
                "SearchResponse": {"type": "object", "properties": {"citations": {"type": "array", "items": {"$ref": "#/components/schemas/Citation"}}, "trace_id": {"type": "string"}}},
                "ForgetRequest": {"type": "object", "required": ["namespace"], "properties": {"namespace": {"type": "string"},
                    "document_ids": {"type": "array", "items": {"type": "string"}}, "filter": filter(), "expired": {"type": "boolean"}}},
                "ForgetResponse": {"type": "object", "properties": {"forgotten": {"type": "integer"}}}
            }
        }
    }))
}
