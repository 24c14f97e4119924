//! Tenant isolation, randomised: several API keys and namespaces; every Search, Ask (with and
//! without hops over facts) and Neighbors walk by every key over random namespace sets either
//! returns only citations and edges from namespaces the key may read, or PERMISSION_DENIED
//! with nothing returned. The facts cross namespaces: from any namespace's `door` an edge goes
//! on in every namespace, so a hop that left the request's namespaces would show.

use integration_tests::{Cluster, Options};
use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::generator::v1 as gen;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const KEYS: &str = r#"[
  {"key": "operator-key-00000000", "namespaces": ["*"]},
  {"key": "alpha-key-0000000000", "namespaces": ["alpha"]},
  {"key": "beta-key-00000000000", "namespaces": ["beta", "shared-*"]},
  {"key": "gamma-key-0000000000", "namespaces": ["gamma-*"]}
]"#;

fn allowed(key: &str, ns: &str) -> bool {
    match key {
        "operator-key-00000000" => true,
        "alpha-key-0000000000" => ns == "alpha",
        "beta-key-00000000000" => ns == "beta" || ns.starts_with("shared-"),
        _ => ns.starts_with("gamma-"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_never_sees_a_namespace_it_may_not_read() {
    let cluster = Cluster::start(Options { generators: 1, api_keys: Some(KEYS.into()), ..Default::default() }).await.unwrap();
    let namespaces = ["alpha", "beta", "shared-1", "gamma-x", "gamma-y", "delta"];
    let mut operator = cluster.client(Some("operator-key-00000000")).await.unwrap();
    for ns in namespaces {
        // The same texts in every namespace: only the filter on namespaces keeps them apart.
        let documents = super::docs("secret", 10).into_iter().map(|mut d| {
            d.metadata.insert("owner".into(), ns.into());
            d
        });
        let fact = |s: &str, o: String| gw::Fact { subject: s.into(), relation: "leads to".into(), object: o, ..Default::default() };
        let mut facts = vec![fact("gate", format!("door-{ns}"))];
        facts.extend(namespaces.iter().map(|x| fact(&format!("door-{x}"), format!("vault-{ns}"))));
        operator.remember(gw::RememberRequest { namespace: ns.into(), documents: documents.collect(), facts, warm: false, ..Default::default() }).await.unwrap();
    }
    let keys = ["operator-key-00000000", "alpha-key-0000000000", "beta-key-00000000000", "gamma-key-0000000000"];
    let mut clients = Vec::new();
    for k in keys {
        clients.push((k, cluster.client(Some(k)).await.unwrap()));
    }
    let seed: u64 = std::env::var("MEMGPT_IT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::thread_rng().gen());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rounds = if super::full() { 400 } else { 80 };
    // The hops do walk, across namespaces but only the request's: gate -> door-x (x alpha or
    // beta) -> vault-alpha and vault-beta.
    let two = vec!["alpha".to_string(), "beta".to_string()];
    let params = Some(gen::SamplingParams { max_new_tokens: Some(4), temperature: Some(0.0), ..Default::default() });
    let req = gw::AskRequest { question: "Where does gate lead?".into(), namespaces: two.clone(), top_k: Some(1), max_hops: Some(3), params, ..Default::default() };
    let cites = operator.ask(req).await.unwrap().into_inner().citations;
    let mut second: Vec<&str> = cites.iter().filter(|c| c.hop == 2).map(|c| c.namespace.as_str()).collect();
    second.sort();
    assert_eq!(second, ["alpha", "beta"], "{cites:?}");
    assert!(cites.iter().all(|c| two.contains(&c.namespace) && c.hop <= 2), "{cites:?}");
    let (mut denied, mut served) = (0, 0);
    for round in 0..rounds {
        let (key, client) = clients.choose_mut(&mut rng).unwrap();
        let n = rng.gen_range(1..=3);
        let picked: Vec<String> = namespaces.choose_multiple(&mut rng, n).map(|s| s.to_string()).collect();
        let may = picked.iter().all(|ns| allowed(key, ns));
        let citations = if round % 5 == 0 {
            let hops = round % 2 == 0;
            let req = gw::AskRequest {
                question: if hops { "Where does gate lead?".into() } else { "What is the value of record 3 of secret?".into() },
                namespaces: picked.clone(),
                top_k: Some(5),
                params: Some(gen::SamplingParams { max_new_tokens: Some(4), temperature: Some(0.0), ..Default::default() }),
                max_hops: hops.then(|| rng.gen_range(2..=4)),
                ..Default::default()
            };
            client.ask(req).await.map(|r| r.into_inner().citations.into_iter().map(|c| c.namespace).collect::<Vec<_>>())
        } else if round % 5 == 1 {
            let req = gw::NeighborsRequest { entity: "gate".into(), namespaces: picked.clone(), hops: rng.gen_range(1..=3), ..Default::default() };
            client.neighbors(req).await.map(|r| r.into_inner().edges.into_iter().map(|e| e.namespace).collect::<Vec<_>>())
        } else {
            let req = gw::SearchRequest { question: "record 3 of secret".into(), namespaces: picked.clone(), top_k: Some(20), ..Default::default() };
            client.search(req).await.map(|r| r.into_inner().citations.into_iter().map(|c| c.namespace).collect::<Vec<_>>())
        };
        match citations {
            Ok(cites) => {
                assert!(may, "seed {seed}: {key} read {picked:?}");
                assert!(!cites.is_empty());
                for ns in &cites {
                    assert!(picked.contains(ns) && allowed(key, ns), "seed {seed}: {key} got a citation or edge from {ns}");
                }
                served += 1;
            }
            Err(s) => {
                assert!(!may, "seed {seed}: {key} was refused {picked:?}: {s:?}");
                assert_eq!(s.code(), tonic::Code::PermissionDenied, "seed {seed}");
                denied += 1;
            }
        }
    }
    assert!(denied > 0 && served > 0, "seed {seed}: {denied} denied, {served} served");
}
