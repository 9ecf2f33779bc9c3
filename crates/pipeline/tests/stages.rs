#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Stages on loopback with the real SmolLM2: a 2-stage pipeline gives the whole model's greedy
//! and sampled tokens, survives a stage that dies mid-generation, refuses bad requests without
//! harm, and a backend over several deployments sends requests where they are served fast.

use commonware_cryptography::Signer;
use commonware_cryptography::ed25519::PrivateKey;
use commonware_runtime::{Listener, Network, Runner, Spawner, Supervisor, tokio};
use polylink_infer::{GenerateParams, Gguf, Pool, SamplingParams, Shard, Tokenizer, generate};
use polylink_pipeline::engine::{EngineHandle, EngineLimits};
use polylink_pipeline::head::{HeadConfig, PipelineHead, StageSpec, StandbyList};
use polylink_pipeline::server::{Admission, KeySet, serve};
use polylink_pipeline::transport::{
    STAGE_PROTOCOL_VERSION, account_key, dial, key_from_seed, peer_bytes, preamble,
};
use polylink_pipeline::wire::{Request, Response, SampleSpec, WireLimits};
use polylink_pipeline::{Deployment, PipelineBackend, PipelineError};
use polylink_protocol::{GenerationParams, InferenceBackend, TokenEvent};
use polylink_types::{Hash32, PublicKey};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

const GREEDY: SampleSpec = SampleSpec { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 };

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

/// Ids from the whole model in one process: the reference every pipeline must match.
fn whole_model_ids(m: &Model, prompt: &[u32], n: usize, sample: SampleSpec) -> Vec<u32> {
    let shard = Shard::load(&m.gguf, 0..30, Arc::new(Pool::new(1))).unwrap();
    let sampling = SamplingParams {
        temperature: sample.temperature,
        top_k: sample.top_k as usize,
        top_p: sample.top_p,
        seed: sample.seed,
    };
    let params = GenerateParams { max_tokens: n, sampling, stop: Vec::new(), ignore_eos: true };
    generate(&shard, &m.tokenizer, prompt, &params, &mut |_| {}).unwrap().ids
}

/// Starts a stage for `layers` on 127.0.0.1; returns its spec and the task handle.
async fn start_stage(
    context: &tokio::Context,
    m: &Model,
    seed: u8,
    layers: Range<usize>,
) -> (StageSpec, commonware_runtime::Handle<Result<(), PipelineError>>) {
    start_stage_admitting(context, m, seed, layers, Admission::Anyone).await
}

/// [`start_stage`], serving inference only to the heads `admission` admits.
async fn start_stage_admitting(
    context: &tokio::Context,
    m: &Model,
    seed: u8,
    layers: Range<usize>,
    admission: Admission,
) -> (StageSpec, commonware_runtime::Handle<Result<(), PipelineError>>) {
    let shard = Arc::new(Shard::load(&m.gguf, layers.clone(), Arc::new(Pool::new(1))).unwrap());
    let signer = Some(account_key(&key(seed)));
    let engine = EngineHandle::start(context.child("engine"), shard, EngineLimits::default(), signer);
    let listener = context.bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = context
        .child("stage")
        .spawn(move |context| serve(context, key(seed), listener, engine, WireLimits::default(), admission));
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
    sample: SampleSpec,
    on_step: impl FnMut(usize),
) -> Vec<u32> {
    run_for(head, Hash32::ZERO, prompt, n, sample, on_step).await.0
}

/// [`run`] for on-chain `task`; also returns the receipts the head kept when it closed.
async fn run_for(
    head: &PipelineHead<tokio::Context>,
    task: Hash32,
    prompt: &[u32],
    n: usize,
    sample: SampleSpec,
    mut on_step: impl FnMut(usize),
) -> (Vec<u32>, Vec<polylink_types::SignedReceipt>) {
    let mut session = head.open_for(task);
    let mut ids = Vec::new();
    let mut next = head.step(&mut session, prompt, sample).await.unwrap();
    ids.push(next);
    for i in 1..n {
        on_step(i);
        next = head.step(&mut session, &[next], sample).await.unwrap();
        ids.push(next);
    }
    let receipts = head.close(session).await;
    (ids, receipts)
}

