#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Stages as separate `polylink stage` processes on 127.0.0.1: a 2-stage SmolLM2 pipeline gives
//! the whole model's greedy tokens, and when the second stage's process is killed in the middle
//! of a generation the head fails over to a standby process with no token lost or changed.

use commonware_runtime::{Runner, Supervisor};
use polylink_infer::{GenerateParams, Gguf, HParams, Pool, SamplingParams, Shard, Tokenizer, generate};
use polylink_node::launch::{StageLaunch, StageProcess};
use polylink_pipeline::head::{HeadConfig, PipelineHead, StandbyList};
use polylink_pipeline::transport::key_from_seed;
use polylink_pipeline::wire::SampleSpec;
use std::sync::Arc;
use std::time::Instant;

fn start_stage(model: &std::path::Path, seed: u8, layers: std::ops::Range<usize>) -> StageProcess {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_polylink"));
    StageProcess::start(&StageLaunch {
        exe,
        model,
        layers: Some(layers),
        seed: [seed; 32],
        threads: 1,
        core: None,
    })
    .unwrap()
}

#[test]
fn killing_a_stage_process_mid_answer_changes_nothing_in_the_answer() {
    let path = polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap();
    let gguf = Gguf::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf, HParams::from_gguf(&gguf).unwrap().vocab).unwrap();
    let template = polylink_infer::ChatTemplate::detect(&tokenizer, polylink_infer::Arch::Llama);
    let prompt = tokenizer.encode(&template.render(None, "Why do leaves change colour in autumn?"));
    let n = 32;
    let whole = Shard::load(&gguf, 0..30, Arc::new(Pool::new(1))).unwrap();
    let params = GenerateParams {
        max_tokens: n,
        sampling: SamplingParams::default(),
        stop: Vec::new(),
        ignore_eos: true,
    };
    let expected = generate(&whole, &tokenizer, &prompt, &params, &mut |_| {}).unwrap().ids;
    drop(whole);

    let first = start_stage(&path, 11, 0..15);
    let mut second = Some(start_stage(&path, 12, 15..30));
    let spare = start_stage(&path, 13, 15..30);
    let stages = vec![first.spec.clone(), second.as_ref().unwrap().spec.clone()];
    let standby = StandbyList(vec![spare.spec.clone()]);

    commonware_runtime::tokio::Runner::default().start(|context| async move {
        let greedy = SampleSpec { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 };
        let head = PipelineHead::new(
            context.child("head"),
            key_from_seed(&[99; 32]).unwrap(),
            stages,
            Box::new(standby),
            HeadConfig::default(),
        )
        .unwrap();
        let mut session = head.open();
        let mut ids = vec![head.step(&mut session, &prompt, greedy).await.unwrap()];
        let mut recovery_ms = None;
        while ids.len() < n {
            let killed = ids.len() == 12 && second.take().map(StageProcess::kill).is_some();
            let start = Instant::now();
            let next = head.step(&mut session, &[*ids.last().unwrap()], greedy).await.unwrap();
            if killed {
                recovery_ms = Some(start.elapsed().as_millis());
            }
            ids.push(next);
        }
        head.close(session).await;
        assert_eq!(ids, expected, "the answer changed across the fail-over");
        assert_eq!(head.stages().await[1].peer, spare.spec.peer);
        eprintln!("fail-over step took {} ms", recovery_ms.unwrap());
    });
}
