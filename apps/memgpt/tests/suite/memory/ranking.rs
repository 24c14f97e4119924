//! Ranking modes (dense, BM25, hybrid), searches and lookups (Find) over several namespaces,
//! and validity (as of a time, TTL expiry, the sweep), on every store of `common::stores`.

use std::time::{Duration, Instant};

use memgpt_proto::memory::v1 as pb;

use super::common::{client, config, record, start, store_config, stores, vector, wait_serving, InProcess, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qdrant_collection_of_an_older_version_is_refused_with_what_to_do() {
    let url = match std::env::var("QDRANT_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            eprintln!("skipped: set QDRANT_URL to a Qdrant server's gRPC URL (http://127.0.0.1:6334)");
            return;
        }
    };
    use qdrant_client::qdrant::{CreateCollectionBuilder, Distance, VectorParamsBuilder};
    let collection = format!("memgpt-test-old-{}", uuid::Uuid::new_v4().simple());
    let client = qdrant_client::Qdrant::from_url(&url).skip_compatibility_check().build().unwrap();
    let dense_only = CreateCollectionBuilder::new(&collection).vectors_config(VectorParamsBuilder::new(super::common::DIM as u64, Distance::Cosine));
    client.create_collection(dense_only).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &["--store", "qdrant", "--qdrant-url", &url, "--qdrant-collection", &collection]);
    let err = memgpt_memory::server::open_store(&config).await.err().expect("refused").to_string();
    client.delete_collection(&collection).await.unwrap();
    assert!(err.contains("bm25") && err.contains("--qdrant-collection"), "{err}");
}

async fn serve(dir: &std::path::Path, store: &Store, extra: &[&str]) -> (InProcess, pb::memory_client::MemoryClient<tonic::transport::Channel>) {
    let server = start(store_config(dir, store, extra)).await;
    let c = client(wait_serving(server.addr).await);
    (server, c)
}

fn search(mode: pb::RetrievalMode, seed: u64, text: &str) -> pb::SearchRequest {
    pb::SearchRequest {
        namespace: "kb".into(),
        vector: vector(seed),
        top_k: 10,
        query_text: text.into(),
        retrieval: Some(pb::Retrieval { mode: mode as i32, ..Default::default() }),
        ..Default::default()
    }
}

