//! Acknowledged means durable: 100,000 records (20,000 on a Qdrant server or cluster) upserted
//! in batches of 500 to the real binary, `kill -9` (while a further writer is mid-flight),
//! restart on the same directory or collection: every acknowledged record is there and Count
//! agrees. On every store of `common::stores`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use integration_tests::Proc;

use super::common::{client, stores, wait_serving, Store};
use memgpt_proto::memory::v1 as pb;

const DIM: usize = 384;

/// Starts the real binary on port 0 (the cluster harness reads its address from its log and
/// kills it on drop).
fn spawn(data_dir: &Path, store: &Store) -> Proc {
    let mut args = vec!["--dimension".to_string(), DIM.to_string()];
    args.extend(store.flags.iter().cloned());
    args.extend(["--data-dir".to_string(), data_dir.to_str().expect("a UTF-8 temp path").to_string()]);
    Proc::spawn("memgpt-memory", "127.0.0.1:0", &args).expect("memgpt-memory starts")
}

fn vector(i: u64) -> Vec<f32> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1000) as f32 / 1000.0 + 0.001
        })
        .collect()
}

fn batch(prefix: &str, start: u64, n: u64) -> pb::UpsertRequest {
    pb::UpsertRequest {
        namespace: "durable".into(),
        records: (start..start + n)
            .map(|i| pb::Record { id: format!("{prefix}{i}"), vector: vector(i), text: format!("record {i}"), metadata: Default::default(), ..Default::default() })
            .collect(),
        wait: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9() {
    for store in stores("durability", false) {
        eprintln!("acknowledged_records_survive_kill_9: on {store}");
        survives_kill_9(&store).await;
        store.drop_collection().await;
    }
}

async fn survives_kill_9(store: &Store) {
    let batches = if store.name == "edge" { 200 } else { 40 };
    let dir = tempfile::tempdir().unwrap();
    let mut service = spawn(dir.path(), store);
    let mut c = client(wait_serving(service.addr).await);

    let mut acknowledged: Vec<String> = Vec::new();
    for b in 0..batches {
        let request = batch("r", b * 500, 500);
        let ids: Vec<String> = request.records.iter().map(|r| r.id.clone()).collect();
        assert_eq!(c.upsert(request).await.unwrap().into_inner().upserted, 500);
        acknowledged.extend(ids);
    }

    // A second writer keeps going while the process is killed.
    let extra_acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let mut c = c.clone();
        let extra_acked = Arc::clone(&extra_acked);
        let running = Arc::clone(&running);
        tokio::spawn(async move {
            let mut b = 0u64;
            while running.load(Ordering::SeqCst) {
                let request = batch("x", b * 100, 100);
                let ids: Vec<String> = request.records.iter().map(|r| r.id.clone()).collect();
                match c.upsert(request).await {
                    Ok(_) => extra_acked.lock().unwrap().extend(ids),
                    Err(_) => break,
                }
                b += 1;
            }
        })
    };
    while extra_acked.lock().unwrap().len() < 1000 {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    service.kill9();
    running.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    acknowledged.extend(extra_acked.lock().unwrap().iter().cloned());
    drop(service);

    let service = spawn(dir.path(), store);
    let mut c = client(wait_serving(service.addr).await);
    let count = c.count(pb::CountRequest { namespace: "durable".into() }).await.unwrap().into_inner().count;
    assert!(count >= acknowledged.len() as u64, "count {count} < acknowledged {}", acknowledged.len());
    // At most the one in-flight batch of the second writer may exist beyond the acknowledged.
    assert!(count <= acknowledged.len() as u64 + 100, "count {count}");
    for chunk in acknowledged.chunks(1000) {
        let got = c
            .get(pb::GetRequest { namespace: "durable".into(), ids: chunk.to_vec(), with_vectors: false })
            .await
            .unwrap()
            .into_inner()
            .records;
        assert_eq!(got.len(), chunk.len(), "acknowledged records missing after kill -9");
    }
    let first = c.count(pb::CountRequest { namespace: String::new() }).await.unwrap().into_inner().count;
    assert_eq!(first, count);
}
