//! One Ask yields one trace whose spans cover all three services: the gateway's stages and
//! the memory and generator services' calls, linked by `traceparent` metadata (an in-memory
//! exporter collects the spans of the three in-process services).

use super::common;

use std::time::{Duration, Instant};

use memgpt_proto::gateway::v1 as gw;
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_ask_is_one_trace_across_the_three_services() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let config = memgpt_telemetry::TelemetryConfig { service_name: "test".into(), filter: "info".into(), format: Default::default() };
    let _telemetry = memgpt_telemetry::init_with(&config, provider.clone()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let memory = common::memory(dir.path());
    let generator = common::generator();
    let gateway = common::gateway(&[memory.addr], &[generator.addr], &["--no-auth"]);
    let mut client = common::gateway_client(gateway.addr).await;
    let doc = gw::Document { id: "bridge".into(), text: "The Glimmerfjord Bridge was designed by Marta Solberg.".into(), metadata: Default::default(), ..Default::default() };
    client.remember(gw::RememberRequest { namespace: "kb".into(), documents: vec![doc], warm: false, ..Default::default() }).await.unwrap();
    let ask = gw::AskRequest {
        question: "Who designed the Glimmerfjord Bridge?".into(),
        namespaces: vec!["kb".into()],
        params: Some(memgpt_proto::generator::v1::SamplingParams { max_new_tokens: Some(8), ..Default::default() }),
        ..Default::default()
    };
    let answer = client.ask(ask).await.unwrap().into_inner();

    let rpc = |s: &opentelemetry_sdk::trace::SpanData| {
        s.attributes.iter().find(|kv| kv.key.as_str() == "rpc").map(|kv| match &kv.value {
            Value::String(v) => v.to_string(),
            other => other.to_string(),
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = provider.force_flush();
        let spans: Vec<_> = exporter.get_finished_spans().unwrap().into_iter().filter(|s| s.span_context.trace_id().to_string() == answer.trace_id).collect();
        let names: Vec<String> = spans.iter().map(|s| s.name.to_string()).collect();
        let rpcs: Vec<String> = spans.iter().filter_map(rpc).collect();
        let complete = ["ask", "encode", "retrieve", "generate", "output"].iter().all(|n| names.iter().any(|m| m == n))
            && rpcs.iter().any(|r| r == "/memgpt.gateway.v1.Gateway/Ask")
            && rpcs.iter().any(|r| r == "/memgpt.memory.v1.Memory/Search")
            && rpcs.iter().any(|r| r == "/memgpt.generator.v1.Generator/Generate");
        if complete {
            break;
        }
        assert!(Instant::now() < deadline, "trace {} is missing spans: names {names:?}, rpcs {rpcs:?}", answer.trace_id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
