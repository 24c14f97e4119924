//! Two generator endpoints, one stopped mid-run: later Asks succeed on the other, and no
//! request outlives its deadline.

use super::common;

use std::time::{Duration, Instant};

use memgpt_proto::gateway::v1 as gw;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn asks_move_to_the_surviving_generator() {
    let dir = tempfile::tempdir().unwrap();
    let memory = common::memory(dir.path());
    let mut first = common::generator();
    let second = common::generator();
    common::serving(first.addr, "memgpt.generator.v1.Generator").await;
    common::serving(second.addr, "memgpt.generator.v1.Generator").await;
    let gateway = common::gateway(&[memory.addr], &[first.addr, second.addr], &["--no-auth"]);
    let mut client = common::gateway_client(gateway.addr).await;
    let doc = gw::Document { id: "lake".into(), text: "Lake Sorrel freezes every winter.".into(), metadata: Default::default(), ..Default::default() };
    client.remember(gw::RememberRequest { namespace: "kb".into(), documents: vec![doc], warm: false, ..Default::default() }).await.unwrap();

    const DEADLINE: Duration = Duration::from_secs(20);
    let ask = || {
        let mut req = tonic::Request::new(gw::AskRequest {
            question: "When does Lake Sorrel freeze?".into(),
            namespaces: vec!["kb".into()],
            params: Some(memgpt_proto::generator::v1::SamplingParams { max_new_tokens: Some(16), ..Default::default() }),
            ..Default::default()
        });
        req.set_timeout(DEADLINE);
        req
    };
    // Both endpoints serve while both are up.
    for _ in 0..4 {
        client.ask(ask()).await.unwrap();
    }
    // Stop one while asks are in flight; those may fail, none may hang past its deadline.
    let in_flight: Vec<_> = (0..4)
        .map(|_| {
            let mut c = client.clone();
            let req = ask();
            tokio::spawn(async move {
                let t = Instant::now();
                let outcome = c.ask(req).await;
                (outcome.map(|_| ()), t.elapsed())
            })
        })
        .collect();
    first.stop();
    for task in in_flight {
        let (_, elapsed) = task.await.unwrap();
        assert!(elapsed < DEADLINE + Duration::from_secs(1), "a request outlived its deadline: {elapsed:?}");
    }
    // Every later ask succeeds on the surviving endpoint.
    for i in 0..6 {
        let t = Instant::now();
        let answer = client.ask(ask()).await.unwrap_or_else(|e| panic!("ask {i} after the stop failed: {e:?}"));
        assert!(!answer.into_inner().answer.is_empty());
        assert!(t.elapsed() < DEADLINE);
    }
}
