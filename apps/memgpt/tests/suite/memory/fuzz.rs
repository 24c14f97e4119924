//! Property-based fuzzing of the request validation: it never panics and accepts only what
//! the store can hold. CI runs a few hundred cases; the long run is
//! `PROPTEST_CASES=200000 cargo test --release -p memgpt --test suite memory::fuzz`.

use memgpt_proto::memory::v1 as pb;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300), ..ProptestConfig::default() })]

    #[test]
    fn upsert_validation_never_panics_and_accepts_only_storable_records(
        namespace in "\\PC{0,8}|[\\x00-\\x1f]{1,3}",
        id in "\\PC{0,12}",
        dims in 0usize..6,
        value in proptest::num::f32::ANY,
        key in "\\PC{0,6}",
    ) {
        let limits = memgpt_memory::validate::Limits { dimension: 4, max_text_bytes: 64, max_metadata_keys: 4, max_metadata_bytes: 64 };
        let record = pb::Record { id: id.clone(), vector: vec![value; dims], text: "t".into(), metadata: [(key, "v".to_string())].into(), ..Default::default() };
        let req = pb::UpsertRequest { namespace: namespace.clone(), records: vec![record], wait: true };
        if let Ok((ns, records)) = memgpt_memory::validate::upsert(req, &limits) {
            prop_assert!(!ns.is_empty() && !ns.chars().any(char::is_control));
            prop_assert_eq!(records.len(), 1);
            prop_assert!(dims == 4 && value.is_finite() && value != 0.0);
            prop_assert!(!id.is_empty());
        }
    }
}
