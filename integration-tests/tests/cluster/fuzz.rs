//! Property-based fuzzing of the parsers and validators that take untrusted bytes: the GGUF
//! and safetensors readers never panic (they return errors), and the memory service's request
//! validation never panics and accepts only what it can store. CI runs a few hundred cases; the
//! long run is `PROPTEST_CASES=200000 cargo test --release -p integration-tests --test cluster fuzz`.

use memgpt_proto::memory::v1 as pb;
use proptest::prelude::*;

fn gguf_like() -> impl Strategy<Value = Vec<u8>> {
    // Mostly well-formed headers with random tails, plus pure noise.
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (any::<u32>(), any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..512)).prop_map(|(v, t, k, tail)| {
            let mut b = b"GGUF".to_vec();
            b.extend((v % 4).to_le_bytes());
            b.extend((t % 64).to_le_bytes());
            b.extend((k % 64).to_le_bytes());
            b.extend(tail);
            b
        }),
    ]
}

fn safetensors_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        (proptest::collection::vec(any::<u8>(), 0..64), "[ -~]{0,80}", any::<u16>()).prop_map(|(data, json, n)| {
            let header = format!("{{\"t\":{{\"dtype\":\"F32\",\"shape\":[{n}],\"data_offsets\":[0,{}]}}{json}}}", data.len());
            let mut b = (header.len() as u64).to_le_bytes().to_vec();
            b.extend(header.as_bytes());
            b.extend(data);
            b
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300), ..ProptestConfig::default() })]

    #[test]
    fn gguf_parser_never_panics(bytes in gguf_like()) {
        let _ = memgpt_models::gguf::Gguf::parse_bytes(&bytes);
    }

    #[test]
    fn safetensors_reader_never_panics(bytes in safetensors_like()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(weights) = memgpt_models::weights::Weights::safetensors_dir(dir.path()) {
            let _ = weights.f32("t");
        }
    }

    #[test]
    fn upsert_validation_never_panics_and_accepts_only_storable_records(
        namespace in "\\PC{0,8}|[\\x00-\\x1f]{1,3}",
        id in "\\PC{0,12}",
        dims in 0usize..6,
        value in proptest::num::f32::ANY,
        key in "\\PC{0,6}",
    ) {
        let limits = memgpt_memory::validate::Limits { dimension: 4, max_text_bytes: 64, max_metadata_keys: 4, max_metadata_bytes: 64 };
        let record = pb::Record { id: id.clone(), vector: vec![value; dims], text: "t".into(), metadata: [(key, "v".to_string())].into() };
        let req = pb::UpsertRequest { namespace: namespace.clone(), records: vec![record], wait: true };
        if let Ok((ns, records)) = memgpt_memory::validate::upsert(req, &limits) {
            prop_assert!(!ns.is_empty() && !ns.chars().any(char::is_control));
            prop_assert_eq!(records.len(), 1);
            prop_assert!(dims == 4 && value.is_finite() && value != 0.0);
            prop_assert!(!id.is_empty());
        }
    }
}
