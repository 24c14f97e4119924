//! Fails on a breaking change of the gRPC contracts against `baseline/contract.txt`.
//! After an intended, compatible addition, refresh it with
//! `MEMGPT_UPDATE_BASELINE=1 cargo test -p memgpt-proto --test compat`.

use memgpt_proto::compat::{breaking_changes, flatten, parse, render};

const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/baseline/contract.txt");

#[test]
fn contracts_have_no_breaking_change() {
    let current = flatten(memgpt_proto::FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    if std::env::var_os("MEMGPT_UPDATE_BASELINE").is_some() {
        std::fs::write(BASELINE, render(&current)).expect("baseline written");
    }
    let baseline = parse(&std::fs::read_to_string(BASELINE).expect("baseline readable"));
    assert!(baseline.len() > 100, "baseline looks empty: {} entries", baseline.len());
    let broken = breaking_changes(&baseline, &current);
    assert!(broken.is_empty(), "breaking changes:\n{}", broken.join("\n"));
}

#[test]
fn a_removed_renumbered_or_retyped_field_is_caught() {
    let current = flatten(memgpt_proto::FILE_DESCRIPTOR_SET).unwrap();
    let key = "field memgpt.memory.v1.Record.id";
    assert_eq!(current[key], "1 singular TYPE_STRING");

    let mut removed = current.clone();
    removed.remove(key);
    assert_eq!(breaking_changes(&current, &removed).len(), 1);

    let mut renumbered = current.clone();
    renumbered.insert(key.into(), "9 singular TYPE_STRING".into());
    assert_eq!(breaking_changes(&current, &renumbered).len(), 1);

    let mut retyped = current.clone();
    retyped.insert(key.into(), "1 singular TYPE_BYTES".into());
    assert_eq!(breaking_changes(&current, &retyped).len(), 1);

    let mut added = current.clone();
    added.insert("field memgpt.memory.v1.Record.extra".into(), "99 singular TYPE_STRING".into());
    assert!(breaking_changes(&current, &added).is_empty(), "additions are compatible");
}

#[test]
fn contract_names_of_the_design_exist() {
    let current = flatten(memgpt_proto::FILE_DESCRIPTOR_SET).unwrap();
    for rpc in [
        "memgpt.memory.v1.Memory.Upsert",
        "memgpt.memory.v1.Memory.Search",
        "memgpt.memory.v1.Memory.Get",
        "memgpt.memory.v1.Memory.Delete",
        "memgpt.memory.v1.Memory.Count",
        "memgpt.memory.v1.Memory.List",
        "memgpt.memory.v1.Memory.DropNamespace",
        "memgpt.generator.v1.Generator.Generate",
        "memgpt.generator.v1.Generator.WarmMemories",
        "memgpt.generator.v1.Generator.Info",
        "memgpt.gateway.v1.Gateway.Ask",
        "memgpt.gateway.v1.Gateway.AskStream",
        "memgpt.gateway.v1.Gateway.Remember",
        "memgpt.gateway.v1.Gateway.Forget",
        "memgpt.gateway.v1.Gateway.Search",
        "memgpt.gateway.v1.Gateway.Chat",
    ] {
        assert!(current.contains_key(&format!("rpc {rpc}")), "missing rpc {rpc}");
    }
    let rendered = render(&current);
    assert_eq!(parse(&rendered), current, "render and parse round-trip");
}
