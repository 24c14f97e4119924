//! Bad input through the public API: each case gets its specific status, no process crashes,
//! and nothing is stored.

use std::future::Future;
use std::pin::Pin;

use integration_tests::{Cluster, Options};
use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::generator::v1 as gen;
use memgpt_proto::memory::v1 as mem;
use tonic::Code;

const KEYS: &str = r#"[{"key": "tenant-a-key-0000000", "namespaces": ["a", "shared-*"]}]"#;
const A: &str = "tenant-a-key-0000000";

type Call = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>;

fn ask(q: &str) -> gw::AskRequest {
    gw::AskRequest { question: q.into(), namespaces: vec!["a".into()], ..Default::default() }
}

fn dense() -> mem::Retrieval {
    mem::Retrieval { mode: mem::RetrievalMode::Dense as i32, ..Default::default() }
}

fn with_params(p: gen::SamplingParams) -> gw::AskRequest {
    gw::AskRequest { params: Some(p), ..ask("what?") }
}

fn doc(id: &str, text: &str) -> gw::Document {
    gw::Document { id: id.into(), text: text.into(), metadata: Default::default(), ..Default::default() }
}

fn remember(ns: &str, documents: Vec<gw::Document>) -> gw::RememberRequest {
    gw::RememberRequest { namespace: ns.into(), documents, warm: false, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_nothing_is_stored() {
    let cluster = Cluster::start(Options { generators: 1, api_keys: Some(KEYS.into()), ..Default::default() }).await.unwrap();
    let c = cluster.client(Some(A)).await.unwrap();
    let anonymous = cluster.client(None).await.unwrap();
    let wrong = cluster.client(Some("not-a-real-key-000000")).await.unwrap();
    let big = "x".repeat(9 * 1024);
    let condition = |key: &str| mem::Filter { must: vec![mem::Condition { key: key.into(), predicate: Some(mem::condition::Predicate::Equals("v".into())) }] };
    let mut meta = std::collections::HashMap::new();
    meta.insert("document_id".to_string(), "x".to_string());
    let mut bad_key = std::collections::HashMap::new();
    bad_key.insert("k\u{1}".to_string(), "v".to_string());

    let ask_case = |req: gw::AskRequest| -> Call {
        let mut c = c.clone();
        Box::pin(async move { c.ask(req).await.map(drop) })
    };
    let search_case = |req: gw::SearchRequest| -> Call {
        let mut c = c.clone();
        Box::pin(async move { c.search(req).await.map(drop) })
    };
    let remember_case = |req: gw::RememberRequest| -> Call {
        let mut c = c.clone();
        Box::pin(async move { c.remember(req).await.map(drop) })
    };
    let forget_case = |req: gw::ForgetRequest| -> Call {
        let mut c = c.clone();
        Box::pin(async move { c.forget(req).await.map(drop) })
    };
    let chat_case = |req: gw::ChatRequest| -> Call {
        let mut c = c.clone();
        Box::pin(async move {
            let mut s = c.chat(req).await?.into_inner();
            while s.message().await?.is_some() {}
            Ok(())
        })
    };
    let search = |q: &str, ns: &str| gw::SearchRequest { question: q.into(), namespaces: vec![ns.into()], ..Default::default() };
    let cases: Vec<(&str, Code, Call)> = vec![
        ("no API key", Code::Unauthenticated, { let mut c = anonymous.clone(); Box::pin(async move { c.search(search("q", "a")).await.map(drop) }) }),
        ("wrong API key", Code::Unauthenticated, { let mut c = wrong.clone(); Box::pin(async move { c.search(search("q", "a")).await.map(drop) }) }),
        ("not a bearer header", Code::Unauthenticated, {
            let mut c = anonymous.clone();
            Box::pin(async move {
                let mut req = tonic::Request::new(search("q", "a"));
                req.metadata_mut().insert("authorization", format!("Basic {A}").parse().unwrap());
                c.search(req).await.map(drop)
            })
        }),
        ("search a namespace the key may not read", Code::PermissionDenied, search_case(search("q", "b"))),
        ("ask an allowed and a forbidden namespace", Code::PermissionDenied, ask_case(gw::AskRequest { namespaces: vec!["a".into(), "secret".into()], ..ask("q") })),
        ("remember into a forbidden namespace", Code::PermissionDenied, remember_case(remember("b", vec![doc("d", "text")]))),
        ("forget in a forbidden namespace", Code::PermissionDenied, forget_case(gw::ForgetRequest { namespace: "b".into(), document_ids: vec!["d".into()], filter: None, ..Default::default() })),
        ("empty question", Code::InvalidArgument, ask_case(ask(""))),
        ("whitespace question", Code::InvalidArgument, ask_case(ask(" \n\t "))),
        ("question over the limit", Code::InvalidArgument, ask_case(ask(&big))),
        ("question with a NUL", Code::InvalidArgument, ask_case(ask("what\u{0}is this"))),
        ("question with an escape character", Code::InvalidArgument, ask_case(ask("\u{1b}[2J clear"))),
        ("top_k 0", Code::InvalidArgument, ask_case(gw::AskRequest { top_k: Some(0), ..ask("q") })),
        ("top_k 101", Code::InvalidArgument, ask_case(gw::AskRequest { top_k: Some(101), ..ask("q") })),
        ("top_k u32::MAX", Code::InvalidArgument, ask_case(gw::AskRequest { top_k: Some(u32::MAX), ..ask("q") })),
        ("min_score 2 (a cosine)", Code::InvalidArgument, ask_case(gw::AskRequest { min_score: Some(2.0), retrieval: Some(dense()), ..ask("q") })),
        ("min_score NaN", Code::InvalidArgument, ask_case(gw::AskRequest { min_score: Some(f32::NAN), ..ask("q") })),
        ("an empty namespace name", Code::InvalidArgument, ask_case(gw::AskRequest { namespaces: vec![String::new()], ..ask("q") })),
        ("a namespace named twice", Code::InvalidArgument, ask_case(gw::AskRequest { namespaces: vec!["a".into(), "a".into()], ..ask("q") })),
        ("nine namespaces", Code::InvalidArgument, ask_case(gw::AskRequest { namespaces: (0..9).map(|i| format!("shared-{i}")).collect(), ..ask("q") })),
        ("unknown task", Code::InvalidArgument, ask_case(gw::AskRequest { task: 99, ..ask("q") })),
        ("translate without a language", Code::InvalidArgument, ask_case(gw::AskRequest { task: gw::Task::Translate as i32, ..ask("q") })),
        ("unknown attend mode", Code::InvalidArgument, ask_case(gw::AskRequest { attend_mode: 7, ..ask("q") })),
        ("unknown answer style", Code::InvalidArgument, ask_case(gw::AskRequest { answer_style: 9, ..ask("q") })),
        ("unknown attribution", Code::InvalidArgument, ask_case(gw::AskRequest { attribution: 9, ..ask("q") })),
        (
            "an extractive answer closed-book",
            Code::FailedPrecondition,
            ask_case(gw::AskRequest { answer_style: gen::AnswerStyle::Extractive as i32, ..ask("q") }),
        ),
        ("max_new_tokens 0", Code::InvalidArgument, ask_case(with_params(gen::SamplingParams { max_new_tokens: Some(0), ..Default::default() }))),
        ("max_new_tokens huge", Code::InvalidArgument, ask_case(with_params(gen::SamplingParams { max_new_tokens: Some(u32::MAX), ..Default::default() }))),
        ("negative temperature", Code::InvalidArgument, ask_case(with_params(gen::SamplingParams { temperature: Some(-1.0), ..Default::default() }))),
        ("top_p above 1", Code::InvalidArgument, ask_case(with_params(gen::SamplingParams { top_p: Some(1.5), ..Default::default() }))),
        ("repetition penalty 0", Code::InvalidArgument, ask_case(with_params(gen::SamplingParams { repetition_penalty: Some(0.0), ..Default::default() }))),
        ("a hundred stop strings", Code::InvalidArgument, ask_case(with_params(gen::SamplingParams { stop: (0..100).map(|i| format!("s{i}")).collect(), ..Default::default() }))),
        ("filter with an empty key", Code::InvalidArgument, ask_case(gw::AskRequest { filter: Some(condition("")), ..ask("q") })),
        ("filter condition without a predicate", Code::InvalidArgument, ask_case(gw::AskRequest { filter: Some(mem::Filter { must: vec![mem::Condition { key: "k".into(), predicate: None }] }), ..ask("q") })),
        ("search with an empty question", Code::InvalidArgument, search_case(search("", "a"))),
        ("search top_k 0", Code::InvalidArgument, search_case(gw::SearchRequest { top_k: Some(0), ..search("q", "a") })),
        ("remember no documents", Code::InvalidArgument, remember_case(remember("a", vec![]))),
        ("remember 257 documents", Code::InvalidArgument, remember_case(remember("a", (0..257).map(|i| doc(&format!("d{i}"), "t")).collect()))),
        ("document with an empty id", Code::InvalidArgument, remember_case(remember("a", vec![doc("", "text")]))),
        ("document id with #", Code::InvalidArgument, remember_case(remember("a", vec![doc("a#1", "text")]))),
        ("document id of 201 bytes", Code::InvalidArgument, remember_case(remember("a", vec![doc(&"i".repeat(201), "text")]))),
        ("document id with a control character", Code::InvalidArgument, remember_case(remember("a", vec![doc("a\u{7}", "text")]))),
        ("the same id twice", Code::InvalidArgument, remember_case(remember("a", vec![doc("same", "one"), doc("same", "two")]))),
        ("empty document text", Code::InvalidArgument, remember_case(remember("a", vec![doc("d", "   ")]))),
        ("document text with a NUL", Code::InvalidArgument, remember_case(remember("a", vec![doc("d", "bad\u{0}text")]))),
        ("document over 1 MiB", Code::InvalidArgument, remember_case(remember("a", vec![doc("d", &"y".repeat((1 << 20) + 1))]))),
        ("reserved metadata key", Code::InvalidArgument, remember_case(remember("a", vec![gw::Document { metadata: meta.clone(), ..doc("d", "text") }]))),
        ("metadata key with a control character", Code::InvalidArgument, remember_case(remember("a", vec![gw::Document { metadata: bad_key.clone(), ..doc("d", "text") }]))),
        ("one bad document among good ones", Code::InvalidArgument, remember_case(remember("a", vec![doc("good", "fine text"), doc("", "no id")]))),
        ("remember into an empty namespace", Code::InvalidArgument, remember_case(remember("", vec![doc("d", "text")]))),
        ("message over the size limit", Code::OutOfRange, remember_case(remember("a", (0..17).map(|i| doc(&format!("d{i}"), &"z".repeat(1 << 20))).collect()))),
        ("forget with neither ids nor filter", Code::InvalidArgument, forget_case(gw::ForgetRequest { namespace: "a".into(), document_ids: vec![], filter: None, ..Default::default() })),
        ("forget with ids and a filter", Code::InvalidArgument, forget_case(gw::ForgetRequest { namespace: "a".into(), document_ids: vec!["d".into()], filter: Some(condition("k")), ..Default::default() })),
        ("chat with a bad session id", Code::InvalidArgument, chat_case(gw::ChatRequest { session_id: "has space".into(), message: "hi".into(), ..Default::default() })),
        ("chat with an empty message", Code::InvalidArgument, chat_case(gw::ChatRequest { session_id: "s1".into(), message: String::new(), ..Default::default() })),
        ("delete a session with a bad id", Code::InvalidArgument, {
            let mut c = c.clone();
            Box::pin(async move { c.delete_session(gw::DeleteSessionRequest { session_id: "../etc".into() }).await.map(drop) })
        }),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut wrong_status = Vec::new();
    for (name, want, call) in cases {
        match call.await {
            Err(s) if s.code() == want => assert!(!s.message().is_empty(), "{name}: no message"),
            other => wrong_status.push(format!("{name}: want {want:?}, got {other:?}")),
        }
    }
    assert!(wrong_status.is_empty(), "{}", wrong_status.join("\n"));

    let mut memory = mem::memory_client::MemoryClient::connect(format!("http://{}", cluster.memory.addr)).await.unwrap();
    assert_eq!(memory.count(mem::CountRequest { namespace: String::new() }).await.unwrap().into_inner().count, 0, "something was stored");
    let mut all = vec![cluster.memory, cluster.gateway];
    all.extend(cluster.generators);
    for p in &mut all {
        assert!(p.alive(), "{} crashed:\n{}", p.name, p.log());
    }
}
