//! The gateway's API beyond Ask: API keys (missing, wrong, another namespace, over rate),
//! Remember replacing a document's chunks, Forget, Search grouped by document, Chat sessions
//! scoped to their key, and bad input naming the field.

use super::common;

use std::net::SocketAddr;
use std::sync::OnceLock;

use clap::Parser;
use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::memory::v1 as mem;
use tonic::Code;

const KEY_A: &str = "key-a-0123456789abcdef";
const KEY_B: &str = "key-b-0123456789abcdef";
const KEY_SLOW: &str = "key-slow-0123456789abcd";

/// Memory and generator shared by the tests of this file (kept running for the process).
fn backends() -> (SocketAddr, SocketAddr) {
    static B: OnceLock<(common::Running, common::Running)> = OnceLock::new();
    let (m, g) = B.get_or_init(|| {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        (common::memory(dir.path()), common::generator())
    });
    (m.addr, g.addr)
}

/// A gateway kept running for the process (its handle is leaked on purpose).
pub(super) fn gateway(extra: &[&str]) -> SocketAddr {
    let (m, g) = backends();
    let running = Box::leak(Box::new(common::gateway(&[m], &[g], extra)));
    running.addr
}

fn keys() -> String {
    serde_json::json!([
        {"key": KEY_A, "namespaces": ["docs", "team-*"]},
        {"key": KEY_B, "namespaces": ["other"], "rate_per_s": 100},
        {"key": KEY_SLOW, "namespaces": ["*"], "rate_per_s": 1}
    ])
    .to_string()
}

use memgpt_testkit::with_key;

fn search(ns: &str) -> gw::SearchRequest {
    gw::SearchRequest { question: "anything".into(), namespaces: vec![ns.into()], ..Default::default() }
}

pub(super) fn doc(id: &str, text: &str) -> gw::Document {
    gw::Document { id: id.into(), text: text.into(), metadata: Default::default(), ..Default::default() }
}

