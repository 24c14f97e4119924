//! `memgpt serve` and the client commands: a grounded answer with citations, search, forget,
//! info, stdin and JSONL input, bad input; auth on a public address; the forwarded memory and
//! generator APIs.

use std::io::Write;
use std::process::Stdio;

use super::common::{memgpt, ok, root, run, Serve};

#[test]
fn serve_remember_ask_search_forget() {
    let serve = Serve::start(&[]);
    let addr = Some(serve.addr.as_str());
    let knowledge = root().join("examples/knowledge");
    let out = ok({
        let mut c = memgpt(addr, &["remember"]);
        c.arg(&knowledge);
        c
    });
    assert!(out.contains("remembered 4 documents"), "{out}");

    let answer = ok(memgpt(addr, &["ask", "When was the Harbour Point lighthouse electrified?", "--max-new-tokens", "32"]));
    assert!(answer.contains("1931"), "the answer is not grounded: {answer}");
    let first_citation = answer.lines().find(|l| l.starts_with("[1] ")).unwrap_or_else(|| panic!("no citations: {answer}"));
    assert!(first_citation.contains("lighthouse.md#0") && first_citation.contains("attention"), "{answer}");

    let json = ok(memgpt(addr, &["ask", "How long is the Alder River?", "--json", "--max-new-tokens", "24"]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("--json prints one object");
    assert!(v["answer"].as_str().unwrap().contains("118"), "{v}");
    assert!(v["citations"][0]["document_id"].as_str().unwrap().ends_with("river.md"), "{v}");

    // Standard input as one document, and JSONL with a bad line: the good ones are stored,
    // the bad one named, the exit status says something failed.
    let mut child = memgpt(addr, &["remember", "-", "--id", "note-1", "--meta", "kind=note"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"The ferry to Port Carrow leaves at 7:15 every morning.").unwrap();
    assert!(child.wait().unwrap().success());
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("docs.jsonl");
    std::fs::write(&jsonl, "{\"id\": \"j1\", \"text\": \"Copper conducts electricity well.\", \"metadata\": {\"kind\": \"fact\"}}\nnot json\n{\"id\": \"bad#id\", \"text\": \"x\"}\n").unwrap();
    let (success, out, err) = run({
        let mut c = memgpt(addr, &["remember"]);
        c.arg(&jsonl);
        c
    });
    assert!(!success, "a failed document must fail the command: {out} {err}");
    assert!(out.contains("remembered 1 documents"), "{out}");
    assert!(err.contains("docs.jsonl:2") && err.contains("bad#id"), "each failure is named: {err}");

    let hits = ok(memgpt(addr, &["search", "ferry departure time", "--by-document", "--where", "kind=note"]));
    assert!(hits.lines().next().unwrap_or_default().contains("note-1#0"), "{hits}");

    let forgot = ok({
        let mut c = memgpt(addr, &["forget"]);
        c.arg(knowledge.join("lighthouse.md").display().to_string());
        c
    });
    assert!(forgot.contains("forgot 1 chunks"), "{forgot}");
    let after = ok(memgpt(addr, &["search", "Harbour Point lighthouse keeper", "--json"]));
    assert!(!after.contains("lighthouse.md"), "a forgotten document is still found: {after}");

    let info = ok(memgpt(addr, &["info", "--json"]));
    let v: serde_json::Value = serde_json::from_str(info.trim()).unwrap();
    assert_eq!(v["auth_enabled"], false);
    assert!(v["backends"].as_array().unwrap().iter().all(|b| b["healthy"] == true), "{v}");
    assert!(v["generator"]["tokens_generated"].as_u64().unwrap() > 0, "{v}");

    let (success, _, err) = run(memgpt(addr, &["ask", ""]));
    assert!(!success && err.contains("InvalidArgument") && err.contains("question"), "{err}");
    let (success, _, err) = run(memgpt(addr, &["ask", "hi", "--top-k", "0"]));
    assert!(!success && err.contains("top_k"), "{err}");
}

#[test]
fn a_public_address_needs_keys_and_nothing_listens_at_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let (success, _, err) = run({
        let mut c = memgpt(None, &["serve", "--listen", "0.0.0.0:0", "--data-dir"]);
        c.arg(dir.path());
        c
    });
    assert!(!success && err.contains("--api-keys-file") && err.contains("--no-auth"), "{err}");
    let (success, _, err) = run(memgpt(Some("127.0.0.1:1"), &["info"]));
    assert!(!success && err.contains("cannot reach the gateway at 127.0.0.1:1"), "{err}");
}

#[test]
fn with_keys_tenants_are_checked_and_backend_apis_need_an_operator_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    std::fs::write(
        &keys,
        r#"[{"key": "team-a-key-0123456789", "namespaces": ["team-a"]}, {"key": "operator-key-0123456789", "namespaces": ["*"]}]"#,
    )
    .unwrap();
    let serve = Serve::start(&["--api-keys-file", keys.to_str().unwrap()]);
    let addr = Some(serve.addr.as_str());
    let (success, _, err) = run(memgpt(addr, &["search", "anything"]));
    assert!(!success && err.contains("Unauthenticated"), "{err}");
    let (success, _, err) = run({
        let mut c = memgpt(addr, &["search", "anything"]);
        c.env("MEMGPT_API_KEY", "team-a-key-0123456789");
        c
    });
    assert!(!success && err.contains("PermissionDenied") && err.contains("default"), "{err}");
    let out = ok({
        let mut c = memgpt(addr, &["search", "anything", "-n", "team-a"]);
        c.env("MEMGPT_API_KEY", "team-a-key-0123456789");
        c
    });
    assert!(out.contains("no results"), "{out}");

    // A batch line naming a namespace the key may not read becomes an error record.
    let lines = dir.path().join("q.jsonl");
    std::fs::write(&lines, "{\"id\": \"forbidden\", \"question\": \"q\", \"namespace\": \"team-b\"}\n{\"id\": \"fine\", \"question\": \"q\", \"namespace\": \"team-a\", \"options\": {\"max_new_tokens\": 4}}\n").unwrap();
    let answers = dir.path().join("a.jsonl");
    ok({
        let mut c = memgpt(addr, &["batch", "--input", lines.to_str().unwrap(), "--output", answers.to_str().unwrap()]);
        c.env("MEMGPT_API_KEY", "team-a-key-0123456789");
        c
    });
    let records = super::common::records(&answers);
    let forbidden = records.iter().find(|r| r["id"] == "forbidden").unwrap();
    assert_eq!(forbidden["error"]["code"], "PERMISSION_DENIED", "{forbidden}");
    assert_eq!(records.iter().find(|r| r["id"] == "fine").unwrap()["status"], "ok");

    // The memory API on the same port: refused to a tenant key, served to the operator key.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use memgpt_proto::memory::v1::{memory_client::MemoryClient, CountRequest};
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", serve.addr)).unwrap().connect().await.unwrap();
        let mut client = MemoryClient::new(channel.clone());
        let count = |key: &str| memgpt_testkit::with_key(CountRequest { namespace: "team-a".into() }, key);
        let denied = client.count(count("team-a-key-0123456789")).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
        assert_eq!(client.count(count("operator-key-0123456789")).await.unwrap().into_inner().count, 0);
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        for service in ["memgpt.gateway.v1.Gateway", "memgpt.memory.v1.Memory", "memgpt.generator.v1.Generator"] {
            let status = health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status;
            assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service}");
        }
    });
}
