//! Cache-aware routing of generations: the rule itself, and two real generators behind one
//! gateway, where a warmed document's states live on one generator and the fused asks over
//! it all go there (its memory-KV cache answers them), while least-in-flight warms both.

use super::common;

use memgpt_gateway::clients::affinity::{choose, key, Candidate, KeySet};
use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::generator::v1 as gen;

fn c(held: usize, in_flight: usize) -> Candidate {
    Candidate { held, in_flight }
}

#[test]
fn the_generator_holding_most_memories_wins_within_the_load_bound() {
    assert_eq!(choose(&[c(1, 0), c(3, 2)], 4), Some(1));
    assert_eq!(choose(&[c(1, 0), c(3, 5)], 4), Some(0), "over the bound: least in flight");
    assert_eq!(choose(&[c(0, 3), c(0, 1)], 4), Some(1), "nothing held: least in flight");
    assert_eq!(choose(&[c(2, 1), c(2, 0)], 4), Some(1), "equal holdings: the less loaded");
    assert_eq!(choose(&[c(0, 0), c(0, 0)], 4), Some(0), "all equal: the first (round robin)");
    assert_eq!(choose(&[], 4), None);
}

#[test]
fn the_routing_record_forgets_the_least_recently_used() {
    let mut s = KeySet::new(3);
    s.insert(&[1, 2, 3]);
    s.insert(&[1]);
    s.insert(&[4]);
    assert_eq!(s.count(&[1, 2, 3, 4]), 3);
    assert_eq!(s.count(&[2]), 0, "2 was the least recently used");
    for i in 0..10_000 {
        s.insert(&[1, 100 + i % 2]);
    }
    assert_eq!(s.len(), 3);
    assert_eq!(s.count(&[1, 100, 101]), 3);
    // An endpoint found down is forgotten whole (it may come back with an empty cache).
    s.clear();
    assert!(s.is_empty() && s.count(&[1, 100, 101]) == 0);
    s.insert(&[7]);
    assert_eq!((s.len(), s.count(&[7])), (1, 1));
    let k = key("s", "a", "t");
    assert_eq!(k, key("s", "a", "t"));
    assert!(k != key("s2", "a", "t") && k != key("s", "b", "t") && k != key("s", "a", "t2"));
}

async fn info(addr: std::net::SocketAddr) -> gen::InfoResponse {
    let channel = common::serving(addr, "memgpt.generator.v1.Generator").await;
    gen::generator_client::GeneratorClient::new(channel).info(gen::InfoRequest {}).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fused_asks_go_to_the_generator_that_holds_their_memories() {
    let dir = tempfile::tempdir().unwrap();
    let memory = common::memory(dir.path());
    let generators = [common::generator(), common::generator()];
    let addrs = [generators[0].addr, generators[1].addr];
    // Both serving before the gateway's first health checks, which would otherwise take a
    // generator still loading its model out until the next.
    for addr in addrs {
        common::serving(addr, "memgpt.generator.v1.Generator").await;
    }
    let document = gw::Document { id: "lake".into(), text: "Lake Sorrel freezes every winter, from December to March.".into(), ..Default::default() };
    let ask = gw::AskRequest {
        question: "When does Lake Sorrel freeze?".into(),
        namespaces: vec!["kb".into()],
        top_k: Some(1),
        attend_mode: gen::AttendMode::Fused as i32,
        params: Some(gen::SamplingParams { max_new_tokens: Some(4), ..Default::default() }),
        ..Default::default()
    };

    // Least in flight: warming reaches both generators.
    let gateway = common::gateway(&[memory.addr], &addrs, &["--no-auth", "--generator-routing", "least-in-flight"]);
    let mut client = common::gateway_client(gateway.addr).await;
    let remember = gw::RememberRequest { namespace: "kb".into(), documents: vec![document.clone()], warm: true, ..Default::default() };
    assert_eq!(client.remember(remember).await.unwrap().into_inner().warmed_chunks, 1);
    for addr in addrs {
        assert_eq!(info(addr).await.memory_cache_entries, 1, "least-in-flight warms every generator");
    }
    drop(client);
    drop(gateway);

    // Cache-aware (the default): a second namespace's document warmed on one generator only,
    // and every fused ask over it answered there from its cache.
    let gateway = common::gateway(&[memory.addr], &addrs, &["--no-auth"]);
    let mut client = common::gateway_client(gateway.addr).await;
    let document = gw::Document { id: "pond".into(), text: "Pond Alder dries out every August.".into(), ..Default::default() };
    let remember = gw::RememberRequest { namespace: "kb2".into(), documents: vec![document], warm: true, ..Default::default() };
    assert_eq!(client.remember(remember).await.unwrap().into_inner().warmed_chunks, 1);
    let entries = [info(addrs[0]).await.memory_cache_entries, info(addrs[1]).await.memory_cache_entries];
    let holder = if entries[0] == 2 { 0 } else { 1 };
    assert_eq!(entries[holder], 2, "{entries:?}: one generator holds both documents");
    assert_eq!(entries[1 - holder], 1, "{entries:?}: the other only the first");
    let before = [info(addrs[0]).await, info(addrs[1]).await];
    for _ in 0..4 {
        let answer = client.ask(gw::AskRequest { question: "When does Pond Alder dry out?".into(), namespaces: vec!["kb2".into()], ..ask.clone() }).await.unwrap();
        assert!(!answer.into_inner().answer.is_empty());
    }
    let after = [info(addrs[0]).await, info(addrs[1]).await];
    let looked_up = |i: usize| after[i].memory_cache_hits + after[i].memory_cache_misses - before[i].memory_cache_hits - before[i].memory_cache_misses;
    assert_eq!(after[holder].memory_cache_hits - before[holder].memory_cache_hits, 4, "every ask hit on the holder");
    assert_eq!(looked_up(1 - holder), 0, "no ask went to the other generator");
}