pub(super) async fn count(ns: &str) -> u64 {
    let channel = common::serving(backends().0, "memgpt.memory.v1.Memory").await;
    let mut m = mem::memory_client::MemoryClient::new(channel);
    m.count(mem::CountRequest { namespace: ns.into() }).await.unwrap().into_inner().count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_keys_are_enforced() {
    let keys = keys();
    let mut c = common::gateway_client(gateway(&["--api-keys", &keys])).await;
    let status = c.search(search("docs")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = c.search(with_key(search("docs"), "not-a-key-0123456789")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = c.search(with_key(search("other"), KEY_A)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(!status.message().contains(KEY_A), "the key must not be echoed");
    c.search(with_key(search("docs"), KEY_A)).await.unwrap();
    c.search(with_key(search("team-red"), KEY_A)).await.unwrap();
    c.search(with_key(search("other"), KEY_B)).await.unwrap();
    c.search(with_key(search("docs"), KEY_SLOW)).await.unwrap();
    let status = c.search(with_key(search("docs"), KEY_SLOW)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.metadata().get("grpc-retry-pushback-ms").is_some());
    // Without keys, auth is off only when asked for.
    let config = memgpt_gateway::GatewayConfig::parse_from(["memgpt-gateway"]);
    assert!(memgpt_gateway::server::auth(&config).is_err());
    let config = memgpt_gateway::GatewayConfig::parse_from(["memgpt-gateway", "--api-keys", "[{\"key\": \"short\", \"namespaces\": []}]"]);
    assert!(memgpt_gateway::server::auth(&config).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remember_replaces_chunks_and_forget_removes_them() {
    let mut c = common::gateway_client(gateway(&["--no-auth", "--chunk-tokens", "16", "--chunk-overlap", "2"])).await;
    let long: String = (0..30).map(|i| format!("Fact {i} about the harbour. ")).collect();
    let r = c.remember(gw::RememberRequest { namespace: "replace".into(), documents: vec![doc("d", &long), doc("e", "Short text.")], warm: false, ..Default::default() }).await.unwrap().into_inner();
    let chunks = r.results[0].chunks;
    assert!(chunks > 5, "{r:?}");
    assert_eq!(count("replace").await, chunks as u64 + 1);
    let r = c.remember(gw::RememberRequest { namespace: "replace".into(), documents: vec![doc("d", "Now it is short.")], warm: false, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(r.results[0].chunks, 1);
    assert_eq!(count("replace").await, 2, "no stale chunk of the longer version is left");
    let gone = c.forget(gw::ForgetRequest { namespace: "replace".into(), document_ids: vec!["d".into()], filter: None, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(gone.forgotten, 1);
    assert_eq!(count("replace").await, 1);
    // Search grouped by document: one citation per document.
    let docs = vec![doc("harbour", &long), doc("ships", &long.replace("harbour", "ships"))];
    c.remember(gw::RememberRequest { namespace: "group".into(), documents: docs, warm: false, ..Default::default() }).await.unwrap();
    let req = gw::SearchRequest { question: "harbour facts".into(), namespaces: vec!["group".into()], top_k: Some(5), group_by_document: true, ..Default::default() };
    let found = c.search(req).await.unwrap().into_inner();
    let ids: Vec<&str> = found.citations.iter().map(|c| c.document_id.as_str()).collect();
    assert_eq!(ids, ["harbour", "ships"], "{found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_sessions_recall_their_turns_and_belong_to_their_key() {
    let keys = keys();
    let mut c = common::gateway_client(gateway(&["--api-keys", &keys])).await;
    let turn = |message: &str| gw::ChatRequest {
        session_id: "s1".into(),
        message: message.into(),
        params: Some(memgpt_proto::generator::v1::SamplingParams { max_new_tokens: Some(12), ..Default::default() }),
        ..Default::default()
    };
    let last = |mut stream: tonic::Streaming<gw::AskStreamResponse>| async move {
        let mut answer = None;
        while let Some(m) = stream.message().await.unwrap() {
            answer = m.r#final.or(answer);
        }
        answer.unwrap()
    };
    last(c.chat(with_key(turn("My boat is called the Sea Lark."), KEY_A)).await.unwrap().into_inner()).await;
    let second = last(c.chat(with_key(turn("What is my boat called?"), KEY_A)).await.unwrap().into_inner()).await;
    assert!(second.citations.iter().any(|c| c.snippet.contains("Sea Lark") && c.namespace.starts_with("session:")), "{second:?}");
    // Another key with the same session id sees nothing of it.
    let other = last(c.chat(with_key(turn("What is my boat called?"), KEY_B)).await.unwrap().into_inner()).await;
    assert!(other.citations.iter().all(|c| !c.snippet.contains("Sea Lark")), "{other:?}");
    let deleted = c.delete_session(with_key(gw::DeleteSessionRequest { session_id: "s1".into() }, KEY_A)).await.unwrap().into_inner();
    assert!(deleted.deleted >= 4, "{deleted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_and_ask_see_what_held_as_of_their_time_and_say_which_list_found_it() {
    let mut c = common::gateway_client(gateway(&["--no-auth"])).await;
    let until = gw::Document { valid_until: "2024-06-01T00:00:00Z".into(), ..doc("old", "The harbour master is Ailsa Grant.") };
    let from = gw::Document { valid_from: "2024-06-01T00:00:00Z".into(), ..doc("new", "The harbour master is Tomas Reid.") };
    c.remember(gw::RememberRequest { namespace: "asof".into(), documents: vec![until, from], ..Default::default() }).await.unwrap();
    let search = |as_of: &str| gw::SearchRequest { question: "Who is the harbour master?".into(), namespaces: vec!["asof".into()], as_of: as_of.into(), ..Default::default() };
    let found = |r: gw::SearchResponse| r.citations.into_iter().map(|c| c.document_id).collect::<Vec<_>>();
    assert_eq!(found(c.search(search("2024-05-31T23:59:59Z")).await.unwrap().into_inner()), ["old"]);
    let now = c.search(search("")).await.unwrap().into_inner();
    assert_eq!((now.citations[0].dense_rank, now.citations[0].sparse_rank), (1, 1), "hybrid by default: {now:?}");
    assert_eq!(found(now), ["new"]);
    let ask = gw::AskRequest {
        question: "Who is the harbour master?".into(),
        namespaces: vec!["asof".into()],
        as_of: "2024-01-01T00:00:00Z".into(),
        retrieval: Some(mem::Retrieval { mode: mem::RetrievalMode::Sparse as i32, ..Default::default() }),
        params: Some(memgpt_proto::generator::v1::SamplingParams { max_new_tokens: Some(4), ..Default::default() }),
        ..Default::default()
    };
    let answer = c.ask(ask).await.unwrap().into_inner();
    let cited: Vec<(&str, u32, u32)> = answer.citations.iter().map(|c| (c.document_id.as_str(), c.dense_rank, c.sparse_rank)).collect();
    assert_eq!(cited, [("old", 0, 1)], "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_name_the_field() {
    let mut c = common::gateway_client(gateway(&["--no-auth"])).await;
    let ask = |f: &dyn Fn(&mut gw::AskRequest)| {
        let mut r = gw::AskRequest { question: "Why?".into(), namespaces: vec!["kb".into()], ..Default::default() };
        f(&mut r);
        r
    };
    let cases: Vec<(gw::AskRequest, &str)> = vec![
        (ask(&|r| r.question = " ".into()), "`question`"),
        (ask(&|r| r.question = "x".repeat(9000)), "`question`"),
        (ask(&|r| r.namespaces.clear()), "`namespaces`"),
        (ask(&|r| r.namespaces = vec![String::new()]), "`namespaces[0]`"),
        (ask(&|r| r.namespaces = vec!["a".into(), "a".into()]), "`namespaces[1]`"),
        (ask(&|r| r.top_k = Some(0)), "`top_k`"),
        (ask(&|r| r.top_k = Some(1000)), "`top_k`"),
        (ask(&|r| r.min_score = Some(f32::NAN)), "`min_score`"),
        (ask(&|r| r.task = 9), "`task`"),
        (ask(&|r| r.task = gw::Task::Translate as i32), "`target_language`"),
        (ask(&|r| r.retrieval = Some(mem::Retrieval { mode: 9, ..Default::default() })), "`retrieval.mode`"),
        (ask(&|r| r.retrieval = Some(mem::Retrieval { fusion: 9, ..Default::default() })), "`retrieval.fusion`"),
        (ask(&|r| r.retrieval = Some(mem::Retrieval { rrf_k: Some(0), ..Default::default() })), "`retrieval.rrf_k`"),
        (ask(&|r| r.retrieval = Some(mem::Retrieval { dense_weight: Some(1.5), ..Default::default() })), "`retrieval.dense_weight`"),
        (ask(&|r| r.as_of = "last tuesday".into()), "`as_of`"),
    ];
    for (req, field) in cases {
        let status = c.ask(req.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{req:?}: {status:?}");
        assert!(status.message().contains(field), "{:?} does not name {field}", status.message());
    }
    let remember = |docs: Vec<gw::Document>| gw::RememberRequest { namespace: "kb".into(), documents: docs, warm: false, ..Default::default() };
    for (req, field) in [
        (remember(vec![]), "`documents`"),
        (remember(vec![doc("", "t")]), "`documents[0].id`"),
        (remember(vec![doc("a", "t"), doc("a", "u")]), "`documents[1].id`"),
        (remember(vec![doc("a", "")]), "`documents[0].text`"),
        (gw::RememberRequest { namespace: String::new(), ..remember(vec![doc("a", "t")]) }, "`namespace`"),
        (remember(vec![gw::Document { valid_from: "2024-13-01".into(), ..doc("a", "t") }]), "`documents[0].valid_from`"),
        (
            remember(vec![doc("ok", "t"), gw::Document { valid_from: "2025-01-01T00:00:00Z".into(), valid_until: "2024-01-01T00:00:00Z".into(), ..doc("b", "t") }]),
            "`documents[1].valid_until`",
        ),
        (gw::RememberRequest { ttl_seconds: u64::MAX, ..remember(vec![doc("a", "t")]) }, "`ttl_seconds`"),
    ] {
        let status = c.remember(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{:?} does not name {field}", status.message());
    }
    let status = c.forget(gw::ForgetRequest { namespace: "kb".into(), ..Default::default() }).await.unwrap_err();
    assert!(status.message().contains("`document_ids`"), "{status:?}");
    let both = gw::ForgetRequest { namespace: "kb".into(), document_ids: vec!["a".into()], expired: true, ..Default::default() };
    assert!(c.forget(both).await.unwrap_err().message().contains("`expired`"));
    let search = gw::SearchRequest { question: "q".into(), namespaces: vec!["kb".into()], as_of: "2024-01-01".into(), ..Default::default() };
    assert!(c.search(search).await.unwrap_err().message().contains("`as_of`"));
    // None of it stored anything.
    assert_eq!(count("kb").await, 0);
    let status = c.chat(gw::ChatRequest { session_id: "bad id!".into(), message: "hi".into(), ..Default::default() }).await.unwrap_err();
    assert!(status.message().contains("`session_id`"), "{status:?}");
}
