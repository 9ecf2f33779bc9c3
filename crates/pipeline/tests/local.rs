#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The local backend runs concurrent sessions on the one batching engine and decodes them with
//! the one decode loop: each sampled answer is what `generate` gives for it alone.

use polylink_infer::{GenerateParams, Model, SamplingParams, generate};
use polylink_pipeline::{LocalBackend, LocalOptions};
use polylink_protocol::{FinishReason, GenerationParams, InferenceBackend, Prompt, TokenEvent};

#[test]
fn concurrent_sampled_answers_equal_generate_alone() {
    let path = polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap();
    let options =
        LocalOptions { threads: 1, sessions_max: 3, model_id: Some("m".into()), ..Default::default() };
    let backend = LocalBackend::load(&path, &options).unwrap();
    let model = Model::open(&path, None, 1).unwrap();
    let questions = ["Name three colours.", "Why is the sky blue?", "Count to five.", "Say hello."];
    let params =
        |seed: u64| GenerationParams { max_tokens: 20, temperature: 0.8, top_p: 0.95, seed, task: None };
    // Four at once with room for three: the fourth waits, and the others batch their steps.
    let mut streams = Vec::new();
    for (i, q) in questions.iter().enumerate() {
        let ids = backend
            .tokenize("m", &Prompt::Chat(polylink_protocol::ChatMessage::first_turn(None, q)))
            .unwrap();
        streams.push((ids.clone(), backend.generate("m", ids, params(i as u64)).unwrap()));
    }
    for (i, (ids, mut stream)) in streams.into_iter().enumerate() {
        let (mut text, mut end) = (String::new(), None);
        while let Some(event) = futures::executor::block_on(stream.next()) {
            match event {
                TokenEvent::Token { text: t, .. } => text.push_str(&t),
                TokenEvent::Done(reason) => end = Some(reason),
                other => panic!("question {i}: {other:?}"),
            }
        }
        let p = params(i as u64);
        let sampling = SamplingParams { temperature: p.temperature, top_k: 0, top_p: p.top_p, seed: p.seed };
        let alone =
            GenerateParams { max_tokens: p.max_tokens, sampling, stop: Vec::new(), ignore_eos: false };
        let want = generate(&model.shard, &model.tokenizer, &ids, &alone, &mut |_| {}).unwrap();
        assert_eq!(text, want.text, "question {i}");
        let reason = if want.finish == polylink_infer::Finish::Eos {
            FinishReason::Stop
        } else {
            FinishReason::Length
        };
        assert_eq!(end, Some(reason), "question {i}");
    }
    assert!(backend.tokens_sampled() > 0);
}
