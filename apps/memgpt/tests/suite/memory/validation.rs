//! Every case of the validation list gets INVALID_ARGUMENT naming the field, and nothing is
//! stored; overload gets RESOURCE_EXHAUSTED at once; on every store of `common::stores`.

use super::common::{client, record, start, store_config, stores, vector, wait_serving, Store, DIM};
use memgpt_proto::memory::v1 as pb;
use pb::condition::Predicate as P;
use tonic::Code;

fn upsert(namespace: &str, records: Vec<pb::Record>) -> pb::UpsertRequest {
    pb::UpsertRequest { namespace: namespace.into(), records, wait: true }
}

fn good(id: &str) -> pb::Record {
    record(id, 7, "text", &[("k", "v")])
}

fn with<F: FnOnce(&mut pb::Record)>(f: F) -> Vec<pb::Record> {
    let mut bad = good("bad");
    f(&mut bad);
    // The bad record sits between good ones: the whole batch must be refused.
    vec![good("ok-1"), bad, good("ok-2")]
}

fn search(f: impl FnOnce(&mut pb::SearchRequest)) -> pb::SearchRequest {
    let mut r = pb::SearchRequest { namespace: "ns".into(), vector: vector(1), top_k: 5, filter: None, min_score: None, ..Default::default() };
    f(&mut r);
    r
}

