//! Property-based fuzzing of the readers that take untrusted bytes: the GGUF and safetensors
//! readers never panic (they return errors). CI runs a few hundred cases; the long run is
//! `PROPTEST_CASES=200000 cargo test --release -p memgpt-models --test models fuzz`.

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
        let _ = memgpt_models::formats::gguf::Gguf::parse_bytes(&bytes);
    }

    #[test]
    fn safetensors_reader_never_panics(bytes in safetensors_like()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(weights) = memgpt_models::formats::weights::Weights::safetensors_dir(dir.path()) {
            let _ = weights.f32("t");
        }
    }
}
