//! Facts and multi-hop recall: a fact is one memory under a stable id (a reload changes
//! nothing), hops follow facts by entity key in path order with each citation's hop and edge,
//! Neighbors walks both directions, and bad facts or hop counts name their field.

use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::generator::v1 as gen;
use tonic::Code;

use super::api::{count, doc, gateway};
use super::common;

fn fact(s: &str, r: &str, o: &str) -> gw::Fact {
    gw::Fact { subject: s.into(), relation: r.into(), object: o.into(), ..Default::default() }
}

fn remember(ns: &str, facts: Vec<gw::Fact>) -> gw::RememberRequest {
    gw::RememberRequest { namespace: ns.into(), facts, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn facts_are_memories_that_hops_follow_in_path_order() {
    let mut c = common::gateway_client(gateway(&["--no-auth"])).await;
    let facts = vec![
        fact("kx7q", "leads to", "mb3z"),
        fact("mb3z", "leads to", "pt9w"),
        fact("pt9w", "leads to", "vr2d"),
        // The same fact as the first: one memory.
        fact(" KX7Q ", "Leads  to", "MB3Z"),
        fact("aa11", "leads to", "mb3z"),
    ];
    let first = c.remember(remember("graph", facts.clone())).await.unwrap().into_inner();
    let again = c.remember(remember("graph", facts)).await.unwrap().into_inner();
    let ids = |r: &gw::RememberResponse| r.results.iter().map(|d| d.document_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&again));
    assert_eq!(first.results.len(), 4, "{first:?}");
    assert_eq!(count("graph").await, 4);

    let ask = |max_hops| gw::AskRequest {
        question: "Where does kx7q lead?".into(),
        namespaces: vec!["graph".into()],
        top_k: Some(1),
        max_hops,
        params: Some(gen::SamplingParams { max_new_tokens: Some(48), temperature: Some(0.0), ..Default::default() }),
        ..Default::default()
    };
    let walked = c.ask(ask(Some(4))).await.unwrap().into_inner();
    let path: Vec<(u32, &str, &str)> = walked.citations.iter().map(|c| (c.hop, c.snippet.as_str(), c.via_entity.as_str())).collect();
    assert_eq!(path, [(1, "kx7q leads to mb3z.", ""), (2, "mb3z leads to pt9w.", "mb3z"), (3, "pt9w leads to vr2d.", "pt9w")], "{walked:?}");
    assert_eq!(walked.citations[1].via, walked.citations[0].memory_id);
    let alone = c.ask(ask(None)).await.unwrap().into_inner();
    assert_eq!(alone.citations.iter().map(|c| c.hop).collect::<Vec<_>>(), [1], "{alone:?}");

    let around = |hops| gw::NeighborsRequest { entity: "MB3Z".into(), namespaces: vec!["graph".into()], hops, ..Default::default() };
    let one = c.neighbors(around(1)).await.unwrap().into_inner();
    let mut near: Vec<(&str, &str)> = one.edges.iter().map(|e| (e.subject.as_str(), e.object.as_str())).collect();
    near.sort();
    assert_eq!(near, [("aa11", "mb3z"), ("kx7q", "mb3z"), ("mb3z", "pt9w")], "{one:?}");
    let two = c.neighbors(around(2)).await.unwrap().into_inner();
    assert_eq!((two.edges.len(), two.edges[3].hop, two.edges[3].object.as_str()), (4, 2, "vr2d"), "{two:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_facts_and_hops_name_the_field_and_store_nothing() {
    let mut c = common::gateway_client(gateway(&["--no-auth"])).await;
    let mut meta = fact("a", "b", "c");
    meta.metadata.insert("fact.subject_key".into(), "x".into());
    let mut doc_meta = doc("d", "text");
    doc_meta.metadata.insert("fact.object".into(), "x".into());
    let until = gw::Fact { valid_from: "2025-01-01T00:00:00Z".into(), valid_until: "2024-01-01T00:00:00Z".into(), ..fact("a", "b", "c") };
    for (req, field) in [
        (remember("badgraph", vec![fact("ok", "is", "fine"), fact(" ", "b", "c")]), "`facts[1].subject`"),
        (remember("badgraph", vec![fact("a", "b\u{7}", "c")]), "`facts[0].relation`"),
        (remember("badgraph", vec![fact("a", "b", &"c".repeat(513))]), "`facts[0].object`"),
        (remember("badgraph", vec![meta]), "`facts[0].metadata`"),
        (remember("badgraph", vec![until]), "`facts[0].valid_until`"),
        (gw::RememberRequest { namespace: "badgraph".into(), documents: vec![doc_meta], ..Default::default() }, "`documents[0].metadata`"),
    ] {
        let status = c.remember(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{:?} does not name {field}", status.message());
    }
    assert_eq!(count("badgraph").await, 0);
    for hops in [0, 99] {
        let ask = gw::AskRequest { question: "q".into(), namespaces: vec!["badgraph".into()], max_hops: Some(hops), ..Default::default() };
        let status = c.ask(ask).await.unwrap_err();
        assert!(status.code() == Code::InvalidArgument && status.message().contains("`max_hops`"), "{status:?}");
    }
    let around = |entity: &str, hops| gw::NeighborsRequest { entity: entity.into(), namespaces: vec!["badgraph".into()], hops, ..Default::default() };
    for (req, field) in [(around(" ", 1), "`entity`"), (around("a", 99), "`hops`"), (gw::NeighborsRequest { namespaces: vec![], ..around("a", 1) }, "`namespaces`")] {
        let status = c.neighbors(req).await.unwrap_err();
        assert!(status.code() == Code::InvalidArgument && status.message().contains(field), "{field}: {status:?}");
    }
}
