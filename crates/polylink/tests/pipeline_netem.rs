#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A 2-stage pipeline over emulated LAN links: each stage is a `polylink stage` process in its
//! own network namespace, reached over a veth pair with `tc netem delay 5ms rate 100mbit` on both
//! ends, and its greedy tokens equal the whole model's. Needs root and iproute2 (the test fails
//! and says which is missing). A kernel built without the netem qdisc (as on this project's CI
//! machines: no `sch_netem`) cannot add delay; the links are then shaped to 100 mbit with `tbf`
//! instead, and the test says so on stderr.

mod pipeline_common;

use commonware_runtime::{Runner, Supervisor};
use pipeline_common::{model_path, solo_answers, start_stage};
use polylink_node::netem::{EmulatedLan, LAN_NETEM};
use polylink_pipeline::head::{HeadConfig, PipelineHead, StandbyList};
use polylink_pipeline::transport::key_from_seed;
use polylink_pipeline::wire::SampleSpec;
use std::time::Instant;

#[test]
fn a_pipeline_over_netem_links_gives_the_whole_models_tokens() {
    let (lan, shaping) = EmulatedLan::shaped(2)
        .unwrap_or_else(|e| panic!("cannot emulate the LAN links this test needs: {e}"));
    if shaping != LAN_NETEM {
        eprintln!("no netem in this kernel; the links are shaped with `{shaping}` instead, no added delay");
    }
    let path = model_path();
    let n = 16;
    let (prompt, expected) = solo_answers(&path, &["What do bees make?"], n).remove(0);
    let first = start_stage(&path, 41, 0..15, Some(&lan.hosts[0]));
    let second = start_stage(&path, 42, 15..30, Some(&lan.hosts[1]));
    assert_eq!(first.spec.addr.ip(), lan.hosts[0].addr, "the stage listens behind the emulated link");
    let stages = vec![first.spec.clone(), second.spec.clone()];

    let (ids, ms_per_token) = commonware_runtime::tokio::Runner::default().start(|context| async move {
        let greedy = SampleSpec { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 };
        let head = PipelineHead::new(
            context.child("head"),
            key_from_seed(&[43; 32]).unwrap(),
            stages,
            Box::new(StandbyList::default()),
            HeadConfig::default(),
        )
        .unwrap();
        let mut session = head.open();
        let mut ids = vec![head.step(&mut session, &prompt, greedy).await.unwrap()];
        let start = Instant::now();
        while ids.len() < n {
            ids.push(head.step(&mut session, &[*ids.last().unwrap()], greedy).await.unwrap());
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / (n - 1) as f64;
        head.close(session).await;
        (ids, ms)
    });
    assert_eq!(ids, expected, "the pipeline over emulated links changed the answer");
    eprintln!("{ms_per_token:.1} ms per token over two emulated links");
    drop((first, second));
    drop(lan);
}