fn ids(hits: &[pb::Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_and_hybrid_rank_by_the_words_and_say_which_list_found_each() {
    for store in stores("ranking", true) {
        let dir = tempfile::tempdir().unwrap();
        let (server, mut c) = serve(dir.path(), &store, &[]).await;
        let records = vec![
            record("near", 5, "a note about the weather in spring", &[]),
            record("words", 100, "the zygomorphic flowers of orchids", &[]),
            record("other", 200, "a recipe for bread and butter", &[]),
            record("also", 300, "orchids grow in the tropics", &[]),
        ];
        c.upsert(pb::UpsertRequest { namespace: "kb".into(), records, wait: true }).await.unwrap();

        let dense = c.search(search(pb::RetrievalMode::Dense, 5, "zygomorphic orchids")).await.unwrap().into_inner().hits;
        assert_eq!(dense[0].id, "near", "{store}: {:?}", ids(&dense));
        assert_eq!((dense[0].dense_rank, dense[0].sparse_rank), (1, 0), "{store}");

        let sparse = c.search(search(pb::RetrievalMode::Sparse, 5, "Zygomorphic orchid")).await.unwrap().into_inner().hits;
        // Stemmed and lowercased: "orchid" matches "orchids"; the rare word ranks first.
        assert_eq!(ids(&sparse), ["words", "also"], "{store}");
        assert_eq!((sparse[0].sparse_rank, sparse[0].dense_rank), (1, 0), "{store}");
        assert!(sparse[0].sparse_score.unwrap() > sparse[1].sparse_score.unwrap(), "{store}: {sparse:?}");
        // Stop words only: no terms, so no BM25 hits, and hybrid is the dense list alone.
        let none = c.search(search(pb::RetrievalMode::Sparse, 5, "the of and")).await.unwrap().into_inner().hits;
        assert!(none.is_empty(), "{store}: {none:?}");
        let dense_only = c.search(search(pb::RetrievalMode::Hybrid, 5, "what is it")).await.unwrap().into_inner().hits;
        assert_eq!((dense_only[0].id.as_str(), dense_only[0].sparse_rank), ("near", 0), "{store}");

        // RRF: the records both lists found come first, then the dense list's best.
        let mut rrf = search(pb::RetrievalMode::Hybrid, 5, "zygomorphic orchids");
        rrf.retrieval.as_mut().unwrap().fusion = pb::Fusion::Rrf as i32;
        let hybrid = c.search(rrf).await.unwrap().into_inner().hits;
        let mut top2: Vec<&str> = ids(&hybrid)[..2].to_vec();
        top2.sort();
        assert_eq!((top2, hybrid[2].id.as_str()), (vec!["also", "words"], "near"), "{store}: {:?}", ids(&hybrid));
        let words = hybrid.iter().find(|h| h.id == "words").unwrap();
        assert_eq!(words.sparse_rank, 1, "{store}: {words:?}");
        assert!(words.dense_rank > 0, "{store}: both lists went deeper than the hits: {words:?}");
        assert_eq!((hybrid[2].dense_rank, hybrid[2].sparse_rank), (1, 0), "{store}");

        // A convex combination with all weight on the dense list ranks as dense does.
        let mut convex = search(pb::RetrievalMode::Hybrid, 5, "zygomorphic orchids");
        convex.retrieval = Some(pb::Retrieval {
            mode: pb::RetrievalMode::Hybrid as i32,
            fusion: pb::Fusion::Convex as i32,
            dense_weight: Some(1.0),
            ..Default::default()
        });
        let convex = c.search(convex).await.unwrap().into_inner().hits;
        assert_eq!(convex[0].id, "near", "{store}: {:?}", ids(&convex));

        // Bad rankings name their field.
        let bad = |f: &dyn Fn(&mut pb::SearchRequest)| {
            let mut r = search(pb::RetrievalMode::Hybrid, 5, "orchids");
            f(&mut r);
            r
        };
        for (req, field) in [
            (bad(&|r| r.query_text.clear()), "`query_text`"),
            (bad(&|r| r.retrieval.as_mut().unwrap().mode = 9), "`retrieval.mode`"),
            (bad(&|r| r.retrieval.as_mut().unwrap().fusion = 9), "`retrieval.fusion`"),
            (bad(&|r| r.retrieval.as_mut().unwrap().rrf_k = Some(0)), "`retrieval.rrf_k`"),
            (bad(&|r| r.retrieval.as_mut().unwrap().dense_weight = Some(-0.1)), "`retrieval.dense_weight`"),
            (bad(&|r| r.as_of = "2024-02-30T00:00:00Z".into()), "`as_of`"),
        ] {
            let status = c.search(req).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{store}: {status:?}");
            assert!(status.message().contains(field), "{store}: {:?} does not name {field}", status.message());
        }
        server.stop().await.unwrap();
        store.drop_collection().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_namespaces_are_ranked_as_one_collection() {
    for store in stores("namespaces", true) {
        let dir = tempfile::tempdir().unwrap();
        let (server, mut c) = serve(dir.path(), &store, &[]).await;
        // "bread" is alone in its namespace and matches neither the vector nor the words: a
        // namespace ranked by itself would normalise it to the top of its lists.
        let kb = vec![record("bread", 200, "a recipe for bread and butter", &[])];
        let notes = vec![record("spring", 5, "a note about the weather in spring", &[]), record("words", 100, "the zygomorphic flowers of orchids", &[])];
        c.upsert(pb::UpsertRequest { namespace: "kb".into(), records: kb, wait: true }).await.unwrap();
        c.upsert(pb::UpsertRequest { namespace: "notes".into(), records: notes, wait: true }).await.unwrap();
        let same_id = vec![record("words", 300, "orchids grow in the tropics", &[])];
        c.upsert(pb::UpsertRequest { namespace: "kb".into(), records: same_id, wait: true }).await.unwrap();

        let mut both = search(pb::RetrievalMode::Hybrid, 5, "zygomorphic orchids");
        both.more_namespaces = vec!["notes".into()];
        both.top_k = 3;
        let hits = c.search(both.clone()).await.unwrap().into_inner().hits;
        let found: Vec<(&str, &str)> = hits.iter().map(|h| (h.namespace.as_str(), h.id.as_str())).collect();
        assert!(!found.contains(&("kb", "bread")), "{store}: {found:?}");
        // The same id in two namespaces is two records.
        for want in [("notes", "words"), ("notes", "spring"), ("kb", "words")] {
            assert!(found.contains(&want), "{store}: {want:?} missing from {found:?}");
        }

        for (more, why) in [(vec!["notes".to_string(), "notes".to_string()], "twice"), (vec!["kb".to_string()], "twice"), (vec![String::new()], "")] {
            let mut bad = both.clone();
            bad.more_namespaces = more;
            let status = c.search(bad).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{store}: {status:?}");
            assert!(status.message().contains("more_namespaces") && status.message().contains(why), "{store}: {status:?}");
        }
        server.stop().await.unwrap();
        store.drop_collection().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_looks_records_up_by_payload_across_namespaces() {
    for store in stores("find", true) {
        let dir = tempfile::tempdir().unwrap();
        let (server, mut c) = serve(dir.path(), &store, &[]).await;
        let keyed = |id: &str, key: &str| record(id, 7, "a fact", &[("entity", key)]);
        let kb = vec![keyed("a", "x"), keyed("b", "y"), keyed("c", "z")];
        c.upsert(pb::UpsertRequest { namespace: "kb".into(), records: kb, wait: true }).await.unwrap();
        let mut old = keyed("d", "x");
        old.valid_until = "2020-01-01T00:00:00Z".into();
        c.upsert(pb::UpsertRequest { namespace: "notes".into(), records: vec![keyed("a", "x"), old], wait: true }).await.unwrap();
        let any_of = |values: &[&str]| pb::Filter {
            must: vec![pb::Condition { key: "entity".into(), predicate: Some(pb::condition::Predicate::AnyOf(pb::AnyOf { values: values.iter().map(|v| v.to_string()).collect() })) }],
        };
        let find = |values: &[&str], limit| pb::FindRequest { namespace: "kb".into(), more_namespaces: vec!["notes".into()], filter: Some(any_of(values)), limit, as_of: String::new() };
        let found = c.find(find(&["x", "y"], 10)).await.unwrap().into_inner();
        let got: Vec<(&str, &str)> = found.hits.iter().map(|h| (h.namespace.as_str(), h.id.as_str())).collect();
        // By namespace, then id; "d" stopped holding in 2020.
        assert_eq!((got, found.truncated), (vec![("kb", "a"), ("kb", "b"), ("notes", "a")], false), "{store}");
        let mut then = find(&["x"], 10);
        then.as_of = "2019-06-01T00:00:00Z".into();
        let then = c.find(then).await.unwrap().into_inner();
        assert!(then.hits.iter().any(|h| h.id == "d"), "{store}: {then:?}");
        let cut = c.find(find(&["x", "y", "z"], 2)).await.unwrap().into_inner();
        assert_eq!((cut.hits.len(), cut.truncated), (2, true), "{store}");
        for (req, field) in [(find(&["x"], 0), "`limit`"), (pb::FindRequest { filter: None, ..find(&["x"], 5) }, "`filter`"), (pb::FindRequest { namespace: String::new(), ..find(&["x"], 5) }, "`namespace`")] {
            let status = c.find(req).await.unwrap_err();
            assert!(status.code() == tonic::Code::InvalidArgument && status.message().contains(field), "{store}: {field}: {status:?}");
        }
        server.stop().await.unwrap();
        store.drop_collection().await;
    }
}

fn fact(id: &str, seed: u64, text: &str, from: &str, until: &str) -> pb::Record {
    pb::Record { valid_from: from.into(), valid_until: until.into(), ..record(id, seed, text, &[]) }
}

async fn found(c: &mut pb::memory_client::MemoryClient<tonic::transport::Channel>, as_of: &str) -> Vec<String> {
    let req = pb::SearchRequest { as_of: as_of.into(), ..search(pb::RetrievalMode::Hybrid, 1, "capital city") };
    let mut ids: Vec<String> = c.search(req).await.unwrap().into_inner().hits.into_iter().map(|h| h.id).collect();
    ids.sort();
    ids
}

/// Polls `check` until it holds (the condition is time passing; no fixed sleep stands in for it).
async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_fact_is_found_only_before_its_end_and_an_expired_one_is_swept() {
    for store in stores("validity", true) {
        let dir = tempfile::tempdir().unwrap();
        let (server, mut c) = serve(dir.path(), &store, &["--expiry-sweep-secs", "0"]).await;
        let t = "2024-06-01T00:00:00Z";
        let records = vec![
            fact("old", 1, "the capital city is Oldtown", "", t),
            fact("new", 2, "the capital city is Newtown", t, ""),
            fact("later", 3, "the capital city will be Futureville", "2999-01-01T00:00:00Z", ""),
        ];
        c.upsert(pb::UpsertRequest { namespace: "kb".into(), records, wait: true }).await.unwrap();
        assert_eq!(found(&mut c, "2024-05-31T23:59:59Z").await, ["old"], "{store}: as of t - 1 s");
        assert_eq!(found(&mut c, "2024-06-01T00:00:01Z").await, ["new"], "{store}: as of t + 1 s");
        assert_eq!(found(&mut c, "").await, ["new"], "{store}: as of now");
        assert_eq!(found(&mut c, "3000-01-01T00:00:00+01:00").await, ["later", "new"], "{store}");
        let hit = c.search(pb::SearchRequest { as_of: "2024-01-01T00:00:00Z".into(), ..search(pb::RetrievalMode::Dense, 1, "") }).await.unwrap();
        let old = hit.into_inner().hits.into_iter().find(|h| h.id == "old").unwrap();
        assert_eq!((old.valid_from.as_str(), old.valid_until.as_str()), ("", "2024-06-01T00:00:00.000Z"), "{store}");

        // Bad times are refused whole: nothing of the batch is stored.
        for (bad, field) in [
            (fact("x", 4, "t", "June", ""), "`records[1].valid_from`"),
            (fact("x", 4, "t", "2024-06-02T00:00:00Z", "2024-06-01T00:00:00Z"), "`records[1].valid_until`"),
            (pb::Record { expires_at: "soon".into(), ..record("x", 4, "t", &[]) }, "`records[1].expires_at`"),
        ] {
            let req = pb::UpsertRequest { namespace: "kb".into(), records: vec![record("y", 5, "t", &[]), bad], wait: true };
            let status = c.upsert(req).await.unwrap_err();
            assert!(status.message().contains(field), "{store}: {:?} does not name {field}", status.message());
        }
        assert_eq!(c.count(pb::CountRequest { namespace: "kb".into() }).await.unwrap().into_inner().count, 3, "{store}");

        // A TTL'd record: found until it expires, then never, though still stored until a
        // delete of the expired ones.
        let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
        let ttl = pb::Record { expires_at: soon, ..record("ttl", 6, "the capital city for a moment", &[]) };
        c.upsert(pb::UpsertRequest { namespace: "kb".into(), records: vec![ttl], wait: true }).await.unwrap();
        assert!(found(&mut c, "").await.contains(&"ttl".to_string()), "{store}");
        eventually("the TTL'd record leaving Search", Duration::from_secs(30), async || !found(&mut c, "").await.contains(&"ttl".to_string())).await;
        let get = pb::GetRequest { namespace: "kb".into(), ids: vec!["ttl".into()], with_vectors: false };
        assert_eq!(c.get(get).await.unwrap().into_inner().records.len(), 1, "{store}: still stored");
        let deleted = c.delete(pb::DeleteRequest { namespace: "kb".into(), expired: true, ..Default::default() }).await.unwrap();
        assert_eq!(deleted.into_inner().deleted, 1, "{store}");
        assert_eq!(c.count(pb::CountRequest { namespace: "kb".into() }).await.unwrap().into_inner().count, 3, "{store}");
        server.stop().await.unwrap();

        // The background sweep deletes what expires, and counts it.
        let (server, mut c) = serve(dir.path(), &store, &["--expiry-sweep-secs", "1"]).await;
        assert_eq!(found(&mut c, "2024-05-31T23:59:59Z").await, ["old"], "{store}: as of t - 1 s, reopened");
        let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(500)).to_rfc3339();
        let ttl = pb::Record { expires_at: soon, ..record("ttl2", 7, "brief", &[]) };
        c.upsert(pb::UpsertRequest { namespace: "kb".into(), records: vec![ttl], wait: true }).await.unwrap();
        eventually("the sweep deleting the expired record", Duration::from_secs(30), async || {
            c.count(pb::CountRequest { namespace: "kb".into() }).await.unwrap().into_inner().count == 3
        })
        .await;
        let metrics = memgpt_telemetry::metrics::render();
        assert!(metrics.lines().any(|l| l.starts_with("memgpt_memory_expired_deleted_total") && !l.ends_with(" 0")), "{store}: {metrics}");
        server.stop().await.unwrap();
        store.drop_collection().await;
    }
}

/// The edge store leaves out of a shard's filter what every point of the shard meets (one
/// namespace, no bounds); the conditions come back the moment a write makes them matter,
/// and after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_left_out_of_a_search_come_back_when_a_write_needs_them() {
    for store in stores("contents", true) {
        let dir = tempfile::tempdir().unwrap();
        let (server, mut c) = serve(dir.path(), &store, &[]).await;
        let dense = || pb::SearchRequest { top_k: 20, ..search(pb::RetrievalMode::Dense, 9, "") };
        let got = |hits: Vec<pb::Hit>| -> Vec<(String, String)> { hits.into_iter().map(|h| (h.namespace, h.id)).collect() };
        let plain: Vec<_> = (0..5).map(|i| record(&format!("p{i}"), 9 + i, "plain", &[])).collect();
        c.upsert(pb::UpsertRequest { namespace: "kb".into(), records: plain, wait: true }).await.unwrap();
        assert_eq!(c.search(dense()).await.unwrap().into_inner().hits.len(), 5, "{store}");
        // The nearest records of all now sit in another namespace, or are not yet valid, or
        // expired: none of them may be found in "kb" as of now.
        let near = |id: &str| record(id, 9, "near", &[]);
        c.upsert(pb::UpsertRequest { namespace: "other".into(), records: vec![near("o")], wait: true }).await.unwrap();
        let later = pb::Record { valid_from: "2999-01-01T00:00:00Z".into(), ..near("later") };
        let gone = pb::Record { expires_at: "2001-01-01T00:00:00Z".into(), ..near("gone") };
        c.upsert(pb::UpsertRequest { namespace: "kb".into(), records: vec![later, gone], wait: true }).await.unwrap();
        let want: Vec<(String, String)> = (0..5).map(|i| ("kb".to_string(), format!("p{i}"))).collect();
        let mut found = got(c.search(dense()).await.unwrap().into_inner().hits);
        found.sort();
        assert_eq!(found, want, "{store}");
        server.stop().await.unwrap();

        let (server, mut c) = serve(dir.path(), &store, &[]).await;
        let mut found = got(c.search(dense()).await.unwrap().into_inner().hits);
        found.sort();
        assert_eq!(found, want, "{store}: reopened");
        let both = pb::SearchRequest { more_namespaces: vec!["other".into()], ..dense() };
        assert!(got(c.search(both).await.unwrap().into_inner().hits).contains(&("other".into(), "o".into())), "{store}");
        server.stop().await.unwrap();
        store.drop_collection().await;
    }
}
