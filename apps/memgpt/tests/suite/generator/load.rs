//! Load: 32 concurrent streams all complete; 10x the waiting-queue bound in concurrent
//! requests gets the excess RESOURCE_EXHAUSTED at once, every accepted request finishes, and
//! resident memory stays bounded.

use super::common;

use std::time::{Duration, Instant};

use common::{client, collect, config, greedy, info_until, spawn};
use memgpt_proto::generator::v1 as pb;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).unwrap_or(0) * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_streams_complete() {
    let mut c = client(spawn(config(&["--max-batch", "32"]))).await;
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move { collect(&mut c, greedy(&format!("Give me fact number {i} about the moon."), 8)).await })
        })
        .collect();
    for h in handles {
        let (text, last) = h.await.unwrap().unwrap();
        assert_eq!(text, last.text);
        assert!(last.usage.unwrap().completion_tokens >= 1);
    }
    let info = info_until(&mut c, Duration::from_secs(10), |i| i.active_sequences == 0).await;
    assert_eq!((info.waiting_requests, info.kv_tokens_reserved), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_refused_fast_and_memory_stays_bounded() {
    const WAITING: usize = 4;
    let mut c = client(spawn(config(&["--max-batch", "2", "--max-waiting", &WAITING.to_string()]))).await;
    let rss_before = resident_bytes();
    let handles: Vec<_> = (0..10 * WAITING)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let outcome = collect(&mut c, greedy(&format!("Write one sentence about river number {i}."), 16)).await;
                (outcome, started.elapsed())
            })
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    let mut slowest_refusal = Duration::ZERO;
    for h in handles {
        match h.await.unwrap() {
            (Ok((text, last)), _) => {
                accepted += 1;
                assert_eq!(text, last.text);
                assert_ne!(last.finish_reason, pb::FinishReason::Cancelled as i32);
            }
            (Err(status), elapsed) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                assert!(status.metadata().get("grpc-retry-pushback-ms").is_some(), "a retry hint");
                refused += 1;
                slowest_refusal = slowest_refusal.max(elapsed);
            }
        }
    }
    assert!(refused > 0 && accepted >= WAITING, "accepted {accepted}, refused {refused}");
    assert!(slowest_refusal < Duration::from_millis(500), "a refusal took {slowest_refusal:?}");
    let grown = resident_bytes().saturating_sub(rss_before);
    assert!(grown < 512 << 20, "resident memory grew by {} MiB", grown >> 20);
    info_until(&mut c, Duration::from_secs(10), |i| i.active_sequences == 0 && i.waiting_requests == 0).await;
}
