//! Answer styles and attribution with the real default model: extractive answers are verbatim
//! spans at their offsets in both attend modes, the sentence budget ends a free answer, the
//! ablation scores every memory, and the bad requests of each are refused naming the field.

use super::common;

use common::{client, collect, shared};
use memgpt_proto::generator::v1 as pb;
use tonic::Code;

fn memories() -> Vec<pb::Memory> {
    vec![
        pb::Memory { id: "zoo#0".into(), text: "The city zoo opened a new penguin house in March.".into() },
        pb::Memory { id: "rocket#0".into(), text: "The Zephyr-9 rocket was launched from Kourou on 4 May 2031, after two delays.".into() },
        pb::Memory { id: "bread#0".into(), text: "Sourdough bread rises slowly because of wild yeast.".into() },
    ]
}

fn question(style: pb::AnswerStyle, mode: pb::AttendMode) -> pb::GenerateRequest {
    pb::GenerateRequest {
        messages: vec![pb::Message { role: "user".into(), content: "From where was the Zephyr-9 rocket launched?".into() }],
        memories: memories(),
        attend_mode: mode as i32,
        answer_style: style as i32,
        params: Some(pb::SamplingParams { max_new_tokens: Some(24), temperature: Some(0.0), ..Default::default() }),
        ..Default::default()
    }
}

#[tokio::test]
async fn extractive_answers_are_verbatim_spans_at_their_offsets() {
    let mut c = client(shared()).await;
    for mode in [pb::AttendMode::Concat, pb::AttendMode::Fused] {
        let (streamed, last) = collect(&mut c, question(pb::AnswerStyle::Extractive, mode)).await.unwrap();
        let quote = last.quote.clone().unwrap_or_else(|| panic!("{mode:?}: no quote in {last:?}"));
        let memory = memories().into_iter().find(|m| m.id == quote.memory_id).expect("the quote names a memory of the request");
        let span: String = memory.text.chars().skip(quote.start as usize).take((quote.end - quote.start) as usize).collect();
        assert!(!last.text.is_empty(), "{mode:?}: empty answer");
        assert_eq!(span, last.text, "{mode:?}: the offsets do not hold the answer");
        assert_eq!(streamed, last.text, "{mode:?}: the deltas are not the answer ({last:?})");
        assert_eq!(memories()[quote.memory_index as usize].id, quote.memory_id);
    }
}

#[tokio::test]
async fn shares_sum_to_one_over_the_memories_and_the_ablation_finds_the_source() {
    let mut c = client(shared()).await;
    let req = pb::GenerateRequest { attribution: pb::Attribution::Ablation as i32, ..question(pb::AnswerStyle::Free, pb::AttendMode::Concat) };
    let (_, last) = collect(&mut c, req).await.unwrap();
    let total: f32 = last.attention.iter().map(|a| a.share).sum();
    assert!((total - 1.0).abs() < 1e-3, "{:?}", last.attention);
    assert!(last.prompt_share > 0.0 && last.prompt_share < 1.0, "{}", last.prompt_share);
    let scores: Vec<f32> = last.attention.iter().map(|a| a.ablation.expect("every memory is scored")).collect();
    assert!(scores[1] > scores[0] && scores[1] > scores[2] && scores[1] > 0.5, "{:?} for {:?}", scores, last.text);
    // Without asking, no ablation is run.
    let (_, plain) = collect(&mut c, question(pb::AnswerStyle::Free, pb::AttendMode::Concat)).await.unwrap();
    assert!(plain.attention.iter().all(|a| a.ablation.is_none()));
    assert_eq!(plain.text, last.text, "the ablation changes the answer");
}

#[tokio::test]
async fn a_sentence_budget_ends_a_free_answer() {
    let mut c = client(shared()).await;
    let ask = |max_sentences: u32| pb::GenerateRequest {
        messages: vec![pb::Message { role: "user".into(), content: "Write a long essay about the history of Europe.".into() }],
        params: Some(pb::SamplingParams { max_new_tokens: Some(160), temperature: Some(0.0), max_sentences: Some(max_sentences), ..Default::default() }),
        ..Default::default()
    };
    let (_, long) = collect(&mut c, ask(0)).await.unwrap();
    let (streamed, short) = collect(&mut c, ask(1)).await.unwrap();
    assert_eq!(short.finish_reason, pb::FinishReason::Stop as i32, "{short:?}");
    assert_eq!(streamed, short.text);
    assert!(long.text.starts_with(&short.text) && long.text.len() > short.text.len(), "{:?} / {:?}", short.text, long.text);
    let ends = short.text.trim_end();
    assert!(ends.ends_with(['.', '!', '?']) || ends.ends_with('"'), "{:?}", short.text);
}

#[tokio::test]
async fn bad_styles_and_attributions_are_refused_naming_the_field() {
    let mut c = client(shared()).await;
    let free = question(pb::AnswerStyle::Free, pb::AttendMode::Concat);
    let cases = [
        ("unknown style", pb::GenerateRequest { answer_style: 9, ..free.clone() }, Code::InvalidArgument, "`answer_style`"),
        ("unknown attribution", pb::GenerateRequest { attribution: 9, ..free.clone() }, Code::InvalidArgument, "`attribution`"),
        (
            "extractive with no memories",
            pb::GenerateRequest { memories: Vec::new(), answer_style: pb::AnswerStyle::Extractive as i32, ..free.clone() },
            Code::FailedPrecondition,
            "`answer_style`",
        ),
        ("a sentence budget over 1000", pb::GenerateRequest { params: Some(pb::SamplingParams { max_sentences: Some(5000), ..Default::default() }), ..free }, Code::InvalidArgument, "`params.max_sentences`"),
    ];
    for (name, req, code, field) in cases {
        let status = collect(&mut c, req).await.expect_err(name);
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(status.message().contains(field), "{name}: {:?} does not name {field}", status.message());
    }
}
