//! API keys: `authorization: Bearer <key>`, each key allowed a set of namespaces (exact names,
//! `prefix*` patterns or `*`) and a request rate (token bucket). Keys are never logged; a key
//! is known in logs and session namespaces by a short id derived from it.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;

use crate::error::{GatewayError, Result};

#[derive(Debug, Deserialize)]
struct KeySpec {
    key: String,
    #[serde(default)]
    id: Option<String>,
    namespaces: Vec<String>,
    #[serde(default)]
    rate_per_s: Option<f64>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Key {
    id: String,
    namespaces: Vec<String>,
    rate: Option<f64>,
    bucket: Mutex<Bucket>,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Short id of the key ("anonymous" when auth is off).
    pub key_id: String,
    namespaces: Option<Vec<String>>,
}

impl Principal {
    /// The namespace patterns of the key (none when auth is off).
    pub fn patterns(&self) -> &[String] {
        self.namespaces.as_deref().unwrap_or(&[])
    }

    /// Fails with PERMISSION_DENIED unless the key may use every namespace (`*`): what direct
    /// calls to the memory and generator services need where they share the gateway's port.
    pub fn check_operator(&self, service: &str) -> Result<()> {
        match &self.namespaces {
            Some(p) if !p.iter().any(|p| p == "*") => Err(GatewayError::PermissionDenied(format!(
                "direct calls to {service} need a key allowed every namespace (`*`)"
            ))),
            _ => Ok(()),
        }
    }

    /// Fails with PERMISSION_DENIED unless the key may use `namespace`.
    pub fn check(&self, field: &str, namespace: &str) -> Result<()> {
        let Some(patterns) = &self.namespaces else { return Ok(()) };
        let allowed = patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => namespace.starts_with(prefix),
            None => p == namespace,
        });
        if allowed {
            Ok(())
        } else {
            Err(GatewayError::PermissionDenied(format!("this API key may not use namespace `{namespace}` (in `{field}`)")))
        }
    }
}

/// The configured keys, or auth turned off.
pub struct Auth {
    keys: Option<HashMap<String, Key>>,
}

fn key_id(key: &str) -> String {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    format!("k{:012x}", h.finish() & 0xffff_ffff_ffff)
}

impl Auth {
    /// Whether keys are required.
    pub fn enabled(&self) -> bool {
        self.keys.is_some()
    }

    /// No authentication (only when configured explicitly).
    pub fn disabled() -> Self {
        Self { keys: None }
    }

    /// Keys from JSON text (`source` names where it came from, for errors).
    pub fn from_json(json: &str, source: &str) -> Result<Self> {
        let specs: Vec<KeySpec> = serde_json::from_str(json)
            .map_err(|e| GatewayError::invalid(source, format!("API keys must be a JSON list of {{key, namespaces, rate_per_s}}: {e}")))?;
        let mut keys = HashMap::new();
        for (i, s) in specs.into_iter().enumerate() {
            if s.key.len() < 16 {
                return Err(GatewayError::invalid(format!("{source}[{i}].key"), "keys must be at least 16 characters"));
            }
            if s.rate_per_s.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                return Err(GatewayError::invalid(format!("{source}[{i}].rate_per_s"), "must be a number > 0"));
            }
            let id = s.id.unwrap_or_else(|| key_id(&s.key));
            let rate = s.rate_per_s;
            let bucket = Mutex::new(Bucket { tokens: rate.unwrap_or(0.0).max(1.0), last: Instant::now() });
            if keys.insert(s.key, Key { id, namespaces: s.namespaces, rate, bucket }).is_some() {
                return Err(GatewayError::invalid(format!("{source}[{i}].key"), "the same key is listed twice"));
            }
        }
        if keys.is_empty() {
            return Err(GatewayError::invalid(source, "no API keys are configured (use --no-auth to serve without them)"));
        }
        Ok(Self { keys: Some(keys) })
    }

    /// Authenticates a gRPC call from its metadata and takes one token of its key's rate.
    pub fn authorize(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Principal> {
        self.authorize_header(metadata.get("authorization").map(|v| v.to_str().unwrap_or_default()))
    }

    /// Authenticates the value of an `authorization` header (gRPC metadata or HTTP) and takes
    /// one token of its key's rate.
    pub fn authorize_header(&self, header: Option<&str>) -> Result<Principal> {
        let Some(keys) = &self.keys else {
            return Ok(Principal { key_id: "anonymous".into(), namespaces: None });
        };
        let header = header.ok_or_else(|| GatewayError::Unauthenticated("missing `authorization: Bearer <API key>`".into()))?;
        let token = header.strip_prefix("Bearer ").map(str::trim);
        let key = token
            .and_then(|t| keys.get(t))
            .ok_or_else(|| GatewayError::Unauthenticated("the API key is not valid".into()))?;
        if let Some(rate) = key.rate {
            let mut b = key.bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate.max(1.0));
            b.last = now;
            if b.tokens < 1.0 {
                let wait_ms = ((1.0 - b.tokens) / rate * 1e3).ceil() as u64;
                return Err(GatewayError::Exhausted { message: format!("API key {} is over its rate of {rate} requests/s", key.id), retry_after_ms: wait_ms });
            }
            b.tokens -= 1.0;
        }
        Ok(Principal { key_id: key.id.clone(), namespaces: Some(key.namespaces.clone()) })
    }
}
