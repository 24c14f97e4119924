//! Load: N concurrent clients for T seconds against the cluster (Search and Ask mixed): no
//! error other than RESOURCE_EXHAUSTED, throughput and p50/p99 latency reported, each
//! process's resident memory sampled and bounded. Full size: `memgpt-load` (docs/reliability.md).

use std::time::Duration;

use integration_tests::load::{self, LoadSpec};
use integration_tests::{Cluster, Options};
use memgpt_proto::gateway::v1 as gw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_load_sees_only_overload_refusals_and_bounded_memory() {
    let cluster = Cluster::start(Options { generator_args: vec!["--max-waiting".into(), "8".into()], ..Default::default() }).await.unwrap();
    let mut c = cluster.client(None).await.unwrap();
    c.remember(gw::RememberRequest { namespace: "load".into(), documents: super::docs("item", 100), warm: false, ..Default::default() }).await.unwrap();
    let before = cluster.rss_mib();
    let spec = LoadSpec {
        clients: if super::full() { 64 } else { 24 },
        duration: Duration::from_secs(if super::full() { 120 } else { 15 }),
        ask_share: 0.3,
        namespace: "load".into(),
        questions: (0..50).map(|i| format!("What is the value of record {i} of item?")).collect(),
        max_new_tokens: 8,
        key: None,
    };
    let report = load::run(cluster.gateway.addr, &spec).await.unwrap();
    let after = cluster.rss_mib();
    eprintln!("{}", report.json(&spec));
    eprintln!("rss MiB before {before:?} after {after:?}");
    assert!(report.unexpected().is_empty(), "{:?}", report.by_code);
    assert!(report.latencies_ms.len() > 10, "{:?}", report.by_code);
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        assert!(*a > 0.0, "{name} is gone");
        assert!(a - b < 768.0, "{name} grew from {b:.0} to {a:.0} MiB under load");
    }
}
