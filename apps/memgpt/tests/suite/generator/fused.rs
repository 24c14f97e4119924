//! The fused attend mode over gRPC: with every memory token recomputed it is exactly concat;
//! with cached states it answers from the cache (read-through, WarmMemories), attributes
//! attention per memory, and the memory-KV cache stays within its byte budget.

use super::common;

use std::time::Duration;

use common::{client, collect, config, greedy, info_until, shared, spawn};
use memgpt_proto::generator::v1 as pb;

const LIGHTHOUSE: &str = "The Harbour Point lighthouse was built in 1884 and electrified in 1931. Its last keeper, Margaret Ellison, left in 1989 when the light was automated.";
const BAKERY: &str = "The Ferris Street bakery opened in 1902. It is famous for rye bread baked in a wood-fired oven that has never been allowed to go cold.";
const RIVER: &str = "The river Alder floods most springs; the town built a stone levee along its east bank in 1957 after the great flood of 1955.";

fn memory(id: &str, text: &str) -> pb::Memory {
    pb::Memory { id: id.into(), text: text.into() }
}

fn ask(mode: pb::AttendMode, memories: &[(&str, &str)]) -> pb::GenerateRequest {
    pb::GenerateRequest {
        memories: memories.iter().map(|(id, text)| memory(id, text)).collect(),
        attend_mode: mode as i32,
        ..greedy("When was the lighthouse electrified, and who was its last keeper?", 24)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fused_with_every_memory_token_recomputed_is_exactly_concat() {
    let addr = spawn(config(&["--recompute-head-tokens", "100000", "--prefix-cache-bytes", "0", "--memory-temperature", "1.25"]));
    let mut c = client(addr).await;
    let memories = [("lighthouse.md#0", LIGHTHOUSE)];
    let (concat, concat_last) = collect(&mut c, ask(pb::AttendMode::Concat, &memories)).await.unwrap();
    // Exact attention asked for per request (the service calibrates it by default).
    let exact = pb::GenerateRequest { memory_temperature: Some(1.0), memory_scale: Some(1.0), ..ask(pb::AttendMode::Fused, &memories) };
    let (fused, fused_last) = collect(&mut c, exact.clone()).await.unwrap();
    assert!(!concat.is_empty());
    assert_eq!(fused, concat, "fused with a full recompute must be concat");
    assert_eq!(fused_last.usage, concat_last.usage);
    let (a, b) = (concat_last.attention[0].share, fused_last.attention[0].share);
    assert!((a - b).abs() < 1e-3, "attention shares {a} vs {b}");
    // The fused request went through the memory-KV cache.
    let info = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.memory_cache_misses, info.memory_cache_entries), (1, 1), "{info:?}");
    assert_eq!(info.recompute_head_tokens, 100000);
    assert_eq!((info.memory_temperature, info.memory_scale), (1.25, 1.0));
    // At the service's temperature the question's attention to the memory is flatter: the
    // first token's probabilities move.
    let first = |mut req: pb::GenerateRequest| {
        req.params.as_mut().expect("greedy sets params").first_token_logprobs = 4;
        req
    };
    let (_, plain) = collect(&mut c, first(exact)).await.unwrap();
    let (_, calibrated) = collect(&mut c, first(ask(pb::AttendMode::Fused, &memories))).await.unwrap();
    let (p, q) = (plain.first_token_logprobs[0].logprob, calibrated.first_token_logprobs[0].logprob);
    assert!((p - q).abs() > 1e-4, "first-token log-probability {p} exact, {q} calibrated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_recompute_of_every_memory_token_is_exactly_concat_and_a_share_is_reused() {
    let addr = spawn(config(&["--prefix-cache-bytes", "0", "--recompute-ratio", "0.25"]));
    let mut c = client(addr).await;
    let memories = [("river.md#0", RIVER), ("bakery.md#0", BAKERY), ("lighthouse.md#0", LIGHTHOUSE)];
    let (concat, concat_last) = collect(&mut c, ask(pb::AttendMode::Concat, &memories)).await.unwrap();
    // Ratio 1 (per request), deviation rule: the memories' states are laid in, then every
    // token is kept past layer 1 and recomputed: the answer and usage are concat's.
    let deviation = pb::RecomputeRule::Deviation as i32;
    let all = pb::GenerateRequest { recompute_ratio: Some(1.0), recompute_rule: deviation, ..ask(pb::AttendMode::Fused, &memories) };
    let (fused, fused_last) = collect(&mut c, all).await.unwrap();
    assert_eq!(fused, concat, "fused recomputing every memory token must be concat");
    assert_eq!(fused_last.usage, concat_last.usage);
    let info = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.recompute_ratio, info.recompute_rule()), (0.25, pb::RecomputeRule::Deviation));
    assert_eq!(info.memory_tokens_reused, 0, "{info:?}");
    // Ratio 1, query rule: after the first pass every memory but the first
    // (whose states are exactly concat's) is recomputed, then the question: concat again,
    // and only the first memory's tokens past its head were reused.
    let all = pb::GenerateRequest { recompute_ratio: Some(1.0), recompute_rule: pb::RecomputeRule::Query as i32, ..ask(pb::AttendMode::Fused, &memories) };
    let (fused, fused_last) = collect(&mut c, all).await.unwrap();
    assert_eq!(fused, concat, "the query rule recomputing every memory token must be concat");
    assert_eq!(fused_last.usage, concat_last.usage);
    let after_all = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    let first_memory = after_all.memory_tokens_reused;
    // Every memory but the first recomputed whole (the oracle's request, ratio 0): concat
    // again, and the same reuse (only the first memory's tokens past its head).
    let whole = pb::GenerateRequest { recompute_ratio: Some(0.0), recompute_rule: deviation, recompute_memories: vec![1, 2], ..ask(pb::AttendMode::Fused, &memories) };
    let (fused, fused_last) = collect(&mut c, whole).await.unwrap();
    assert_eq!(fused, concat, "fused with the memories after the first recomputed whole must be concat");
    assert_eq!(fused_last.usage, concat_last.usage);
    let after_whole = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(after_whole.memory_tokens_reused - first_memory, first_memory, "{after_whole:?}");
    assert!(first_memory > 10 && first_memory < 60, "reused {first_memory}: the river memory past its head");
    // The service's ratio (0.25), both rules: three quarters of the memory tokens reuse
    // cached states, and the answer still holds the fact.
    let memory_tokens = concat_last.usage.unwrap().prompt_tokens as u64 / 2;
    for rule in [pb::RecomputeRule::Query as i32, deviation] {
        let before = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
        let (some, _) = collect(&mut c, pb::GenerateRequest { recompute_rule: rule, ..ask(pb::AttendMode::Fused, &memories) }).await.unwrap();
        assert!(some.contains("1931"), "fused answer ({rule}): {some:?}");
        let after = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
        assert_eq!(after.memory_cache_hits - before.memory_cache_hits, 3, "{after:?}");
        let reused = after.memory_tokens_reused - before.memory_tokens_reused;
        assert!(reused > memory_tokens / 2, "rule {rule}: reused {reused} of about {memory_tokens}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fused_reads_through_the_cache_and_attributes_attention_per_memory() {
    let mut c = client(shared()).await;
    let before = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    let memories = [("river.md#0", RIVER), ("lighthouse.md#0", LIGHTHOUSE), ("bakery.md#0", BAKERY)];
    let (first, last) = collect(&mut c, ask(pb::AttendMode::Fused, &memories)).await.unwrap();
    assert!(first.contains("1931"), "fused answer: {first:?}");
    let shares: Vec<f32> = last.attention.iter().map(|a| a.share).collect();
    assert_eq!(last.attention.iter().map(|a| a.memory_id.as_str()).collect::<Vec<_>>(), ["river.md#0", "lighthouse.md#0", "bakery.md#0"]);
    assert!(shares.iter().all(|s| (0.0..=1.0).contains(s)), "{shares:?}");
    assert!((shares.iter().sum::<f32>() - 1.0).abs() < 1e-3, "shares are over the memories: {shares:?}");
    assert!(last.prompt_share > 0.0 && last.prompt_share < 1.0, "{}", last.prompt_share);
    // With the memories computed after the prefix and repaired in place (the defaults), no
    // memory carries an attention sink of its own: the passage that holds the answer
    // outweighs the river (1.26x at ratio 0.7, 1.3x and more at ratio 0).
    assert!(shares[1] > shares[0] * 1.1, "the lighthouse memory gets more attention than the river one: {shares:?}");
    let after = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(after.memory_cache_misses - before.memory_cache_misses, 3, "{after:?}");
    // Asked again: every memory is a hit, and the answer is the same (greedy).
    let (again, _) = collect(&mut c, ask(pb::AttendMode::Fused, &memories)).await.unwrap();
    assert_eq!(again, first);
    let third = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(third.memory_cache_misses, after.memory_cache_misses);
    assert_eq!(third.memory_cache_hits - after.memory_cache_hits, 3);
    assert!(third.memory_cache_bytes > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmed_memories_are_hits_and_the_cache_never_exceeds_its_budget() {
    // One memory of ~40 tokens holds about 1.8 MB of states with the default model: a
    // budget of 8 MB holds four of them.
    const BUDGET: u64 = 8_000_000;
    let addr = spawn(config(&["--memory-cache-bytes", &BUDGET.to_string()]));
    let mut c = client(addr).await;
    let r = c.warm_memories(pb::WarmMemoriesRequest { memories: vec![memory("lighthouse.md#0", LIGHTHOUSE), memory("bakery.md#0", BAKERY)], system: String::new() }).await.unwrap().into_inner();
    assert_eq!(r.cached, 2);
    assert!(r.bytes > 0 && r.bytes <= BUDGET);
    let (_, last) = collect(&mut c, ask(pb::AttendMode::Fused, &[("lighthouse.md#0", LIGHTHOUSE), ("bakery.md#0", BAKERY)])).await.unwrap();
    assert_eq!(last.attention.len(), 2);
    let info = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.memory_cache_hits, info.memory_cache_misses), (2, 2), "{info:?}");
    // Fill far past the budget: bytes stay within it, the oldest are evicted.
    let many: Vec<pb::Memory> = (0..24).map(|i| memory(&format!("note.md#{i}"), &format!("Note {i}: {RIVER} {BAKERY}"))).collect();
    for chunk in many.chunks(6) {
        let r = c.warm_memories(pb::WarmMemoriesRequest { memories: chunk.to_vec(), system: String::new() }).await.unwrap().into_inner();
        assert!(r.bytes <= BUDGET, "{} bytes over the budget {BUDGET}", r.bytes);
    }
    let info = info_until(&mut c, Duration::from_secs(5), |i| i.memory_cache_evictions > 0).await;
    assert!(info.memory_cache_bytes <= BUDGET && info.memory_cache_entries < 26, "{info:?}");
    // An evicted memory is computed again on use (read-through), and the answer still comes.
    let (text, _) = collect(&mut c, ask(pb::AttendMode::Fused, &[("lighthouse.md#0", LIGHTHOUSE)])).await.unwrap();
    assert!(!text.is_empty());
    let later = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(later.memory_cache_misses, info.memory_cache_misses + 1, "{later:?}");
}

/// A generator on `dir`'s disk tier that can be stopped (its writes finish on stopping).
fn on_disk(dir: &std::path::Path) -> memgpt_testkit::Running<()> {
    let config = config(&["--memory-cache-dir", dir.to_str().expect("a UTF-8 temp path"), "--prefix-cache-bytes", "0"]);
    memgpt_testkit::Running::spawn(move |listener, stop| async move { memgpt_generator::serve(config, listener, stop).await.unwrap() })
}

fn state_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "kv")).collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_generator_answers_from_disk_and_never_uses_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let memories = [("river.md#0", RIVER), ("lighthouse.md#0", LIGHTHOUSE), ("bakery.md#0", BAKERY)];
    let first = on_disk(dir.path());
    let mut c = client(first.addr).await;
    let (computed, _) = collect(&mut c, ask(pb::AttendMode::Fused, &memories)).await.unwrap();
    let info = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.memory_cache_misses, info.memory_cache_disk_entries), (3, 3), "{info:?}");
    assert!(info.memory_cache_disk_bytes > 0);
    drop(c);
    first.stopped().await;
    assert_eq!(state_files(dir.path()).len(), 3, "a stopped generator leaves its states on disk");

    // Restarted on the same directory: the first fused request reads every memory from
    // disk, computes none, and answers the same.
    let second = on_disk(dir.path());
    let mut c = client(second.addr).await;
    let (from_disk, disk_last) = collect(&mut c, ask(pb::AttendMode::Fused, &memories)).await.unwrap();
    let info = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.memory_cache_hits, info.memory_cache_disk_hits, info.memory_cache_misses), (3, 3, 0), "{info:?}");
    assert_eq!(from_disk, computed);
    let (_, ram_last) = collect(&mut c, ask(pb::AttendMode::Fused, &memories)).await.unwrap();
    eprintln!("time to first token: disk hits {:.1} ms, RAM hits {:.1} ms", disk_last.ttft_ms, ram_last.ttft_ms);
    drop(c);
    second.stopped().await;

    // One file damaged (a flipped byte): refused by its checksum, its memory computed
    // again and rewritten; the answer is still the same.
    let damaged = &state_files(dir.path())[1];
    let mut bytes = std::fs::read(damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(damaged, bytes).unwrap();
    let third = on_disk(dir.path());
    let mut c = client(third.addr).await;
    let (again, _) = collect(&mut c, ask(pb::AttendMode::Fused, &memories)).await.unwrap();
    let info = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.memory_cache_disk_hits, info.memory_cache_disk_errors, info.memory_cache_misses), (2, 1, 1), "{info:?}");
    assert_eq!(again, computed);
    drop(c);
    third.stopped().await;
    assert_eq!(state_files(dir.path()).len(), 3, "the damaged file was replaced");
}
