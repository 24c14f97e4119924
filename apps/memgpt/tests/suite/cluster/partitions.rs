//! Partitions: the cluster's processes each on a test host of its own (network namespaces on
//! one switch), and a host cut off the way a partition cuts it: its packets vanish, the process
//! lives on, connections hang rather than close. A generator cut off mid-batch is found within
//! the stage deadline (HTTP/2 pings, health checks) and its questions are answered by the other
//! one, none hung, none lost; the memory host cut off makes calls UNAVAILABLE within the
//! deadline, and once the partition heals the gateway serves again with no restart. Skipped,
//! saying why, where namespaces cannot be made (they need root). And 200 ms of latency on every
//! link: every call still answers within its deadline.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use integration_tests::netns::Net;
use integration_tests::{Cluster, Options};

use super::retryable;
use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::generator::v1 as gen;

/// How long a backend call may take in these tests, and how often connections are pinged.
const DEADLINE_MS: u64 = 15_000;
const RETRIEVE_MS: u64 = 2_000;
const KEEPALIVE_MS: u64 = 500;

fn hosts_or_skip(test: &str) -> bool {
    match Net::unavailable() {
        Some(why) => {
            eprintln!("{test}: skipped: {why}");
            false
        }
        None => true,
    }
}

async fn cluster() -> Cluster {
    let gateway_args = [
        "--backend-keepalive-ms",
        &KEEPALIVE_MS.to_string(),
        "--generate-timeout-ms",
        &DEADLINE_MS.to_string(),
        "--retrieve-timeout-ms",
        &RETRIEVE_MS.to_string(),
    ]
    .map(String::from)
    .to_vec();
    Cluster::start(Options { hosts: true, gateway_args, ..Default::default() }).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_cut_off_mid_batch_is_found_and_its_questions_answered_by_the_other() {
    if !hosts_or_skip("a_generator_cut_off_mid_batch_is_found_and_its_questions_answered_by_the_other") {
        return;
    }
    let n = if super::full() { 200 } else { 32 };
    let cluster = cluster().await;
    let mut c = cluster.client(None).await.unwrap();
    c.remember(gw::RememberRequest { namespace: "kb".into(), documents: super::docs("fact", 20), warm: false, ..Default::default() }).await.unwrap();

    // Each attempt is bounded by the deadline and a margin: one that outlives it hung.
    let bound = Duration::from_millis(DEADLINE_MS + 5_000);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    for i in 0..n {
        let (mut c, tx, permits) = (c.clone(), tx.clone(), permits.clone());
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let req = super::fact_question(i);
            let mut failures = Vec::new();
            let outcome = loop {
                let started = Instant::now();
                match tokio::time::timeout(bound, c.ask(req.clone())).await {
                    Err(_) => break Err(format!("hung: no answer within {bound:?}")),
                    Ok(Ok(a)) => break Ok(a.into_inner()),
                    Ok(Err(s)) if retryable(s.code()) && failures.len() < 8 => {
                        failures.push((s.code(), started.elapsed()));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(Err(s)) => break Err(format!("{s:?}")),
                }
            };
            let _ = tx.send((i, outcome, failures));
        });
    }
    drop(tx);
    let net = cluster.net.as_ref().unwrap();
    let cut = &net.hosts()[2];
    let (mut answered, mut failures, mut cut_at) = (HashSet::new(), Vec::new(), None);
    while let Some((i, outcome, failed)) = rx.recv().await {
        let a = outcome.unwrap_or_else(|e| panic!("question {i} was lost: {e}"));
        assert!(!a.answer.is_empty());
        answered.insert(i);
        failures.extend(failed);
        if answered.len() == n / 4 && cut_at.is_none() {
            net.partition(cut).unwrap();
            cut_at = Some(Instant::now());
        }
    }
    let batch_after_cut = cut_at.unwrap().elapsed();
    assert_eq!(answered.len(), n, "every question answered once");
    for (code, took) in &failures {
        assert!(*took < Duration::from_millis(DEADLINE_MS), "a failed attempt ({code:?}) took {took:?}, past the deadline");
    }
    eprintln!(
        "{n} questions answered, none hung; {} attempts failed after the cut ({:?}), the slowest in {:?}; the batch ended {batch_after_cut:?} after the cut",
        failures.len(),
        failures.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        failures.iter().map(|(_, t)| *t).max().unwrap_or_default()
    );
    net.heal(cut).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_host_cut_off_is_unavailable_within_the_deadline_and_recovers_when_healed() {
    if !hosts_or_skip("a_memory_host_cut_off_is_unavailable_within_the_deadline_and_recovers_when_healed") {
        return;
    }
    let mut cluster = cluster().await;
    let mut c = cluster.client(None).await.unwrap();
    c.remember(gw::RememberRequest { namespace: "kb".into(), documents: super::docs("fact", 20), warm: false, ..Default::default() }).await.unwrap();
    let search = gw::SearchRequest { question: "Record 7 of fact".into(), namespaces: vec!["kb".into()], top_k: Some(3), ..Default::default() };
    assert_eq!(c.search(search.clone()).await.unwrap().into_inner().citations.len(), 3);

    let net = cluster.net.as_ref().unwrap();
    let memory = net.hosts()[1].clone();
    net.partition(&memory).unwrap();
    let mut took = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let bound = Duration::from_millis(RETRIEVE_MS + 3_000);
        let status = tokio::time::timeout(bound, c.search(search.clone())).await.expect("a search hung").expect_err("memory is cut off");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        took.push(started.elapsed());
        assert!(took.last().unwrap() <= &Duration::from_millis(RETRIEVE_MS + 500), "{took:?}");
    }

    net.heal(&memory).unwrap();
    let healed = Instant::now();
    loop {
        match c.search(search.clone()).await {
            Ok(r) => {
                assert_eq!(r.into_inner().citations.len(), 3);
                break;
            }
            Err(s) => assert!(healed.elapsed() < Duration::from_secs(30), "no recovery 30 s after the partition healed: {s:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("memory cut off: searches UNAVAILABLE in {took:?}; served again {:?} after the partition healed", healed.elapsed());
    assert!(cluster.gateway.alive() && cluster.memory.alive(), "nothing was restarted");
}

/// The answer, or a panic with the gateway's log (which says why a backend was out).
fn or_log<T>(r: Result<T, tonic::Status>, cluster: &Cluster) -> T {
    r.unwrap_or_else(|s| panic!("{s:?}\n--- gateway log:\n{}", cluster.gateway.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_200_ms_on_every_link_every_call_answers_within_its_deadline() {
    // Proxies on loopback add the latency (this kernel may have no netem); defaults otherwise.
    let delay = Duration::from_millis(200);
    let cluster = Cluster::start(Options { link_delay: Some(delay), ..Default::default() }).await.unwrap();
    let mut c = cluster.client(None).await.unwrap();
    let timed = Instant::now();
    let r = c.remember(gw::RememberRequest { namespace: "kb".into(), documents: super::docs("fact", 20), warm: true, ..Default::default() }).await.unwrap();
    assert!(r.into_inner().results.iter().all(|d| d.status == gw::DocumentStatus::Stored as i32));
    let remember = timed.elapsed();

    let timed = Instant::now();
    let search = gw::SearchRequest { question: "Record 7 of fact".into(), namespaces: vec!["kb".into()], top_k: Some(3), ..Default::default() };
    assert_eq!(c.search(search).await.unwrap().into_inner().citations.len(), 3);
    let searched = timed.elapsed();

    let ask = gw::AskRequest {
        question: "What is the value of record 7 of fact?".into(),
        namespaces: vec!["kb".into()],
        top_k: Some(2),
        params: Some(gen::SamplingParams { max_new_tokens: Some(16), temperature: Some(0.0), ..Default::default() }),
        ..Default::default()
    };
    let timed = Instant::now();
    let answer = or_log(c.ask(ask.clone()).await, &cluster).into_inner();
    assert!(!answer.answer.is_empty() && answer.citations.len() == 2);
    let asked = timed.elapsed();
    let timed = Instant::now();
    let mut stream = or_log(c.ask_stream(ask).await, &cluster).into_inner();
    let (mut text, mut last) = (String::new(), None);
    while let Some(msg) = stream.message().await.unwrap() {
        text.push_str(&msg.delta);
        last = msg.r#final.or(last);
    }
    assert_eq!(last.expect("a final message").answer, text);
    let streamed = timed.elapsed();

    // The deadlines are the gateway's defaults: retrieve 5 s, generate 120 s, write 30 s.
    let within = [(remember, 30_000), (searched, 5_000 + 400), (asked, 120_000), (streamed, 120_000)];
    for (took, ms) in within {
        assert!(took < Duration::from_millis(ms), "{took:?} is past its deadline of {ms} ms");
        // The client's link and the gateway's to a backend, each crossed both ways.
        assert!(took >= 4 * delay, "{took:?}: the links were not delayed");
    }
    eprintln!("200 ms on every link: remember {remember:?}, search {searched:?}, ask {asked:?}, ask stream {streamed:?}");
}
