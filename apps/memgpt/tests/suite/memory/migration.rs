//! A format-1 data directory (dense vectors only, records without validity, as versions
//! before BM25 wrote it) is migrated when opened: every record and the journal's unflushed
//! write are there afterwards, found by their words as well, and the old files are gone.

use std::collections::BTreeMap;

use memgpt_memory::store::{point_uuid, shard_of};
use memgpt_proto::memory::v1 as pb;
use qdrant_edge::external::serde_json::{json, Value};
use qdrant_edge::{
    EdgeConfig, EdgeShard, EdgeVectorParams, Payload, PointId, PointInsertOperations, PointOperations, PointStructPersisted,
    UpdateOperation, VectorStructInternal,
};

use super::common::{client, config, start, vector, wait_serving, DIM};

const SHARDS: usize = 4;

/// The record layout of format 1's journal (bincode).
#[derive(serde::Serialize)]
struct V1Record {
    id: String,
    vector: Vec<f32>,
    text: String,
    metadata: BTreeMap<String, String>,
}

#[derive(serde::Serialize)]
enum V1Op {
    Upsert { namespace: String, records: Vec<V1Record> },
}

fn v1_point(namespace: &str, id: &str, seed: u64, text: &str) -> PointStructPersisted {
    let Value::Object(payload) = json!({"namespace": namespace, "record_id": id, "text": text, "meta": {"k": "v"}, "num": {}}) else { unreachable!() };
    PointStructPersisted {
        id: PointId::Uuid(point_uuid(namespace, id)),
        vector: VectorStructInternal::Single(vector(seed)).into(),
        payload: Some(Payload(payload.into_iter().collect())),
    }
}

/// Writes what format 1 left: shards with dense-only points, its meta file, and a journal
/// holding one write that never reached the shards.
fn write_v1(dir: &std::path::Path, records: &[(&str, u64, &str)], journaled: (&str, u64, &str)) {
    let mut per_shard: Vec<Vec<PointStructPersisted>> = vec![Vec::new(); SHARDS];
    for (id, seed, text) in records {
        per_shard[shard_of(&point_uuid("kb", id), SHARDS)].push(v1_point("kb", id, *seed, text));
    }
    for (i, points) in per_shard.into_iter().enumerate() {
        let path = dir.join("shards").join(i.to_string());
        std::fs::create_dir_all(&path).unwrap();
        let config = EdgeConfig {
            vectors: [(String::new(), EdgeVectorParams::builder(DIM, qdrant_edge::Distance::Cosine).build())].into(),
            ..Default::default()
        };
        let shard = EdgeShard::new(&path, config).unwrap();
        if !points.is_empty() {
            shard.update(UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)))).unwrap();
        }
        shard.flush();
    }
    std::fs::write(dir.join("memgpt-store.json"), format!(r#"{{"format": 1, "dimension": {DIM}, "shards": {SHARDS}}}"#)).unwrap();
    let (id, seed, text) = journaled;
    let op = V1Op::Upsert {
        namespace: "kb".into(),
        records: vec![V1Record { id: id.into(), vector: vector(seed), text: text.into(), metadata: BTreeMap::new() }],
    };
    let body = bincode::serialize(&op).unwrap();
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend(crc32fast::hash(&body).to_le_bytes());
    frame.extend(body);
    std::fs::write(dir.join("journal.wal"), frame).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_directory_is_migrated_whole() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<(String, u64, String)> = (0..40).map(|i| (format!("r{i}"), i, format!("plain record number {i}"))).collect();
    let refs: Vec<(&str, u64, &str)> = records.iter().map(|(a, b, c)| (a.as_str(), *b, c.as_str())).collect();
    write_v1(dir.path(), &refs, ("late", 99, "a lighthouse on the cliffs"));

    let server = start(config(dir.path(), &[])).await;
    let mut c = client(wait_serving(server.addr).await);
    assert_eq!(c.count(pb::CountRequest { namespace: "kb".into() }).await.unwrap().into_inner().count, 41);
    let got = c.get(pb::GetRequest { namespace: "kb".into(), ids: vec!["r7".into(), "late".into()], with_vectors: true }).await.unwrap().into_inner().records;
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].text.as_str(), got[0].metadata["k"].as_str()), ("plain record number 7", "v"));
    // The store keeps cosine vectors normalised: the same direction.
    let (a, b) = (&got[0].vector, vector(7));
    let cosine = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>() / b.iter().map(|y| y * y).sum::<f32>().sqrt();
    assert!((cosine - 1.0).abs() < 1e-5, "{a:?} vs {b:?}");
    let sparse = pb::SearchRequest {
        namespace: "kb".into(),
        top_k: 3,
        query_text: "lighthouse".into(),
        retrieval: Some(pb::Retrieval { mode: pb::RetrievalMode::Sparse as i32, ..Default::default() }),
        ..Default::default()
    };
    let hits = c.search(sparse).await.unwrap().into_inner().hits;
    assert_eq!(hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["late"]);
    server.stop().await.unwrap();

    let meta = std::fs::read_to_string(dir.path().join("memgpt-store.json")).unwrap();
    assert!(meta.contains("\"format\": 2") && meta.contains("bm25"), "{meta}");
    assert!(!dir.path().join("shards.v1").exists() && !dir.path().join("journal.v1.wal").exists());

    // And it opens again as format 2, the same records there.
    let server = start(config(dir.path(), &[])).await;
    let mut c = client(wait_serving(server.addr).await);
    assert_eq!(c.count(pb::CountRequest { namespace: "kb".into() }).await.unwrap().into_inner().count, 41);
    server.stop().await.unwrap();
}
