#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Stages as separate `polylink stage` processes on 127.0.0.1: a 2-stage SmolLM2 pipeline gives
//! the whole model's sampled tokens (temperature 1, top-p 0.95, one seed), and when the second
//! stage's process is killed in the middle of a generation the head fails over to a standby
//! process with no token lost or changed: the session's sampler at the last stage re-draws the
//! replayed steps, so each step draws with the same (seed, step).

mod pipeline_common;

use commonware_runtime::{Runner, Supervisor};
use pipeline_common::{model_path, solo_answers_sampled, start_stage};
use polylink_infer::SamplingParams;
use polylink_node::launch::StageProcess;
use polylink_pipeline::head::{HeadConfig, PipelineHead, StandbyList};
use polylink_pipeline::transport::key_from_seed;
use polylink_pipeline::wire::SampleSpec;
use std::time::Instant;

#[test]
fn killing_a_stage_process_mid_answer_changes_nothing_in_the_answer() {
    let path = model_path();
    let n = 32;
    let sampling = SamplingParams { temperature: 1.0, top_k: 0, top_p: 0.95, seed: 5 };
    let (prompt, expected) =
        solo_answers_sampled(&path, &["Why do leaves change colour in autumn?"], n, sampling).remove(0);

    let first = start_stage(&path, 11, 0..15, None);
    let mut second = Some(start_stage(&path, 12, 15..30, None));
    let spare = start_stage(&path, 13, 15..30, None);
    let stages = vec![first.spec.clone(), second.as_ref().unwrap().spec.clone()];
    let standby = StandbyList(vec![spare.spec.clone()]);

    commonware_runtime::tokio::Runner::default().start(|context| async move {
        let spec = SampleSpec {
            temperature: sampling.temperature,
            top_k: 0,
            top_p: sampling.top_p,
            seed: sampling.seed,
        };
        let head = PipelineHead::new(
            context.child("head"),
            key_from_seed(&[99; 32]).unwrap(),
            stages,
            Box::new(standby),
            HeadConfig::default(),
        )
        .unwrap();
        let mut session = head.open();
        let mut ids = vec![head.step(&mut session, &prompt, spec).await.unwrap()];
        let mut recovery_ms = None;
        while ids.len() < n {
            let killed = ids.len() == 12 && second.take().map(StageProcess::kill).is_some();
            let start = Instant::now();
            let next = head.step(&mut session, &[*ids.last().unwrap()], spec).await.unwrap();
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