fn filter(c: pb::Condition) -> Option<pb::Filter> {
    Some(pb::Filter { must: vec![c] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invalid_request_names_its_field_and_stores_nothing() {
    for store in stores("each_invalid_request_names_its_field_and_stores_nothing", false) {
        eprintln!("each_invalid_request_names_its_field_and_stores_nothing: on {store}");
        each_invalid_request_names_its_field_and_stores_nothing_on(&store).await;
        store.drop_collection().await;
    }
}

async fn each_invalid_request_names_its_field_and_stores_nothing_on(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(store_config(dir.path(), store, &["--max-text-bytes", "1024"])).await;
    let mut c = client(wait_serving(server.addr).await);
    c.upsert(upsert("ns", vec![good("seed")])).await.unwrap();

    let long = "x".repeat(257);
    let many_keys: Vec<(String, String)> = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
    let upserts: Vec<(&str, pb::UpsertRequest, &str)> = vec![
        ("empty namespace", upsert("", vec![good("a")]), "namespace"),
        ("namespace over 256 bytes", upsert(&long, vec![good("a")]), "namespace"),
        ("namespace with a control character", upsert("ns\u{7}", vec![good("a")]), "namespace"),
        ("no records", upsert("ns", vec![]), "records"),
        ("empty id", upsert("ns", with(|r| r.id = String::new())), "records[1].id"),
        ("id over 256 bytes", upsert("ns", with(|r| r.id = long.clone())), "records[1].id"),
        ("id with a newline", upsert("ns", with(|r| r.id = "a\nb".into())), "records[1].id"),
        ("duplicate id in a batch", upsert("ns", with(|r| r.id = "ok-1".into())), "records[1].id"),
        ("vector of the wrong dimension", upsert("ns", with(|r| r.vector.push(1.0))), "records[1].vector"),
        ("empty vector", upsert("ns", with(|r| r.vector.clear())), "records[1].vector"),
        ("NaN component", upsert("ns", with(|r| r.vector[3] = f32::NAN)), "records[1].vector"),
        ("infinite component", upsert("ns", with(|r| r.vector[0] = f32::INFINITY)), "records[1].vector"),
        ("all-zero vector", upsert("ns", with(|r| r.vector = vec![0.0; DIM])), "records[1].vector"),
        ("text over the limit", upsert("ns", with(|r| r.text = "y".repeat(1025))), "records[1].text"),
        ("over 64 metadata keys", upsert("ns", with(|r| r.metadata = many_keys.iter().cloned().collect())), "records[1].metadata"),
        ("metadata over 16 KiB", upsert("ns", with(|r| { r.metadata.insert("big".into(), "z".repeat(16 * 1024)); })), "records[1].metadata"),
        ("metadata key with a quote", upsert("ns", with(|r| { r.metadata.insert("a\"b".into(), "v".into()); })), "records[1].metadata"),
        ("empty metadata key", upsert("ns", with(|r| { r.metadata.insert(String::new(), "v".into()); })), "records[1].metadata"),
    ];
    for (case, request, field) in upserts {
        let status = c.upsert(request).await.expect_err(case);
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
        assert!(status.message().contains(&format!("`{field}`")), "{case}: `{}` does not name {field}", status.message());
    }

    let searches: Vec<(&str, pb::SearchRequest, &str)> = vec![
        ("top_k 0", search(|r| r.top_k = 0), "top_k"),
        ("top_k over 1000", search(|r| r.top_k = 1001), "top_k"),
        ("search vector of the wrong dimension", search(|r| r.vector.pop().map(drop).unwrap_or(())), "vector"),
        ("search vector all zero", search(|r| r.vector = vec![0.0; DIM]), "vector"),
        ("search with NaN", search(|r| r.vector[1] = f32::NAN), "vector"),
        ("search without namespace", search(|r| r.namespace.clear()), "namespace"),
        ("min_score NaN", search(|r| r.min_score = Some(f32::NAN)), "min_score"),
        ("condition without predicate", search(|r| r.filter = Some(pb::Filter { must: vec![pb::Condition { key: "k".into(), predicate: None }] })), "filter.must[0]"),
        ("condition with an empty key", search(|r| r.filter = filter(pb::Condition { key: String::new(), predicate: Some(P::Equals("v".into())) })), "filter.must[0].key"),
        ("empty any_of", search(|r| r.filter = filter(pb::Condition { key: "k".into(), predicate: Some(P::AnyOf(pb::AnyOf { values: vec![] })) })), "filter.must[0].any_of"),
        ("range without bounds", search(|r| r.filter = filter(pb::Condition { key: "k".into(), predicate: Some(P::Range(pb::Range::default())) })), "filter.must[0].range"),
        ("range with NaN", search(|r| r.filter = filter(pb::Condition { key: "k".into(), predicate: Some(P::Range(pb::Range { lt: Some(f64::NAN), ..Default::default() })) })), "filter.must[0].range"),
    ];
    for (case, request, field) in searches {
        let status = c.search(request).await.expect_err(case);
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
        assert!(status.message().contains(&format!("`{field}`")), "{case}: `{}` does not name {field}", status.message());
    }

    let get_none = c.get(pb::GetRequest { namespace: "ns".into(), ids: vec![], with_vectors: false }).await.unwrap_err();
    assert_eq!((get_none.code(), get_none.message().contains("`ids`")), (Code::InvalidArgument, true));
    let too_many: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    let get_many = c.get(pb::GetRequest { namespace: "ns".into(), ids: too_many, with_vectors: false }).await.unwrap_err();
    assert_eq!(get_many.code(), Code::InvalidArgument);
    let neither = c.delete(pb::DeleteRequest { namespace: "ns".into(), ids: vec![], filter: None, ..Default::default() }).await.unwrap_err();
    assert_eq!(neither.code(), Code::InvalidArgument);
    let both = c
        .delete(pb::DeleteRequest { namespace: "ns".into(), ids: vec!["seed".into()], filter: filter(pb::Condition { key: "k".into(), predicate: Some(P::Equals("v".into())) }), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!((both.code(), both.message().contains("`ids`")), (Code::InvalidArgument, true));
    let page = c.list(pb::ListRequest { namespace: "ns".into(), page_size: 1001, ..Default::default() }).await.unwrap_err();
    assert_eq!((page.code(), page.message().contains("`page_size`")), (Code::InvalidArgument, true));
    let token = c.list(pb::ListRequest { namespace: "ns".into(), page_token: "garbage".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!((token.code(), token.message().contains("`page_token`")), (Code::InvalidArgument, true));
    let drop_empty = c.drop_namespace(pb::DropNamespaceRequest { namespace: String::new() }).await.unwrap_err();
    assert_eq!(drop_empty.code(), Code::InvalidArgument);

    // Nothing of any refused request was stored.
    assert_eq!(c.count(pb::CountRequest { namespace: String::new() }).await.unwrap().into_inner().count, 1);
    let got = c.get(pb::GetRequest { namespace: "ns".into(), ids: vec!["ok-1".into(), "ok-2".into(), "bad".into()], with_vectors: false }).await.unwrap();
    assert!(got.into_inner().records.is_empty());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_is_refused_and_the_server_lives_on() {
    for store in stores("an_oversize_message_is_refused_and_the_server_lives_on", false) {
        eprintln!("an_oversize_message_is_refused_and_the_server_lives_on: on {store}");
        an_oversize_message_is_refused_and_the_server_lives_on_on(&store).await;
        store.drop_collection().await;
    }
}

async fn an_oversize_message_is_refused_and_the_server_lives_on_on(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(store_config(dir.path(), store, &["--max-message-bytes", "65536", "--max-text-bytes", "1000000"])).await;
    let mut c = client(wait_serving(server.addr).await);
    let big = vec![record("big", 1, &"w".repeat(100_000), &[])];
    let status = c.upsert(upsert("ns", big)).await.unwrap_err();
    // tonic's answer to a message over the limit (grpc-core would say RESOURCE_EXHAUSTED).
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{}", status.message());
    assert_eq!(c.count(pb::CountRequest { namespace: String::new() }).await.unwrap().into_inner().count, 0);
    c.upsert(upsert("ns", vec![good("small")])).await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_in_flight_limit_are_refused_at_once() {
    for store in stores("writes_beyond_the_in_flight_limit_are_refused_at_once", false) {
        eprintln!("writes_beyond_the_in_flight_limit_are_refused_at_once: on {store}");
        writes_beyond_the_in_flight_limit_are_refused_at_once_on(&store).await;
        store.drop_collection().await;
    }
}

async fn writes_beyond_the_in_flight_limit_are_refused_at_once_on(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(store_config(dir.path(), store, &["--max-inflight-writes", "1"])).await;
    let c = client(wait_serving(server.addr).await);
    let calls = (0..16).map(|b| {
        let mut c = c.clone();
        async move {
            let records = (0..500).map(|i| record(&format!("{b}-{i}"), b * 1000 + i, "t", &[])).collect();
            c.upsert(upsert("ns", records)).await
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut accepted = 0u64;
    let mut refused = 0;
    for result in results {
        match result {
            Ok(r) => accepted += r.into_inner().upserted,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.metadata().get("grpc-retry-pushback-ms").is_some(), "retry hint");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "16 concurrent batches against a limit of 1: some must be refused");
    let mut c = c.clone();
    assert_eq!(c.count(pb::CountRequest { namespace: String::new() }).await.unwrap().into_inner().count, accepted);
    server.stop().await.unwrap();
}
