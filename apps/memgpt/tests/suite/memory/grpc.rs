//! The Memory service over real gRPC, in-process on a port-0 listener, on every store of
//! `common::stores` (health, reflection and the opening race on edge).

use super::common::{client, config, record, start, store_config, stores, vector, wait_serving, Store, DIM};
use memgpt_proto::memory::v1 as pb;
use tonic::Code;

fn cond(key: &str, predicate: pb::condition::Predicate) -> pb::Condition {
    pb::Condition { key: key.into(), predicate: Some(predicate) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_works_end_to_end() {
    for store in stores("every_rpc_works_end_to_end", false) {
        eprintln!("every_rpc_works_end_to_end: on {store}");
        every_rpc_works_end_to_end_on(&store).await;
        store.drop_collection().await;
    }
}

async fn every_rpc_works_end_to_end_on(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(store_config(dir.path(), store, &[])).await;
    let mut c = client(wait_serving(server.addr).await);

    let records = vec![
        record("a", 1, "alpha", &[("lang", "en"), ("year", "2020")]),
        record("b", 2, "beta", &[("lang", "fr"), ("year", "2021")]),
        record("c", 3, "gamma", &[("lang", "en"), ("year", "2023")]),
    ];
    let up = c.upsert(pb::UpsertRequest { namespace: "docs".into(), records, wait: true }).await.unwrap();
    assert_eq!(up.into_inner().upserted, 3);

    // Search: the record itself is the best hit with cosine ~1.
    let hits = c
        .search(pb::SearchRequest { namespace: "docs".into(), vector: vector(2), top_k: 3, filter: None, min_score: None, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].id, "b");
    assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
    assert_eq!(hits[0].text, "beta");
    assert_eq!(hits[0].metadata["lang"], "fr");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

    // Filters: equality, any-of, numeric range, and a minimum score.
    let search = |filter: pb::Filter, min_score: Option<f32>| pb::SearchRequest {
        namespace: "docs".into(),
        vector: vector(2),
        top_k: 10,
        filter: Some(filter),
        min_score,
        ..Default::default()
    };
    let ids = |hits: Vec<pb::Hit>| {
        let mut ids: Vec<String> = hits.into_iter().map(|h| h.id).collect();
        ids.sort();
        ids
    };
    use pb::condition::Predicate as P;
    let en = c.search(search(pb::Filter { must: vec![cond("lang", P::Equals("en".into()))] }, None)).await.unwrap();
    assert_eq!(ids(en.into_inner().hits), ["a", "c"]);
    let any = c
        .search(search(pb::Filter { must: vec![cond("lang", P::AnyOf(pb::AnyOf { values: vec!["fr".into(), "de".into()] }))] }, None))
        .await
        .unwrap();
    assert_eq!(ids(any.into_inner().hits), ["b"]);
    let range = pb::Range { gte: Some(2021.0), ..Default::default() };
    let recent = c.search(search(pb::Filter { must: vec![cond("year", P::Range(range))] }, None)).await.unwrap();
    assert_eq!(ids(recent.into_inner().hits), ["b", "c"]);
    let strict = c.search(search(pb::Filter { must: vec![] }, Some(0.9999))).await.unwrap();
    assert_eq!(ids(strict.into_inner().hits), ["b"]);

    // Upserting an existing id replaces it.
    c.upsert(pb::UpsertRequest { namespace: "docs".into(), records: vec![record("b", 2, "beta v2", &[])], wait: true })
        .await
        .unwrap();
    let got = c.get(pb::GetRequest { namespace: "docs".into(), ids: vec!["b".into(), "zz".into(), "a".into()], with_vectors: true })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(got.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["b", "a"], "request order, missing left out");
    assert_eq!(got[0].text, "beta v2");
    assert!(got[0].metadata.is_empty());
    assert_eq!(got[0].vector.len(), DIM);
    assert_eq!(c.count(pb::CountRequest { namespace: "docs".into() }).await.unwrap().into_inner().count, 3);

    // List pages through everything exactly once.
    let more: Vec<pb::Record> = (0..25).map(|i| record(&format!("p{i}"), 100 + i, "page", &[])).collect();
    c.upsert(pb::UpsertRequest { namespace: "docs".into(), records: more, wait: false }).await.unwrap();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list(pb::ListRequest { namespace: "docs".into(), page_size: 7, page_token: token.clone(), with_vectors: false })
            .await
            .unwrap()
            .into_inner();
        assert!(page.records.len() <= 7);
        seen.extend(page.records.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let total = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!((total, seen.len()), (28, 28));

    // Delete by ids (counts only what existed) and by filter.
    let del = c.delete(pb::DeleteRequest { namespace: "docs".into(), ids: vec!["a".into(), "nope".into()], filter: None, ..Default::default() }).await.unwrap();
    assert_eq!(del.into_inner().deleted, 1);
    let del = c
        .delete(pb::DeleteRequest {
            namespace: "docs".into(),
            ids: vec![],
            filter: Some(pb::Filter { must: vec![cond("lang", P::Equals("en".into()))] }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(del.into_inner().deleted, 1, "only c is still `en`");
    assert_eq!(c.count(pb::CountRequest { namespace: "docs".into() }).await.unwrap().into_inner().count, 26);

    // Another namespace; Count of all; DropNamespace.
    c.upsert(pb::UpsertRequest { namespace: "other".into(), records: vec![record("a", 1, "x", &[])], wait: true }).await.unwrap();
    assert_eq!(c.count(pb::CountRequest { namespace: String::new() }).await.unwrap().into_inner().count, 27);
    let dropped = c.drop_namespace(pb::DropNamespaceRequest { namespace: "docs".into() }).await.unwrap();
    assert_eq!(dropped.into_inner().deleted, 26);
    assert_eq!(c.count(pb::CountRequest { namespace: String::new() }).await.unwrap().into_inner().count, 1);

    // A namespace that holds nothing: no hits, not an error.
    let empty = c
        .search(pb::SearchRequest { namespace: "never".into(), vector: vector(1), top_k: 5, filter: None, min_score: None, ..Default::default() })
        .await
        .unwrap();
    assert!(empty.into_inner().hits.is_empty());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_in_one_namespace_never_returns_another_namespaces_record() {
    for store in stores("a_search_in_one_namespace_never_returns_another_namespaces_record", false) {
        eprintln!("a_search_in_one_namespace_never_returns_another_namespaces_record: on {store}");
        a_search_in_one_namespace_never_returns_another_namespaces_record_on(&store).await;
        store.drop_collection().await;
    }
}

async fn a_search_in_one_namespace_never_returns_another_namespaces_record_on(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(store_config(dir.path(), store, &[])).await;
    let mut c = client(wait_serving(server.addr).await);
    // The same ids and vectors in every namespace: only the namespace tells them apart.
    let namespaces = ["tenant-a", "tenant-b", "tenant-c"];
    for ns in namespaces {
        let records = (0..200).map(|i| record(&format!("r{i}"), i, ns, &[])).collect();
        c.upsert(pb::UpsertRequest { namespace: ns.into(), records, wait: true }).await.unwrap();
    }
    for ns in namespaces {
        for seed in [0, 17, 99, 150] {
            let hits = c
                .search(pb::SearchRequest { namespace: ns.into(), vector: vector(seed), top_k: 1000, filter: None, min_score: None, ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .hits;
            assert_eq!(hits.len(), 200);
            assert!(hits.iter().all(|h| h.text == ns), "a hit of another namespace leaked into {ns}");
        }
        let listed = c.list(pb::ListRequest { namespace: ns.into(), page_size: 1000, ..Default::default() }).await.unwrap();
        assert!(listed.into_inner().records.iter().all(|r| r.text == ns));
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_another_dimension_is_refused() {
    for store in stores("a_restart_with_another_dimension_is_refused", false) {
        eprintln!("a_restart_with_another_dimension_is_refused: on {store}");
        a_restart_with_another_dimension_is_refused_on(&store).await;
        store.drop_collection().await;
    }
}

async fn a_restart_with_another_dimension_is_refused_on(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(store_config(dir.path(), store, &[])).await;
    let mut c = client(wait_serving(server.addr).await);
    c.upsert(pb::UpsertRequest { namespace: "n".into(), records: vec![record("a", 1, "t", &[])], wait: true }).await.unwrap();
    server.stop().await.unwrap();

    let mut other = store_config(dir.path(), store, &[]);
    other.dimension = 16;
    let err = start(other).await.stop().await;
    // Stopping races the open; either way the store must refuse the directory.
    let err = match err {
        Err(err) => err,
        Ok(()) => {
            let mut other = store_config(dir.path(), store, &[]);
            other.dimension = 16;
            memgpt_memory::server::open_store(&other).await.err().expect("refused")
        }
    };
    assert!(err.to_string().contains("dimension 8"), "{err}");

    // The data is still there for the right dimension.
    let server = start(store_config(dir.path(), store, &[])).await;
    let mut c = client(wait_serving(server.addr).await);
    assert_eq!(c.count(pb::CountRequest { namespace: "n".into() }).await.unwrap().into_inner().count, 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_list_the_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path(), &[])).await;
    let channel = wait_serving(server.addr).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let named = health
        .check(tonic_health::pb::HealthCheckRequest { service: "memgpt.memory.v1.Memory".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(named.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut stream = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else { panic!("no list") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in ["memgpt.memory.v1.Memory", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} not in {names:?}");
    }

    // v1alpha is served as well, for older tools.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    let mut alpha = AlphaClient::new(channel);
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol("memgpt.memory.v1.Memory".into())),
    };
    let mut stream = alpha.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().unwrap().message_response.is_some());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_the_store_opens_are_unavailable_not_lost() {
    // A fresh server answers health at once; until SERVING, Memory calls say UNAVAILABLE.
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path(), &[])).await;
    let mut c = client(super::common::channel(server.addr).await);
    match c.count(pb::CountRequest { namespace: String::new() }).await {
        Ok(r) => assert_eq!(r.into_inner().count, 0),
        Err(status) => assert_eq!(status.code(), Code::Unavailable),
    }
    server.stop().await.unwrap();
}
