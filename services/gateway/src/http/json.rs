//! The JSON shapes the HTTP API shares between routes (filters, rankings, citations) and
//! their proto counterparts. Enums are lower-case words (`"hybrid"`, `"fused"`); a wrong
//! one is a 400 naming its field.

use memgpt_proto::gateway::v1::{Citation, Timings};
use memgpt_proto::generator::v1::{self as gen, AnswerStyle, AttendMode};
use memgpt_proto::memory::v1 as mem;
use serde::Deserialize;
use serde_json::{json, Value};

/// `{"must": [{"key": "lang", "equals": "en"}, {"key": "year", "range": {"gte": 2020}}]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Every condition must hold.
    #[serde(default)]
    pub must: Vec<Condition>,
}

/// One condition of a [`Filter`]: `equals`, `any_of` or `range`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The metadata key.
    pub key: String,
    /// The value equals this.
    #[serde(default)]
    pub equals: Option<String>,
    /// The value is one of these.
    #[serde(default)]
    pub any_of: Option<Vec<String>>,
    /// The value, as a number, is within bounds.
    #[serde(default)]
    pub range: Option<Range>,
}

/// Bounds of a numeric condition.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Greater than.
    pub gt: Option<f64>,
    /// At least.
    pub gte: Option<f64>,
    /// Less than.
    pub lt: Option<f64>,
    /// At most.
    pub lte: Option<f64>,
}

impl Filter {
    /// The proto filter; a condition with none or several predicates is refused (`field`).
    pub fn to_proto(&self, field: &str) -> Result<mem::Filter, super::ApiError> {
        use mem::condition::Predicate;
        let mut must = Vec::with_capacity(self.must.len());
        for (i, c) in self.must.iter().enumerate() {
            let predicate = match (&c.equals, &c.any_of, &c.range) {
                (Some(v), None, None) => Predicate::Equals(v.clone()),
                (None, Some(values), None) => Predicate::AnyOf(mem::AnyOf { values: values.clone() }),
                (None, None, Some(r)) => Predicate::Range(mem::Range { gt: r.gt, gte: r.gte, lt: r.lt, lte: r.lte }),
                _ => return Err(super::ApiError::invalid(Some(format!("{field}.must[{i}]")), "give exactly one of `equals`, `any_of`, `range`")),
            };
            must.push(mem::Condition { key: c.key.clone(), predicate: Some(predicate) });
        }
        Ok(mem::Filter { must })
    }
}

/// The lists searched.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Cosine over the encoder's vectors.
    Dense,
    /// BM25.
    Sparse,
    /// Both, fused.
    Hybrid,
}

/// How hybrid fuses its lists.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// Reciprocal rank.
    Rrf,
    /// Min-max normalised scores, weighted.
    Convex,
}

/// `{"mode": "hybrid", "fusion": "convex", "dense_weight": 0.5}` (unset: the gateway's default).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retrieval {
    /// The lists searched.
    pub mode: Mode,
    /// How hybrid fuses them.
    #[serde(default)]
    pub fusion: Option<Fusion>,
    /// RRF's k.
    #[serde(default)]
    pub rrf_k: Option<u32>,
    /// The dense list's weight of a convex fusion.
    #[serde(default)]
    pub dense_weight: Option<f32>,
}

impl Retrieval {
    /// The proto ranking.
    pub fn to_proto(self) -> mem::Retrieval {
        let mode = match self.mode {
            Mode::Dense => mem::RetrievalMode::Dense,
            Mode::Sparse => mem::RetrievalMode::Sparse,
            Mode::Hybrid => mem::RetrievalMode::Hybrid,
        };
        let fusion = match self.fusion {
            None => mem::Fusion::Unspecified,
            Some(Fusion::Rrf) => mem::Fusion::Rrf,
            Some(Fusion::Convex) => mem::Fusion::Convex,
        };
        mem::Retrieval { mode: mode as i32, fusion: fusion as i32, rrf_k: self.rrf_k, dense_weight: self.dense_weight }
    }
}

/// How the decoder attends to the memories.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attend {
    /// In the prompt.
    Concat,
    /// Their cached key/value states.
    Fused,
}

/// The proto attend mode (unset: the gateway's default).
pub fn attend_mode(mode: Option<Attend>) -> i32 {
    match mode {
        None => AttendMode::Unspecified as i32,
        Some(Attend::Concat) => AttendMode::Concat as i32,
        Some(Attend::Fused) => AttendMode::Fused as i32,
    }
}

/// How the answer is written.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// The model's own words.
    Free,
    /// A verbatim span of a memory.
    Extractive,
}

/// The proto answer style (unset: the gateway's default).
pub fn answer_style(style: Option<Style>) -> i32 {
    match style {
        None => AnswerStyle::Unspecified as i32,
        Some(Style::Free) => AnswerStyle::Free as i32,
        Some(Style::Extractive) => AnswerStyle::Extractive as i32,
    }
}

/// How the memories' part in the answer is scored.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attribution {
    /// Attention shares.
    Attention,
    /// Attention shares and leave-one-out scores.
    Ablation,
}

/// The proto attribution (unset: attention).
pub fn attribution(a: Option<Attribution>) -> i32 {
    match a {
        None => gen::Attribution::Unspecified as i32,
        Some(Attribution::Attention) => gen::Attribution::Attention as i32,
        Some(Attribution::Ablation) => gen::Attribution::Ablation as i32,
    }
}

/// The quoted span of an extractive answer: memory id, its index among the citations and the
/// character offsets in its text.
pub fn quote(q: &gen::Quote) -> Value {
    json!({"memory_id": q.memory_id, "citation": q.memory_index, "start": q.start, "end": q.end})
}

/// A citation as JSON: the memory, its document and namespace, the retrieval score, the
/// attention share (and ablation score when asked for), the snippet and the chunk's metadata
/// (`page`, `heading`, ...).
pub fn citation(c: &Citation) -> Value {
    let mut v = json!({
        "memory_id": c.memory_id,
        "document_id": c.document_id,
        "namespace": c.namespace,
        "score": c.score,
        "attention": c.attention,
        "snippet": c.snippet,
        "metadata": c.metadata,
    });
    if let Some(page) = c.metadata.get("page").and_then(|p| p.parse::<u32>().ok()) {
        v["page"] = json!(page);
    }
    if let Some(a) = c.ablation {
        v["ablation"] = json!(a);
    }
    if c.hop > 1 {
        v["hop"] = json!(c.hop);
        v["via"] = json!(c.via);
        v["via_entity"] = json!(c.via_entity);
    }
    v
}

/// Stage timings as JSON.
pub fn timings(t: Option<&Timings>) -> Value {
    let t = t.cloned().unwrap_or_default();
    json!({"encode_ms": t.encode_ms, "retrieve_ms": t.retrieve_ms, "generate_ms": t.generate_ms, "ttft_ms": t.ttft_ms, "total_ms": t.total_ms})
}