/// A 2-stage pipeline gives the whole model's ids for `sample`, before and after its second
/// stage dies 10 tokens into an answer.
fn pipeline_matches_the_whole_model_through_a_fail_over(sample: SampleSpec) {
    let m = model();
    let prompt = prompt(&m);
    let n = 24;
    let expected = whole_model_ids(&m, &prompt, n, sample);
    tokio::Runner::default().start(|context| async move {
        let (first, _h1) = start_stage(&context, &m, 1, 0..15).await;
        let (second, h2) = start_stage(&context, &m, 2, 15..30).await;
        let (spare, _h3) = start_stage(&context, &m, 3, 15..30).await;

        let stages = vec![first.clone(), second.clone()];
        let head = new_head(&context, stages.clone(), StandbyList(vec![spare.clone()]));
        let ids = run(&head, &prompt, n, sample, |_| {}).await;
        assert_eq!(ids, expected, "pipeline differs from the whole model");

        // Kill the second stage after 10 tokens: the head must move to the spare and go on.
        let mut h2 = Some(h2);
        let ids = run(&head, &prompt, n, sample, |i| {
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
fn a_two_stage_pipeline_matches_the_whole_model_and_survives_a_dead_stage() {
    pipeline_matches_the_whole_model_through_a_fail_over(GREEDY);
}

/// The last stage keeps one sampler per session, drawn once per token in order (as `generate`
/// does), and a replay onto the spare draws the replayed tokens again: a sampled answer is the
/// whole model's, token for token, through a fail-over.
#[test]
fn a_sampled_answer_is_the_whole_models_through_a_fail_over() {
    let sample = SampleSpec { temperature: 0.9, top_k: 0, top_p: 0.95, seed: 7 };
    pipeline_matches_the_whole_model_through_a_fail_over(sample);
}

#[test]
fn with_no_spare_a_whole_model_worker_stands_in_for_each_dead_stage() {
    let m = model();
    let prompt = prompt(&m);
    let n = 24;
    let expected = whole_model_ids(&m, &prompt, n, GREEDY);
    tokio::Runner::default().start(|context| async move {
        let (first, h1) = start_stage(&context, &m, 1, 0..15).await;
        let (second, h2) = start_stage(&context, &m, 2, 15..30).await;
        let (whole, _h) = start_stage(&context, &m, 3, 0..30).await;
        let head = new_head(&context, vec![first, second], StandbyList(vec![whole.clone()]));
        // Stage 2 dies after 6 tokens, stage 1 after 14: the whole-model worker runs layers
        // 15..30 and then 0..15 of the same session, and the tokens do not change.
        let (mut h1, mut h2) = (Some(h1), Some(h2));
        let ids = run(&head, &prompt, n, GREEDY, |i| {
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
        assert_eq!(run(&head, &prompt, n, GREEDY, |_| {}).await, expected);
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
        assert_eq!(token, whole_model_ids(&m, &prompt, 1, GREEDY)[0]);

        // Layers the worker does not hold are refused, not half-run.
        let (front, _h) = start_stage(&context, &m, 6, 0..15).await;
        let overreach = StageSpec { layers: 0..30, ..front };
        let head = new_head(&context, vec![overreach], StandbyList::default());
        let mut session = head.open();
        let err = head.step(&mut session, &prompt, GREEDY).await.unwrap_err();
        assert!(err.to_string().contains("this stage holds 0..15"), "{err}");
    });
}

/// A stage that admits a set of heads (a worker's registered gateways) runs inference for them
/// only, as the set stands at each request; anyone may still measure the link.
#[test]
fn a_stage_serves_inference_only_to_the_heads_its_set_admits() {
    let m = model();
    let prompt = prompt(&m);
    tokio::Runner::default().start(|context| async move {
        let gateways = KeySet::default();
        let admission = Admission::Listed(gateways.clone());
        let (whole, _h) = start_stage_admitting(&context, &m, 4, 0..30, admission).await;

        // A head outside the set is refused with a reason, and no session is opened for it.
        let head = new_head(&context, vec![whole.clone()], StandbyList::default());
        let mut session = head.open();
        let err = head.step(&mut session, &prompt, GREEDY).await.unwrap_err();
        assert!(err.to_string().contains("serves registered gateways only"), "{err}");
        assert!(session.is_empty());
        // It may still measure the link.
        let mut link =
            dial(context.child("probe"), key(9), whole.addr, whole.peer.clone(), WireLimits::default())
                .await
                .unwrap();
        let echo = link.call(&Request::Echo { payload: vec![7; 64] }).await.unwrap();
        assert_eq!(echo, Response::Echo(vec![7; 64]));

        // Once its key is in the set (the gateway registered), the same head is served at once.
        gateways.replace([key(9).public_key()].into_iter().collect());
        let token = head.step(&mut session, &prompt, GREEDY).await.unwrap();
        assert_eq!(token, whole_model_ids(&m, &prompt, 1, GREEDY)[0]);
        // And dropped from the set (it unbonded), it is refused again.
        gateways.replace(Default::default());
        let mut session = head.open();
        let err = head.step(&mut session, &prompt, GREEDY).await.unwrap_err();
        assert!(err.to_string().contains("serves registered gateways only"), "{err}");
    });
}

/// Each stage signs a receipt for the rows it computed when the head closes the session, and
/// only the stages that computed sign: a stage that died mid-answer signs nothing, its stand-in
/// signs for its replay and the rest, and a session that served no task is receipted by nobody.
#[test]
fn receipts_come_from_the_stages_that_computed_and_only_them() {
    let m = model();
    let prompt = prompt(&m);
    let n = 16;
    let rows = (prompt.len() + n - 1) as u32;
    tokio::Runner::default().start(|context| async move {
        let (first, _h1) = start_stage(&context, &m, 1, 0..15).await;
        let (second, h2) = start_stage(&context, &m, 2, 15..30).await;
        let (spare, _h3) = start_stage(&context, &m, 3, 15..30).await;
        let worker = |spec: &StageSpec| PublicKey(peer_bytes(&spec.peer));
        let head = new_head(&context, vec![first.clone(), second.clone()], StandbyList(vec![spare.clone()]));

        let (_, none) = run_for(&head, Hash32::ZERO, &prompt, 4, GREEDY, |_| {}).await;
        assert!(none.is_empty(), "a session for no task is receipted: {none:?}");

        let task = Hash32::digest(&[b"a task"]);
        let (_, receipts) = run_for(&head, task, &prompt, n, GREEDY, |_| {}).await;
        let got: Vec<_> = receipts
            .iter()
            .map(|r| (r.receipt.worker, r.receipt.layer_start, r.receipt.layer_end, r.receipt.rows))
            .collect();
        assert_eq!(got, [(worker(&first), 0, 15, rows), (worker(&second), 15, 30, rows)]);
        assert!(receipts.iter().all(|r| r.verify() && r.receipt.task == task));

        // Stage 2 dies 8 tokens in: the spare replays its history and finishes; only stage 1 and
        // the spare sign, each for every row.
        let mut h2 = Some(h2);
        let (_, receipts) = run_for(&head, task, &prompt, n, GREEDY, |i| {
            if i == 8
                && let Some(h) = h2.take()
            {
                h.abort();
            }
        })
        .await;
        let got: Vec<_> = receipts
            .iter()
            .map(|r| (r.receipt.worker, r.receipt.layer_start, r.receipt.layer_end, r.receipt.rows))
            .collect();
        assert_eq!(got, [(worker(&first), 0, 15, rows), (worker(&spare), 15, 30, rows)]);

        // A session cut after 3 tokens (as when its client leaves) is receipted for the rows
        // computed so far.
        let (_, receipts) = run_for(&head, task, &prompt, 3, GREEDY, |_| {}).await;
        assert!(receipts.iter().all(|r| r.receipt.rows == (prompt.len() + 2) as u32), "{receipts:?}");
        assert_eq!(receipts.len(), 2);
    });
}

/// A stage closes a link that stays silent for its runtime's read timeout (60 s by default, 1 s
/// here): the head must not reuse such a link from its pool, or a healthy stage would count as
/// failed (with no spare, the next answer would fail).
#[test]
fn a_link_idle_past_the_stages_read_timeout_is_not_reused() {
    let m = model();
    let prompt = prompt(&m);
    let expected = whole_model_ids(&m, &prompt, 4, GREEDY);
    let config = tokio::Config::default().with_read_write_timeout(std::time::Duration::from_secs(1));
    tokio::Runner::new(config).start(|context| async move {
        let (whole, _h) = start_stage(&context, &m, 7, 0..30).await;
        let config =
            HeadConfig { idle_link_age_max: std::time::Duration::from_millis(500), ..HeadConfig::default() };
        let head = PipelineHead::new(
            context.child("head"),
            key(9),
            vec![whole],
            Box::new(StandbyList::default()),
            config,
        )
        .unwrap();
        assert_eq!(run(&head, &prompt, 4, GREEDY, |_| {}).await, expected);
        // The pooled link outlives the stage's read timeout: the stage closes its end.
        commonware_runtime::Clock::sleep(&context, std::time::Duration::from_secs(3)).await;
        assert_eq!(run(&head, &prompt, 4, GREEDY, |_| {}).await, expected, "the stage is healthy");
    });
}

/// A TCP relay on 127.0.0.1 to `to` that holds every chunk for `delay` before passing it on, both
/// ways: a far or congested link.
fn slow_relay(to: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let (Ok(inbound), Ok(outbound)) = (inbound, std::net::TcpStream::connect(to)) else { continue };
            let ways = [(inbound.try_clone().unwrap(), outbound.try_clone().unwrap()), (outbound, inbound)];
            for (mut from, mut into) in ways {
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = from.read(&mut buf) {
                        std::thread::sleep(delay);
                        if n == 0 || into.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = into.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    addr
}

/// Two workers serve the whole model, one of them behind a link that holds every message 300 ms.
/// Each is tried while new; from then on the backend sends requests to the near one, whose steps
/// are measured many times faster, and the far one waits to be measured again.
#[test]
fn requests_go_where_they_are_served_fast() {
    let m = model();
    let prompt = prompt(&m);
    let path = polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap();
    tokio::Runner::default().start(|context| async move {
        let (near, _h1) = start_stage(&context, &m, 1, 0..30).await;
        let (mut far, _h2) = start_stage(&context, &m, 2, 0..30).await;
        far.addr = slow_relay(far.addr, Duration::from_millis(300));
        let patient = HeadConfig { call_timeout: Duration::from_secs(30), ..HeadConfig::default() };
        let head = |name: &'static str, stage: &StageSpec, config: HeadConfig| {
            let standby = Box::new(StandbyList(Vec::new()));
            PipelineHead::new(context.child(name), key(9), vec![stage.clone()], standby, config).unwrap()
        };
        let deployments = vec![
            Deployment::new("near", head("near", &near, HeadConfig::default())).await,
            Deployment::new("far", head("far", &far, patient)).await,
        ];
        let backend = PipelineBackend::new(context.child("backend"), &path, "m", deployments).unwrap();
        let near_worker = PublicKey(peer_bytes(&near.peer));
        let mut served = Vec::new();
        for seed in 0..8 {
            let placement = backend.place("m").unwrap();
            let params = GenerationParams { max_tokens: 4, temperature: 0.0, top_p: 1.0, seed, task: None };
            let mut stream = backend.generate_on("m", &placement, prompt.clone(), params).unwrap();
            while let Some(event) = stream.next().await {
                match event {
                    TokenEvent::Token { .. } => {}
                    TokenEvent::Done(_) => break,
                    other => panic!("request {seed}: {other:?}"),
                }
            }
            served.push(if placement.workers == [near_worker] { "near" } else { "far" });
        }
        assert_eq!(served, ["near", "far", "near", "near", "near", "near", "near", "near"]);
        let steps: Vec<Duration> = backend.deployments().iter().map(|d| d.step_time().unwrap()).collect();
        assert!(steps[1] > steps[0] * 3, "steps measured {steps:?}");
    });
}

/// A stage and a head of different stage protocol versions part with an error naming both, on
/// either side; the stage goes on serving heads of its own version.
#[test]
fn ends_of_another_stage_protocol_version_are_refused_by_name() {
    let m = model();
    let prompt = prompt(&m);
    let mut newer = b"polylink".to_vec();
    newer.extend_from_slice(&(STAGE_PROTOCOL_VERSION + 1).to_be_bytes());
    tokio::Runner::default().start(|context| async move {
        let (stage, _h) = start_stage(&context, &m, 1, 0..30).await;
        // A newer head dials the stage: the stage answers its own preamble and closes.
        let mut raw = std::net::TcpStream::connect(stage.addr).unwrap();
        raw.write_all(&newer).unwrap();
        let mut theirs = vec![0u8; 10];
        raw.read_exact(&mut theirs).unwrap();
        assert_eq!(theirs, preamble(), "the stage names its version");
        let mut rest = Vec::new();
        let _ = raw.read_to_end(&mut rest);
        assert!(rest.is_empty(), "the stage closed the link without a handshake");

        // This head dials a newer stage: the error names both versions.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = newer.clone();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(&reply);
            let mut buf = [0u8; 10];
            let _ = s.read_exact(&mut buf);
        });
        let err = dial(context.child("dial"), key(9), addr, key(1).public_key(), WireLimits::default())
            .await
            .err()
            .expect("a newer stage was dialed");
        let expected =
            format!("version {}, this build speaks {STAGE_PROTOCOL_VERSION}", STAGE_PROTOCOL_VERSION + 1);
        assert!(err.to_string().contains(&expected), "{err}");

        // The stage still serves a head of its own version.
        let head = new_head(&context, vec![stage], StandbyList(Vec::new()));
        assert_eq!(run(&head, &prompt, 4, GREEDY, |_| {}).await.len(), 4);
    });
}
