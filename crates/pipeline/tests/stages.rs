#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Stages on loopback with the real SmolLM2: a 2-stage pipeline gives the whole model's greedy
//! tokens, survives a stage that dies mid-generation, and refuses bad requests without harm.

use commonware_cryptography::Signer;
use commonware_cryptography::ed25519::PrivateKey;
use commonware_runtime::{Listener, Network, Runner, Spawner, Supervisor, tokio};
use polylink_infer::{GenerateParams, Gguf, Pool, SamplingParams, Shard, Tokenizer, generate};
use polylink_pipeline::PipelineError;
use polylink_pipeline::engine::{EngineHandle, EngineLimits};
use polylink_pipeline::head::{HeadConfig, PipelineHead, StageSpec, StandbyList};
use polylink_pipeline::server::{Admission, serve};
use polylink_pipeline::transport::key_from_seed;
use polylink_pipeline::wire::{SampleSpec, WireLimits};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

const GREEDY: SampleSpec = SampleSpec { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0, step: 0 };

fn key(n: u8) -> PrivateKey {
    key_from_seed(&[n; 32]).unwrap()
}

struct Model {
    gguf: Gguf,
    tokenizer: Tokenizer,
}

fn model() -> Model {
    let path = polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap();
    let gguf = Gguf::open(&path).unwrap();
    let hp = polylink_infer::HParams::from_gguf(&gguf).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf, hp.vocab).unwrap();
    Model { gguf, tokenizer }
}

fn prompt(m: &Model) -> Vec<u32> {
    let template = polylink_infer::ChatTemplate::detect(&m.tokenizer, polylink_infer::Arch::Llama);
    m.tokenizer.encode(&template.render(None, "Name three colours of the rainbow."))
}

/// Greedy ids from the whole model in one process: the reference every pipeline must match.
fn whole_model_ids(m: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let shard = Shard::load(&m.gguf, 0..30, Arc::new(Pool::new(1))).unwrap();
    let params = GenerateParams {
        max_tokens: n,
        sampling: SamplingParams::default(),
        stop: Vec::new(),
        ignore_eos: true,
    };
    generate(&shard, &m.tokenizer, prompt, &params, &mut |_| {}).unwrap().ids
}

/// Starts a stage for `layers` on 127.0.0.1; returns its spec and the task handle.
async fn start_stage(
    context: &tokio::Context,
    m: &Model,
    seed: u8,
    layers: Range<usize>,
) -> (StageSpec, commonware_runtime::Handle<Result<(), PipelineError>>) {
    let shard = Arc::new(Shard::load(&m.gguf, layers.clone(), Arc::new(Pool::new(1))).unwrap());
    let engine = EngineHandle::start(context.child("engine"), shard, EngineLimits::default());
    let listener = context.bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = context.child("stage").spawn(move |context| {
        serve(context, key(seed), listener, engine, WireLimits::default(), Admission::Anyone)
    });
    (StageSpec { peer: key(seed).public_key(), addr, layers }, handle)
}

/// A head (key 9, default timeouts) over `stages`, failing over to `standby`.
fn new_head(
    context: &tokio::Context,
    stages: Vec<StageSpec>,
    standby: StandbyList,
) -> PipelineHead<tokio::Context> {
    PipelineHead::new(context.child("head"), key(9), stages, Box::new(standby), HeadConfig::default())
        .unwrap()
}

async fn run(
    head: &PipelineHead<tokio::Context>,
    prompt: &[u32],
    n: usize,
    mut on_step: impl FnMut(usize),
) -> Vec<u32> {
    let mut session = head.open();
    let mut ids = Vec::new();
    let mut next = head.step(&mut session, prompt, GREEDY).await.unwrap();
    ids.push(next);
    for i in 1..n {
        on_step(i);
        next = head.step(&mut session, &[next], GREEDY).await.unwrap();
        ids.push(next);
    }
    head.close(session).await;
    ids
}

