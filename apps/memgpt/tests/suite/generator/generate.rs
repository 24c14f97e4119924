//! The generator over gRPC with the real default model on CPU: batching changes no token,
//! streaming, sampling, stop strings, memories with attention shares, cancellation.

use super::common;

use std::time::Duration;

use common::{client, collect, greedy, info_until, shared};
use memgpt_proto::generator::v1 as pb;
use pb::FinishReason;

const PROMPTS: [&str; 16] = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Write a haiku about the sea.",
    "What is 12 times 12?",
    "Explain photosynthesis in one sentence.",
    "Who wrote Romeo and Juliet?",
    "Give me a synonym for happy.",
    "What is the boiling point of water in Celsius?",
    "List two planets of the solar system.",
    "Translate 'good morning' into Spanish.",
    "What does a thermometer measure?",
    "Describe a cat in five words.",
    "What is the largest ocean on Earth?",
    "Why is the sky blue? Answer briefly.",
    "What language is spoken in Brazil?",
    "Suggest a name for a pet goldfish.",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_greedy_generation_equals_each_prompt_alone() {
    let mut c = client(shared()).await;
    let mut alone = Vec::new();
    for p in PROMPTS {
        alone.push(collect(&mut c, greedy(p, 24)).await.unwrap());
    }
    let handles: Vec<_> = PROMPTS
        .iter()
        .map(|p| {
            let mut c = c.clone();
            let req = greedy(p, 24);
            tokio::spawn(async move { collect(&mut c, req).await.unwrap() })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (text, last) = h.await.unwrap();
        assert_eq!(text, alone[i].0, "prompt {i} ({}) changed when batched", PROMPTS[i]);
        assert_eq!(last.text, alone[i].1.text);
        assert_eq!(last.usage, alone[i].1.usage);
    }
    // The same system prefix was computed once and then reused.
    let info = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert!(info.prefix_cache_hit_tokens > 0, "{info:?}");
}

#[tokio::test]
async fn stream_deltas_make_the_final_text_with_usage_and_timings() {
    let mut c = client(shared()).await;
    let (text, last) = collect(&mut c, greedy("Write a short poem about autumn leaves.", 40)).await.unwrap();
    assert_eq!(text, last.text);
    assert!(!text.is_empty());
    let usage = last.usage.unwrap();
    assert!(usage.prompt_tokens > 5);
    assert!(usage.completion_tokens >= 1 && usage.completion_tokens <= 40);
    let reason = FinishReason::try_from(last.finish_reason).unwrap();
    assert!(matches!(reason, FinishReason::Length | FinishReason::Eos), "{reason:?}");
    if reason == FinishReason::Length {
        assert_eq!(usage.completion_tokens, 40);
    }
    assert!(last.ttft_ms > 0.0 && last.decode_ms >= 0.0);
    // Chat messages through the template give the same as the raw prompt as one user turn.
    let req = pb::GenerateRequest {
        messages: vec![pb::Message { role: "user".into(), content: "Write a short poem about autumn leaves.".into() }],
        params: greedy("", 40).params,
        ..Default::default()
    };
    assert_eq!(collect(&mut c, req).await.unwrap().1.text, last.text);
}

#[tokio::test]
async fn same_seed_gives_the_same_sample() {
    let mut c = client(shared()).await;
    let sampled = |seed: u64| pb::GenerateRequest {
        prompt: "Tell me a story about a dragon.".into(),
        params: Some(pb::SamplingParams {
            max_new_tokens: Some(24),
            temperature: Some(1.0),
            top_p: Some(0.95),
            top_k: Some(50),
            repetition_penalty: Some(1.1),
            seed: Some(seed),
            ..Default::default()
        }),
        ..Default::default()
    };
    let a = collect(&mut c, sampled(7)).await.unwrap().1.text;
    let b = collect(&mut c, sampled(7)).await.unwrap().1.text;
    assert_eq!(a, b);
    let others: Vec<String> = futures::future::join_all((8..11).map(|s| {
        let mut c = c.clone();
        async move { collect(&mut c, sampled(s)).await.unwrap().1.text }
    }))
    .await;
    assert!(others.iter().any(|o| *o != a), "four seeds, one text: {a:?}");
}

#[tokio::test]
async fn stop_strings_end_generation_and_are_left_out() {
    let mut c = client(shared()).await;
    let prompt = "List the days of the week.";
    let (full, _) = collect(&mut c, greedy(prompt, 48)).await.unwrap();
    // Stop at the fourth word the model writes, which is then left out with all after it.
    let word = full.split_whitespace().nth(3).expect("the model writes a few words").to_string();
    let cut = full.find(&word).unwrap();
    let mut req = greedy(prompt, 48);
    req.params.as_mut().unwrap().stop = vec![word.clone(), "zzz-never".into()];
    let (text, last) = collect(&mut c, req).await.unwrap();
    assert_eq!(FinishReason::try_from(last.finish_reason).unwrap(), FinishReason::Stop, "{full:?} stop {word:?}");
    assert_eq!(text, last.text);
    assert_eq!(text, full[..cut]);
}

#[tokio::test]
async fn memories_get_attention_shares() {
    let mut c = client(shared()).await;
    let memories = vec![
        pb::Memory { id: "zoo#0".into(), text: "The city zoo opened a new penguin house in March.".into() },
        pb::Memory { id: "rocket#0".into(), text: "The Zephyr-9 rocket was launched from Kourou on 4 May 2031.".into() },
        pb::Memory { id: "bread#0".into(), text: "Sourdough bread rises slowly because of wild yeast.".into() },
    ];
    let req = pb::GenerateRequest {
        messages: vec![pb::Message { role: "user".into(), content: "From where was the Zephyr-9 rocket launched?".into() }],
        memories,
        params: greedy("", 16).params,
        ..Default::default()
    };
    let (_, last) = collect(&mut c, req).await.unwrap();
    assert!(last.text.contains("Kourou"), "{:?}", last.text);
    let ids: Vec<&str> = last.attention.iter().map(|a| a.memory_id.as_str()).collect();
    assert_eq!(ids, ["zoo#0", "rocket#0", "bread#0"]);
    let total: f32 = last.attention.iter().map(|a| a.share).sum();
    assert!(last.attention.iter().all(|a| a.share > 0.0 && a.share < 1.0) && (total - 1.0).abs() < 1e-3, "{:?}", last.attention);
    let rocket = last.attention[1].share;
    assert!(rocket > last.attention[0].share && rocket > last.attention[2].share, "{:?}", last.attention);
}

#[tokio::test]
async fn a_client_that_goes_away_frees_its_slot() {
    let mut c = client(shared()).await;
    let before = c.info(pb::InfoRequest {}).await.unwrap().into_inner().requests_cancelled;
    let mut req = greedy("Write a very long essay about the history of Europe.", 1000);
    req.params.as_mut().unwrap().max_new_tokens = Some(1000);
    let mut stream = c.generate(req).await.unwrap().into_inner();
    // Wait until it is decoding, then hang up.
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.r#final.is_none());
    drop(stream);
    let info = info_until(&mut c, Duration::from_secs(10), |i| i.active_sequences == 0).await;
    assert!(info.requests_cancelled > before, "{info:?}");
    assert_eq!(info.kv_tokens_reserved, 0);
}

#[tokio::test]
async fn a_passed_deadline_ends_the_stream_and_frees_the_slot() {
    let mut c = client(shared()).await;
    let mut req = tonic::Request::new(greedy("Write a very long essay about the history of Asia.", 1000));
    req.set_timeout(Duration::from_millis(800));
    let started = std::time::Instant::now();
    let outcome = async {
        let mut stream = c.clone().generate(req).await?.into_inner();
        while let Some(msg) = stream.message().await? {
            if let Some(last) = msg.r#final {
                return Ok(last);
            }
        }
        Err(tonic::Status::internal("no final message"))
    }
    .await;
    // Either the client's deadline fires first, or the server's: then the stream ends with
    // a final message saying it was cancelled.
    match outcome {
        Err(status) => assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}"),
        Ok(last) => assert_eq!(FinishReason::try_from(last.finish_reason).unwrap(), FinishReason::Cancelled, "{last:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    info_until(&mut c, Duration::from_secs(10), |i| i.active_sequences == 0).await;
}
