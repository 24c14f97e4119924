//! Bad input: every case gets INVALID_ARGUMENT naming the field (or the gRPC size error), and
//! the server keeps serving.

use super::common;

use common::{client, collect, greedy, shared};
use memgpt_proto::generator::v1 as pb;
use tonic::Code;

fn with_params(f: impl FnOnce(&mut pb::SamplingParams)) -> pb::GenerateRequest {
    let mut req = greedy("Hello there", 4);
    f(req.params.as_mut().unwrap());
    req
}

fn memory(id: &str, text: &str) -> pb::Memory {
    pb::Memory { id: id.into(), text: text.into() }
}

fn message(role: &str, content: &str) -> pb::Message {
    pb::Message { role: role.into(), content: content.into() }
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let mut c = client(shared()).await;
    let long_prompt = "word ".repeat(9000);
    let near_context = "word ".repeat(7000);
    let cases: Vec<(&str, pb::GenerateRequest, &str)> = vec![
        ("nothing", pb::GenerateRequest::default(), "`messages`"),
        ("both", pb::GenerateRequest { messages: vec![message("user", "hi")], ..greedy("hi", 4) }, "`prompt`"),
        ("bad role", pb::GenerateRequest { messages: vec![message("robot", "hi")], ..Default::default() }, "`messages[0].role`"),
        ("empty messages", pb::GenerateRequest { messages: vec![message("user", " ")], ..Default::default() }, "`messages`"),
        ("too many messages", pb::GenerateRequest { messages: vec![message("user", "hi"); 257], ..Default::default() }, "`messages`"),
        ("max_new 0", with_params(|p| p.max_new_tokens = Some(0)), "`params.max_new_tokens`"),
        ("max_new huge", with_params(|p| p.max_new_tokens = Some(100_000)), "`params.max_new_tokens`"),
        ("temperature < 0", with_params(|p| p.temperature = Some(-0.5)), "`params.temperature`"),
        ("temperature NaN", with_params(|p| p.temperature = Some(f32::NAN)), "`params.temperature`"),
        ("top_p 0", with_params(|p| p.top_p = Some(0.0)), "`params.top_p`"),
        ("top_p > 1", with_params(|p| p.top_p = Some(1.5)), "`params.top_p`"),
        ("top_k < 0", with_params(|p| p.top_k = Some(u32::MAX)), "`params.top_k`"),
        ("penalty 0", with_params(|p| p.repetition_penalty = Some(0.0)), "`params.repetition_penalty`"),
        ("empty stop", with_params(|p| p.stop = vec![String::new()]), "`params.stop[0]`"),
        ("too many stops", with_params(|p| p.stop = vec!["x".into(); 9]), "`params.stop`"),
        ("too many memories", pb::GenerateRequest { memories: vec![memory("m", "text"); 33], ..greedy("hi", 4) }, "`memories`"),
        ("memory too long", pb::GenerateRequest { memories: vec![memory("m", &"a".repeat(9000))], ..greedy("hi", 4) }, "`memories[0].text`"),
        ("memory without id", pb::GenerateRequest { memories: vec![memory("", "text")], ..greedy("hi", 4) }, "`memories[0].id`"),
        ("empty memory", pb::GenerateRequest { memories: vec![memory("a", "text"), memory("b", "")], ..greedy("hi", 4) }, "`memories[1].text`"),
        ("unknown attend mode", pb::GenerateRequest { attend_mode: 7, ..greedy("hi", 4) }, "`attend_mode`"),
        ("recompute ratio in concat mode", pb::GenerateRequest { attend_mode: pb::AttendMode::Concat as i32, recompute_ratio: Some(0.5), ..greedy("hi", 4) }, "`recompute_ratio`"),
        ("recompute ratio above 1", pb::GenerateRequest { attend_mode: pb::AttendMode::Fused as i32, recompute_ratio: Some(1.5), ..greedy("hi", 4) }, "`recompute_ratio`"),
        ("recompute rule in concat mode", pb::GenerateRequest { attend_mode: pb::AttendMode::Concat as i32, recompute_rule: pb::RecomputeRule::Query as i32, ..greedy("hi", 4) }, "`recompute_rule`"),
        ("unknown recompute rule", pb::GenerateRequest { attend_mode: pb::AttendMode::Fused as i32, recompute_rule: 9, ..greedy("hi", 4) }, "`recompute_rule`"),
        ("recompute ratio NaN", pb::GenerateRequest { attend_mode: pb::AttendMode::Fused as i32, recompute_ratio: Some(f32::NAN), ..greedy("hi", 4) }, "`recompute_ratio`"),
        ("recompute memories in concat mode", pb::GenerateRequest { attend_mode: pb::AttendMode::Concat as i32, memories: vec![memory("a", "A fact.")], recompute_memories: vec![0], ..greedy("hi", 4) }, "`recompute_memories`"),
        ("recompute memory out of range", pb::GenerateRequest { attend_mode: pb::AttendMode::Fused as i32, memories: vec![memory("a", "A fact.")], recompute_memories: vec![1], ..greedy("hi", 4) }, "`recompute_memories`"),
        ("memory temperature in concat mode", pb::GenerateRequest { attend_mode: pb::AttendMode::Concat as i32, memory_temperature: Some(1.5), ..greedy("hi", 4) }, "`memory_temperature`"),
        ("memory temperature NaN", pb::GenerateRequest { attend_mode: pb::AttendMode::Fused as i32, memory_temperature: Some(f32::NAN), ..greedy("hi", 4) }, "`memory_temperature`"),
        ("memory scale 0", pb::GenerateRequest { attend_mode: pb::AttendMode::Fused as i32, memory_scale: Some(0.0), ..greedy("hi", 4) }, "`memory_scale`"),
        ("memory scale above 4", pb::GenerateRequest { attend_mode: pb::AttendMode::Fused as i32, memory_scale: Some(8.0), ..greedy("hi", 4) }, "`memory_scale`"),
        ("prompt too long for the context", greedy(&long_prompt, 4), "`prompt`"),
        ("prompt plus max_new beyond the context", greedy(&near_context, 2048), "`prompt`"),
        ("prompt over the byte limit", greedy(&"x".repeat(300 * 1024), 4), "`prompt`"),
    ];
    for (name, req, field) in cases {
        let status = collect(&mut c, req).await.expect_err(name);
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        assert!(status.message().contains(field), "{name}: {:?} does not name {field}", status.message());
    }
    let status = collect(&mut c, pb::GenerateRequest { attend_mode: 7, ..greedy("hi", 4) }).await.unwrap_err();
    assert!(status.code() == Code::InvalidArgument && status.message().contains("`attend_mode`"), "{status:?}");
    let warm_cases = [
        ("no memories", vec![], "`memories`"),
        ("an empty text", vec![memory("a", "fine"), memory("b", " ")], "`memories[1].text`"),
        ("an empty id", vec![memory("", "text")], "`memories[0].id`"),
        ("an oversized text", vec![memory("a", &"z".repeat(9 * 1024))], "`memories[0].text`"),
    ];
    for (name, memories, field) in warm_cases {
        let status = c.warm_memories(pb::WarmMemoriesRequest { memories, system: String::new() }).await.expect_err(name);
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        assert!(status.message().contains(field), "{name}: {:?} does not name {field}", status.message());
    }
    // Over the 4 MiB message limit: gRPC's own size error.
    let status = collect(&mut c, greedy(&"y".repeat(5 << 20), 4)).await.unwrap_err();
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");
    // Still serving.
    let (_, last) = collect(&mut c, greedy("Say hello.", 4)).await.unwrap();
    assert!(last.usage.unwrap().completion_tokens >= 1);
}
