//! Output: the answer with its citations (memory id, document, retrieval score, attention
//! share and ablation score, snippet), the span an extractive answer quotes, usage,
//! per-stage timings and the trace id; each stage's latency goes to the
//! `memgpt_gateway_stage_seconds` histogram.

use memgpt_proto::gateway::v1::{AskResponse, Citation, Timings};
use memgpt_proto::generator::v1 as gen;

use super::retrieve::Retrieved;
use crate::trace::Trace;

const SNIPPET_CHARS: usize = 240;

/// Citations of the retrieved memories, with the generator's attention shares and ablation
/// scores. A fact read in a path (see `graph::memories`) has the path's.
pub fn citations(hits: &[Retrieved], attention: &[gen::MemoryAttention]) -> Vec<Citation> {
    let (memories, read_in) = super::graph::memories(hits);
    let of = |i: usize| {
        let m = read_in[i];
        attention.get(m).filter(|a| memories.get(m).is_some_and(|mem| mem.id == a.memory_id))
    };
    hits.iter()
        .enumerate()
        .map(|(i, r)| Citation {
            memory_id: r.hit.id.clone(),
            document_id: r.document_id(),
            score: r.hit.score,
            attention: of(i).map_or(0.0, |a| a.share),
            ablation: of(i).and_then(|a| a.ablation),
            snippet: r.hit.text.chars().take(SNIPPET_CHARS).collect(),
            namespace: r.namespace.clone(),
            dense_rank: r.hit.dense_rank,
            sparse_rank: r.hit.sparse_rank,
            hop: r.hop,
            via: r.via.clone(),
            via_entity: r.via_entity.clone(),
            metadata: r.hit.metadata.clone(),
        })
        .collect()
}

/// The attribution a citation is ordered by: its ablation score when there is one, else its
/// attention share.
fn attribution(c: &Citation) -> f32 {
    c.ablation.unwrap_or(c.attention)
}

/// The answer to a question from the generator's final message, its citations by retrieval
/// or (`by_attribution`) by attribution, highest first; records the stage metrics.
pub fn answer(trace: &Trace, hits: &[Retrieved], last: gen::GenerateFinal, timings: Timings, by_attribution: bool) -> AskResponse {
    let _output = tracing::info_span!("output", citations = hits.len()).entered();
    let stages = [("encode", timings.encode_ms), ("retrieve", timings.retrieve_ms), ("generate", timings.generate_ms), ("total", timings.total_ms)];
    for (stage, ms) in stages {
        memgpt_telemetry::metrics::histogram("memgpt_gateway_stage_seconds", "Latency of each stage of a question.", &[("stage", stage)], memgpt_telemetry::metrics::SECONDS_BUCKETS)
            .observe(ms / 1e3);
    }
    let mut cited = citations(hits, &last.attention);
    if by_attribution {
        cited.sort_by(|a, b| attribution(b).total_cmp(&attribution(a)));
    }
    // The quoted memory's index among the citations, which are not the generator's order.
    let quote = last.quote.and_then(|q| {
        let at = cited.iter().position(|c| c.memory_id == q.memory_id)?;
        Some(gen::Quote { memory_index: at as u32, ..q })
    });
    // An extractive answer is exactly the span its offsets name; a free one is trimmed.
    let answer = if quote.is_some() { last.text } else { last.text.trim().to_string() };
    AskResponse {
        answer,
        quote,
        prompt_share: last.prompt_share,
        citations: cited,
        usage: last.usage,
        timings: Some(Timings { ttft_ms: last.ttft_ms, ..timings }),
        trace_id: trace.trace_id.clone(),
        finish_reason: last.finish_reason,
    }
}