#[test]
fn a_two_stage_pipeline_matches_the_whole_model_and_survives_a_dead_stage() {
    let m = model();
    let prompt = prompt(&m);
    let n = 24;
    let expected = whole_model_ids(&m, &prompt, n);
    tokio::Runner::default().start(|context| async move {
        let (first, _h1) = start_stage(&context, &m, 1, 0..15).await;
        let (second, h2) = start_stage(&context, &m, 2, 15..30).await;
        let (spare, _h3) = start_stage(&context, &m, 3, 15..30).await;

        let stages = vec![first.clone(), second.clone()];
        let head = new_head(&context, stages.clone(), StandbyList(vec![spare.clone()]));
        assert_eq!(run(&head, &prompt, n, |_| {}).await, expected, "pipeline differs from the whole model");

        // Kill the second stage after 10 tokens: the head must move to the spare and go on.
        let mut h2 = Some(h2);
        let ids = run(&head, &prompt, n, |i| {
            if i == 10
                && let Some(h) = h2.take()
            {
                h.abort();
            }
        })
        .await;
        assert_eq!(ids, expected, "fail-over changed the text");
        assert_eq!(head.stages().await[1].peer, spare.peer, "the spare now serves layers 15..30");
    });
}

#[test]
fn with_no_spare_a_whole_model_worker_stands_in_for_each_dead_stage() {
    let m = model();
    let prompt = prompt(&m);
    let n = 24;
    let expected = whole_model_ids(&m, &prompt, n);
    tokio::Runner::default().start(|context| async move {
        let (first, h1) = start_stage(&context, &m, 1, 0..15).await;
        let (second, h2) = start_stage(&context, &m, 2, 15..30).await;
        let (whole, _h) = start_stage(&context, &m, 3, 0..30).await;
        let head = new_head(&context, vec![first, second], StandbyList(vec![whole.clone()]));
        // Stage 2 dies after 6 tokens, stage 1 after 14: the whole-model worker runs layers
        // 15..30 and then 0..15 of the same session, and the tokens do not change.
        let (mut h1, mut h2) = (Some(h1), Some(h2));
        let ids = run(&head, &prompt, n, |i| {
            let dying = match i {
                6 => h2.take(),
                14 => h1.take(),
                _ => None,
            };
            if let Some(h) = dying {
                h.abort();
            }
        })
        .await;
        assert_eq!(ids, expected, "re-planning onto the whole-model worker changed the text");
        let stages = head.stages().await;
        assert!(stages.iter().all(|s| s.peer == whole.peer), "{stages:?}");
        assert_eq!((stages[0].layers.clone(), stages[1].layers.clone()), (0..15, 15..30));
        // A new session on the re-planned pipeline gives the same text again.
        assert_eq!(run(&head, &prompt, n, |_| {}).await, expected);
    });
}

#[test]
fn bad_requests_are_refused_and_the_stage_keeps_serving() {
    let m = model();
    let prompt = prompt(&m);
    tokio::Runner::default().start(|context| async move {
        let (whole, _h) = start_stage(&context, &m, 4, 0..30).await;

        // Garbage instead of a handshake: the connection is dropped, the server goes on.
        let (mut sink, _stream) = context.dial(whole.addr).await.unwrap();
        commonware_runtime::Sink::send(&mut sink, vec![0xff; 4096]).await.unwrap();

        // A head with the wrong expectation of the stage's key cannot connect.
        let impostor = StageSpec { peer: key(5).public_key(), ..whole.clone() };
        let head = new_head(&context, vec![impostor], StandbyList::default());
        let mut session = head.open();
        let err = head.step(&mut session, &prompt, GREEDY).await.unwrap_err();
        assert!(matches!(err, PipelineError::NoReplacement { .. }), "{err}");

        // A token id outside the vocabulary is refused with a reason; the session is unchanged.
        let head = new_head(&context, vec![whole.clone()], StandbyList::default());
        let mut session = head.open();
        let err = head.step(&mut session, &[u32::MAX], GREEDY).await.unwrap_err();
        assert!(err.to_string().contains("outside vocabulary"), "{err}");
        assert!(session.is_empty());

        // And the same stage still answers a proper request.
        let token = head.step(&mut session, &prompt, GREEDY).await.unwrap();
        assert_eq!(token, whole_model_ids(&m, &prompt, 1)[0]);

        // Layers the worker does not hold are refused, not half-run.
        let (front, _h) = start_stage(&context, &m, 6, 0..15).await;
        let overreach = StageSpec { layers: 0..30, ..front };
        let head = new_head(&context, vec![overreach], StandbyList::default());
        let mut session = head.open();
        let err = head.step(&mut session, &prompt, GREEDY).await.unwrap_err();
        assert!(err.to_string().contains("this stage holds 0..15"), "{err}");
    });
}
