//! Faults of Qdrant itself, on nodes these tests start from `QDRANT_BIN` (skipped without it):
//! a node killed with SIGKILL and restarted while a writer keeps writing, in a 3-node cluster
//! (the node the memory service talks to first) and on a single server. Every write the memory
//! service acknowledged is there afterwards, and every other one was refused UNAVAILABLE. In
//! the cluster (2 replicas per shard, both acknowledging each write) reads go on while the node
//! is down and health stays SERVING; writes, which need the dead node's replicas, are refused
//! until it is back. On the single server health is NOT_SERVING only while it is down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memgpt_proto::memory::v1 as pb;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use super::common::{client, config, record, start, vector, wait_serving};
use super::qdrant_nodes::{qdrant_bin, Qdrant};

type Client = pb::memory_client::MemoryClient<Channel>;

/// Outcomes of a writer that upserts batches of 50 until stopped.
#[derive(Default)]
struct Written {
    acknowledged: Vec<String>,
    /// The code of each refusal, and the first refusals' messages.
    refused: Vec<tonic::Code>,
    messages: Vec<String>,
}

fn writer(mut c: Client, written: Arc<Mutex<Written>>, running: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut b = 0u64;
        while running.load(std::sync::atomic::Ordering::SeqCst) {
            let records: Vec<pb::Record> = (0..50).map(|i| record(&format!("w{b}-{i}"), b * 50 + i, "written", &[])).collect();
            let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
            match c.upsert(pb::UpsertRequest { namespace: "faults".into(), records, wait: true }).await {
                Ok(_) => written.lock().unwrap().acknowledged.extend(ids),
                Err(status) => {
                    {
                        let mut written = written.lock().unwrap();
                        written.refused.push(status.code());
                        if written.messages.len() < 3 {
                            written.messages.push(status.message().to_string());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            b += 1;
        }
    })
}

/// Waits until the writer has `n` more acknowledged records than now.
async fn more_acknowledged(written: &Mutex<Written>, n: usize, within: Duration) {
    let target = written.lock().unwrap().acknowledged.len() + n;
    let deadline = Instant::now() + within;
    while written.lock().unwrap().acknowledged.len() < target {
        assert!(Instant::now() < deadline, "fewer than {n} records acknowledged within {within:?}: {:?}", written.lock().unwrap().messages);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn health(channel: &Channel) -> i32 {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    health.check(request).await.map(|r| r.into_inner().status).unwrap_or(ServingStatus::Unknown as i32)
}

async fn wait_health(channel: &Channel, want: ServingStatus, within: Duration) -> Duration {
    let started = Instant::now();
    while health(channel).await != want as i32 {
        assert!(started.elapsed() < within, "health not {want:?} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// Every acknowledged record is there, and nothing else was written but the refused batches.
async fn every_acknowledged_record_is_there(c: &mut Client, written: &Written) {
    for chunk in written.acknowledged.chunks(1000) {
        let got = c.get(pb::GetRequest { namespace: "faults".into(), ids: chunk.to_vec(), with_vectors: false }).await.unwrap().into_inner();
        assert_eq!(got.records.len(), chunk.len(), "an acknowledged record is missing");
    }
    let count = c.count(pb::CountRequest { namespace: "faults".into() }).await.unwrap().into_inner().count as usize;
    let most = written.acknowledged.len() + 50 * written.refused.len();
    assert!(count >= written.acknowledged.len() && count <= most, "count {count}, acknowledged {}", written.acknowledged.len());
}

/// Qdrant nodes, the memory service in front of them, and a writer that has 2,000 records
/// acknowledged.
struct Scene {
    qdrant: Qdrant,
    server: super::common::InProcess,
    channel: Channel,
    c: Client,
    written: Arc<Mutex<Written>>,
    running: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Scene {
    /// `nodes` Qdrant nodes (none: the test is skipped) and a collection of `shards` shards
    /// with `replicas` replicas, each write acknowledged by all of them.
    async fn start(test: &str, nodes: usize, shards: u32, replicas: u32) -> Option<Self> {
        let bin = qdrant_bin(test)?;
        let qdrant = tokio::task::spawn_blocking(move || Qdrant::start(&bin, nodes)).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (urls, shards, replicas) = (qdrant.urls(), shards.to_string(), replicas.to_string());
        let flags = ["--store", "qdrant", "--qdrant-url", &urls, "--qdrant-collection", "faults", "--qdrant-shard-number", &shards];
        let more = ["--qdrant-replication-factor", &replicas, "--qdrant-write-consistency-factor", &replicas, "--qdrant-timeout-ms", "2000"];
        let server = start(config(dir.path(), &[&flags[..], &more[..]].concat())).await;
        let channel = wait_serving(server.addr).await;
        let c = client(channel.clone());
        let (written, running) = (Arc::new(Mutex::new(Written::default())), Arc::new(std::sync::atomic::AtomicBool::new(true)));
        let task = writer(c.clone(), Arc::clone(&written), Arc::clone(&running));
        more_acknowledged(&written, 2000, Duration::from_secs(60)).await;
        Some(Self { qdrant, server, channel, c, written, running, task, _dir: dir })
    }

    /// Stops the writer; what it wrote.
    async fn stop_writing(&mut self) -> Written {
        self.running.store(false, std::sync::atomic::Ordering::SeqCst);
        (&mut self.task).await.unwrap();
        std::mem::take(&mut *self.written.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_killed_mid_write_loses_no_acknowledged_record() {
    let Some(mut scene) = Scene::start("a_cluster_node_killed_mid_write_loses_no_acknowledged_record", 3, 3, 2).await else { return };
    let (channel, mut c, written) = (scene.channel.clone(), scene.c.clone(), Arc::clone(&scene.written));

    // The first URL is the node the store talks to.
    scene.qdrant.nodes[0].kill9();
    let before = written.lock().unwrap().acknowledged.clone();
    let search = pb::SearchRequest { namespace: "faults".into(), vector: vector(7), top_k: 5, ..Default::default() };
    let started = Instant::now();
    assert_eq!(c.search(search.clone()).await.unwrap().into_inner().hits.len(), 5, "reads go on with a node down");
    let first_read = started.elapsed();
    let got = c.get(pb::GetRequest { namespace: "faults".into(), ids: before[..500].to_vec(), with_vectors: false }).await.unwrap();
    assert_eq!(got.into_inner().records.len(), 500, "lookups go on with a node down");
    assert!(c.count(pb::CountRequest { namespace: "faults".into() }).await.unwrap().into_inner().count >= before.len() as u64);
    assert_eq!(health(&channel).await, ServingStatus::Serving as i32, "two of three nodes serve");
    // Writes need both replicas of their shards: they are refused while the node is down.
    let deadline = Instant::now() + Duration::from_secs(30);
    while written.lock().unwrap().refused.len() < 5 {
        assert!(Instant::now() < deadline, "writes were not refused with a node down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(health(&channel).await, ServingStatus::Serving as i32, "still serving reads");

    let restarted = Instant::now();
    tokio::task::block_in_place(|| scene.qdrant.nodes[0].restart());
    let ready = restarted.elapsed();
    more_acknowledged(&written, 2000, Duration::from_secs(60)).await;
    let writes_back = restarted.elapsed();
    let written = scene.stop_writing().await;
    every_acknowledged_record_is_there(&mut c, &written).await;
    eprintln!(
        "3 nodes: {} records acknowledged, {} batches refused while a node was down; first read after the kill {first_read:?}; node ready {ready:?} after its restart, 2000 more records acknowledged {writes_back:?} after it",
        written.acknowledged.len(),
        written.refused.len(),
    );
    assert!(written.refused.iter().all(|code| *code == tonic::Code::Unavailable), "refusals are UNAVAILABLE: {:?}", written.refused);
    scene.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_qdrant_killed_mid_write_is_not_serving_until_back_and_loses_nothing() {
    let Some(mut scene) = Scene::start("a_single_qdrant_killed_mid_write_is_not_serving_until_back_and_loses_nothing", 1, 2, 1).await else { return };
    let (channel, mut c, written) = (scene.channel.clone(), scene.c.clone(), Arc::clone(&scene.written));
    scene.qdrant.nodes[0].kill9();
    let to_not_serving = wait_health(&channel, ServingStatus::NotServing, Duration::from_secs(10)).await;
    let down = written.lock().unwrap().acknowledged.len();
    tokio::task::block_in_place(|| scene.qdrant.nodes[0].restart());
    let to_serving = wait_health(&channel, ServingStatus::Serving, Duration::from_secs(10)).await;
    more_acknowledged(&written, 2000, Duration::from_secs(60)).await;
    let written = scene.stop_writing().await;
    every_acknowledged_record_is_there(&mut c, &written).await;
    assert!(!written.refused.is_empty(), "writes while Qdrant was down were refused");
    assert!(written.refused.iter().all(|code| *code == tonic::Code::Unavailable), "refusals are UNAVAILABLE: {:?}", written.refused);
    eprintln!(
        "1 node: {} records acknowledged ({down} before the kill), {} batches refused while down; NOT_SERVING {to_not_serving:?} after the kill, SERVING {to_serving:?} after the restart",
        written.acknowledged.len(),
        written.refused.len()
    );
    scene.server.stop().await.unwrap();
}
