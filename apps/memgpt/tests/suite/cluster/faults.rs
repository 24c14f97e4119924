//! Faults: the memory service killed with SIGKILL in the middle of a large Remember and
//! restarted (every acknowledged chunk survives, the rest failed with a retryable status, a
//! retry completes with no duplicates, and the gateway recovers without a restart of its own);
//! a generator killed during a batch of questions (no question is lost).

use std::collections::HashSet;
use std::time::Duration;

use integration_tests::{wait_serving, Cluster, Options};
use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::memory::v1 as mem;

use super::retryable;

async fn memory_count(addr: std::net::SocketAddr, namespace: &str) -> u64 {
    let mut m = mem::memory_client::MemoryClient::connect(format!("http://{addr}")).await.unwrap();
    m.count(mem::CountRequest { namespace: namespace.into() }).await.unwrap().into_inner().count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_killed_during_remember_keeps_every_acknowledged_chunk() {
    let total = if super::full() { 10_000 } else { 2_000 };
    let per_call = 100;
    let mut cluster = Cluster::start(Options { generators: 1, ..Default::default() }).await.unwrap();
    let client = cluster.client(None).await.unwrap();
    let all = super::docs("chunk", total);
    let batches: Vec<Vec<gw::Document>> = all.chunks(per_call).map(<[_]>::to_vec).collect();

    // Two calls in flight; SIGKILL the memory service once half the documents are acknowledged.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
    for (i, batch) in batches.iter().cloned().enumerate() {
        let (mut c, tx, permits) = (client.clone(), tx.clone(), permits.clone());
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let ids: Vec<String> = batch.iter().map(|d| d.id.clone()).collect();
            let r = c.remember(gw::RememberRequest { namespace: "faults".into(), documents: batch, warm: false, ..Default::default() }).await;
            let _ = tx.send((i, ids, r));
        });
    }
    drop(tx);
    let (mut acked, mut failed): (HashSet<String>, Vec<String>) = (HashSet::new(), Vec::new());
    let mut killed = false;
    while let Some((_, ids, outcome)) = rx.recv().await {
        match outcome {
            Ok(resp) => {
                for r in resp.into_inner().results {
                    if r.status == gw::DocumentStatus::Stored as i32 {
                        acked.insert(r.document_id);
                    } else {
                        failed.push(r.document_id);
                    }
                }
            }
            Err(status) => {
                assert!(killed, "an error before the kill: {status:?}");
                assert!(retryable(status.code()), "not a retryable status: {status:?}");
                failed.extend(ids);
            }
        }
        if !killed && acked.len() >= total / 2 {
            cluster.memory.kill9();
            killed = true;
        }
    }
    assert!(killed && !acked.is_empty());
    assert_eq!(acked.len() + failed.len(), total, "every document has an outcome");
    assert!(!failed.is_empty(), "the kill came too late to interrupt anything");
    eprintln!("{total} documents: {} acknowledged, {} refused with a retryable status", acked.len(), failed.len());

    // Restart on the same address; the gateway (not restarted) turns healthy again.
    cluster.memory.restart().unwrap();
    wait_serving(cluster.gateway.addr, "memgpt.gateway.v1.Gateway", Duration::from_secs(60)).await.unwrap();
    let mut m = mem::memory_client::MemoryClient::connect(format!("http://{}", cluster.memory.addr)).await.unwrap();
    let acked_ids: Vec<String> = acked.iter().map(|d| format!("{d}#0")).collect();
    for page in acked_ids.chunks(1000) {
        let got = m.get(mem::GetRequest { namespace: "faults".into(), ids: page.to_vec(), with_vectors: false }).await.unwrap().into_inner();
        assert_eq!(got.records.len(), page.len(), "an acknowledged chunk was lost");
    }

    // Retry what failed: everything is stored exactly once.
    let mut c = client.clone();
    let retry: Vec<gw::Document> = all.iter().filter(|d| !acked.contains(&d.id)).cloned().collect();
    for batch in retry.chunks(per_call) {
        let r = c.remember(gw::RememberRequest { namespace: "faults".into(), documents: batch.to_vec(), warm: false, ..Default::default() }).await.unwrap().into_inner();
        assert!(r.results.iter().all(|d| d.status == gw::DocumentStatus::Stored as i32));
    }
    assert_eq!(memory_count(cluster.memory.addr, "faults").await, total as u64, "no duplicates, nothing missing");
    // The gateway serves searches again without having been restarted.
    let s = c.search(gw::SearchRequest { question: "Record 7 of chunk".into(), namespaces: vec!["faults".into()], top_k: Some(3), ..Default::default() }).await.unwrap();
    assert_eq!(s.into_inner().citations.len(), 3);
    assert!(cluster.gateway.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_killed_during_a_batch_loses_no_question() {
    let n = if super::full() { 200 } else { 40 };
    let mut cluster = Cluster::start(Options::default()).await.unwrap();
    let mut c = cluster.client(None).await.unwrap();
    c.remember(gw::RememberRequest { namespace: "kb".into(), documents: super::docs("fact", 20), warm: false, ..Default::default() }).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    for i in 0..n {
        let (mut c, tx, permits) = (c.clone(), tx.clone(), permits.clone());
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let req = super::fact_question(i);
            // The batch client's rule: retry retryable statuses with backoff.
            let mut attempts = 0;
            let outcome = loop {
                match c.ask(req.clone()).await {
                    Ok(a) => break Ok(a.into_inner()),
                    Err(s) if retryable(s.code()) && attempts < 8 => {
                        attempts += 1;
                        tokio::time::sleep(Duration::from_millis(100 << attempts.min(5))).await;
                    }
                    Err(s) => break Err(s),
                }
            };
            let _ = tx.send((i, outcome, attempts));
        });
    }
    drop(tx);
    let mut answered = HashSet::new();
    let mut retried = 0;
    while let Some((i, outcome, attempts)) = rx.recv().await {
        let a = outcome.unwrap_or_else(|s| panic!("question {i} was lost: {s:?}"));
        assert!(!a.answer.is_empty());
        answered.insert(i);
        retried += attempts;
        if answered.len() == n / 4 {
            cluster.generators[0].kill9();
        }
    }
    assert_eq!(answered.len(), n, "every question answered once");
    assert!(!cluster.generators[0].alive() && cluster.generators[1].alive());
    eprintln!("{n} questions answered; {retried} retries after the kill");
}
