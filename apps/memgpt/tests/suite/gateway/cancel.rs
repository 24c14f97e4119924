//! A client that cancels an AskStream cancels its generator request: the generator's batch
//! empties and counts the cancellation.

use super::common;

use std::time::{Duration, Instant};

use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::generator::v1 as gen;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_an_ask_stream_cancels_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let memory = common::memory(dir.path());
    let generator = common::generator();
    let gateway = common::gateway(&[memory.addr], &[generator.addr], &["--no-auth"]);
    let mut client = common::gateway_client(gateway.addr).await;
    let mut generator_client = gen::generator_client::GeneratorClient::new(common::serving(generator.addr, "memgpt.generator.v1.Generator").await);
    let req = gw::AskRequest {
        question: "Write a very long essay about the history of ships.".into(),
        task: gw::Task::Translate as i32,
        target_language: "French".into(),
        params: Some(gen::SamplingParams { max_new_tokens: Some(1000), ..Default::default() }),
        ..Default::default()
    };
    let mut stream = client.ask_stream(req).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.r#final.is_none() && !first.delta.is_empty());
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = generator_client.info(gen::InfoRequest {}).await.unwrap().into_inner();
        if info.active_sequences == 0 && info.requests_cancelled == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the generation was not cancelled: {info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
