//! End to end through the gateway: remember, ask (unary and streamed), chat recall across
//! turns, forget (a forgotten fact is no longer cited), both attend modes.

use integration_tests::{Cluster, Options};
use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::generator::v1 as gen;

fn greedy(n: u32) -> Option<gen::SamplingParams> {
    Some(gen::SamplingParams { max_new_tokens: Some(n), temperature: Some(0.0), ..Default::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_ask_stream_chat_forget() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let mut c = cluster.client(None).await.unwrap();
    let documents = vec![
        gw::Document { id: "ferry".into(), text: "The ferry to Port Carrow leaves at 7:15 every morning from pier 4.".into(), metadata: Default::default(), ..Default::default() },
        gw::Document { id: "museum".into(), text: "The maritime museum is closed on Tuesdays and opens at 10:00 on other days.".into(), metadata: Default::default(), ..Default::default() },
    ];
    // With warm: the generator caches each chunk's states for the fused mode.
    let r = c.remember(gw::RememberRequest { namespace: "town".into(), documents, warm: true, ..Default::default() }).await.unwrap().into_inner();
    assert!(r.results.iter().all(|d| d.status == gw::DocumentStatus::Stored as i32), "{r:?}");
    assert_eq!(r.warmed_chunks, 2, "{r:?}");

    let ask = |q: &str| gw::AskRequest { question: q.into(), namespaces: vec!["town".into()], top_k: Some(2), params: greedy(24), ..Default::default() };
    let a = c.ask(ask("When does the ferry to Port Carrow leave?")).await.unwrap().into_inner();
    assert!(a.answer.contains("7:15"), "{}", a.answer);
    assert_eq!(a.citations[0].document_id, "ferry");
    assert!(a.citations[0].attention > 0.0 && !a.trace_id.is_empty());

    // Streamed: the deltas add up to the final answer.
    let mut s = c.ask_stream(ask("When is the museum closed?")).await.unwrap().into_inner();
    let (mut text, mut last) = (String::new(), None);
    while let Some(m) = s.message().await.unwrap() {
        text.push_str(&m.delta);
        if m.r#final.is_some() {
            last = m.r#final;
        }
    }
    let last = last.expect("a final message");
    assert_eq!(text, last.answer);
    assert!(last.answer.contains("Tuesday"), "{}", last.answer);

    // Chat: the second turn recalls the first (both of its turns, the user's and the
    // assistant's, may rank first; two hits keep the user's in).
    let turn = |m: &str| gw::ChatRequest { session_id: "s1".into(), message: m.into(), namespaces: vec!["town".into()], top_k: Some(2), params: greedy(24), ..Default::default() };
    let mut first = c.chat(turn("My cabin number is 42. Please remember it.")).await.unwrap().into_inner();
    while first.message().await.unwrap().is_some() {}
    let mut second = c.chat(turn("What is my cabin number?")).await.unwrap().into_inner();
    let mut answer = None;
    while let Some(m) = second.message().await.unwrap() {
        answer = m.r#final.or(answer);
    }
    let answer = answer.unwrap();
    assert!(answer.answer.contains("42"), "{}", answer.answer);
    assert!(answer.citations.iter().any(|c| c.namespace.starts_with("session:")), "{:?}", answer.citations);
    let deleted = c.delete_session(gw::DeleteSessionRequest { session_id: "s1".into() }).await.unwrap().into_inner();
    assert!(deleted.deleted >= 1);

    // Forget: the ferry is no longer cited.
    let f = c.forget(gw::ForgetRequest { namespace: "town".into(), document_ids: vec!["ferry".into()], filter: None, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(f.forgotten, 1);
    let a = c.ask(ask("When does the ferry to Port Carrow leave?")).await.unwrap().into_inner();
    assert!(a.citations.iter().all(|c| c.document_id != "ferry"), "{:?}", a.citations);

    // Attend modes: both answer from the same retrieved memories; fused lays their cached
    // states in (warmed by Remember above) and attributes attention per memory.
    let mut concat = ask("When is the museum closed?");
    concat.attend_mode = gen::AttendMode::Concat as i32;
    let by_concat = c.ask(concat.clone()).await.unwrap().into_inner();
    assert!(by_concat.answer.contains("Tuesday"), "{by_concat:?}");
    let mut fused = concat;
    fused.attend_mode = gen::AttendMode::Fused as i32;
    let by_fused = c.ask(fused).await.unwrap().into_inner();
    assert!(!by_fused.answer.is_empty());
    let ids = |a: &gw::AskResponse| a.citations.iter().map(|c| c.memory_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&by_fused), ids(&by_concat));
    assert!(by_fused.citations.iter().any(|c| c.attention > 0.0), "{:?}", by_fused.citations);
}
