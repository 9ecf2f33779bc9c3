#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Concurrent sessions through a 2-stage pipeline of `polylink stage` processes on 127.0.0.1:
//! their decode steps meet at the stages and run there as batches, and every session's greedy
//! answer is still exactly its answer alone on the whole model, also when the second stage's
//! process is killed while all of them are generating.

mod pipeline_common;

use commonware_runtime::{Runner, Supervisor};
use futures::future::join_all;
use pipeline_common::{model_path, solo_answers, start_stage};
use polylink_pipeline::head::{HeadConfig, PipelineHead, StandbyList};
use polylink_pipeline::transport::key_from_seed;
use polylink_pipeline::wire::SampleSpec;
use std::sync::atomic::{AtomicUsize, Ordering};

const GREEDY: SampleSpec = SampleSpec { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0, step: 0 };
const QUESTIONS: [&str; 6] = [
    "Why do leaves change colour in autumn?",
    "Name three colours of the rainbow.",
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "How many legs does a spider have?",
    "Explain what a pipeline is in one sentence.",
];
const TOKENS: usize = 24;

/// Runs every prompt as its own session, all at once; `after_step` sees each finished step.
fn concurrent_answers(
    stages: Vec<polylink_pipeline::head::StageSpec>,
    standby: StandbyList,
    prompts: Vec<Vec<u32>>,
    after_step: impl Fn(usize) + Sync,
) -> (Vec<Vec<u32>>, Vec<polylink_pipeline::head::StageSpec>) {
    commonware_runtime::tokio::Runner::default().start(|context| async move {
        let head = PipelineHead::new(
            context.child("head"),
            key_from_seed(&[77; 32]).unwrap(),
            stages,
            Box::new(standby),
            HeadConfig::default(),
        )
        .unwrap();
        let steps = AtomicUsize::new(0);
        let sessions = prompts.iter().map(|prompt| async {
            let mut session = head.open();
            let mut ids = vec![head.step(&mut session, prompt, GREEDY).await.unwrap()];
            while ids.len() < TOKENS {
                after_step(steps.fetch_add(1, Ordering::Relaxed));
                ids.push(head.step(&mut session, &[*ids.last().unwrap()], GREEDY).await.unwrap());
            }
            head.close(session).await;
            ids
        });
        let answers = join_all(sessions).await;
        (answers, head.stages().await)
    })
}

#[test]
fn concurrent_sessions_get_their_solo_answers() {
    let path = model_path();
    let expected = solo_answers(&path, &QUESTIONS, TOKENS);
    let first = start_stage(&path, 21, 0..15, None);
    let second = start_stage(&path, 22, 15..30, None);
    let prompts = expected.iter().map(|(p, _)| p.clone()).collect();
    let stages = vec![first.spec.clone(), second.spec.clone()];
    let (answers, _) = concurrent_answers(stages, StandbyList::default(), prompts, |_| {});
    for (i, (answer, (_, solo))) in answers.iter().zip(&expected).enumerate() {
        assert_eq!(answer, solo, "session {i} ({:?}) differs from its solo answer", QUESTIONS[i]);
    }
}

#[test]
fn killing_a_stage_while_sessions_run_concurrently_changes_no_answer() {
    let path = model_path();
    let expected = solo_answers(&path, &QUESTIONS, TOKENS);
    let first = start_stage(&path, 31, 0..15, None);
    let second = std::sync::Mutex::new(Some(start_stage(&path, 32, 15..30, None)));
    let spare = start_stage(&path, 33, 15..30, None);
    let prompts = expected.iter().map(|(p, _)| p.clone()).collect();
    let stages = vec![first.spec.clone(), second.lock().unwrap().as_ref().unwrap().spec.clone()];
    let standby = StandbyList(vec![spare.spec.clone()]);
    // Kill the second stage once the sessions have made 40 decode steps between them.
    let kill = |step: usize| {
        if step == 40
            && let Some(stage) = second.lock().unwrap().take()
        {
            stage.kill();
        }
    };
    let (answers, now) = concurrent_answers(stages, standby, prompts, kill);
    assert!(second.lock().unwrap().is_none(), "the stage was never killed");
    assert_eq!(now[1].peer, spare.spec.peer, "the spare now serves layers 15..30");
    for (i, (answer, (_, solo))) in answers.iter().zip(&expected).enumerate() {
        assert_eq!(answer, solo, "session {i} changed across the fail-over");
    }
}
