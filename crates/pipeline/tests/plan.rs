#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The planner against hand-checked cases and, by property, against brute force.

use polylink_pipeline::plan::{
    DeviceProfile, LinkProfile, ModelProfile, Objective, Plan, PlanError, PlanRequest, plan,
};
use proptest::prelude::*;

const MB: u64 = 1_000_000;

/// SmolLM2-135M-like: 30 layers of ~2.2 MB, tied 28.7 MB embedding/head, f32 hidden states.
fn smol() -> ModelProfile {
    ModelProfile {
        layer_bytes: vec![2_200_000; 30],
        embed_bytes: 28_700_000,
        head_bytes: 28_700_000,
        head_shares_embedding: true,
        kv_bytes_per_token_layer: 1536,
        hidden_bytes_per_token: 2304,
    }
}

fn device(id: &str, memory_bytes: u64, layer_time_us: u64) -> DeviceProfile {
    DeviceProfile { id: id.into(), memory_bytes, layer_time_us, head_time_us: 2 * layer_time_us }
}

/// Full mesh of links with the same latency and bandwidth.
fn mesh(devices: &[DeviceProfile], latency_us: u64, bandwidth_bytes_per_s: u64) -> Vec<LinkProfile> {
    let mut links = Vec::new();
    for a in devices {
        for b in devices {
            if a.id != b.id {
                links.push(LinkProfile {
                    from: a.id.clone(),
                    to: b.id.clone(),
                    latency_us,
                    bandwidth_bytes_per_s,
                });
            }
        }
    }
    links
}

fn request(devices: Vec<DeviceProfile>, objective: Objective) -> PlanRequest {
    let links = mesh(&devices, 500, 125 * MB);
    PlanRequest { model: smol(), devices, links, context_tokens: 2048, objective }
}

fn layout(plan: &Plan) -> Vec<(String, usize, usize)> {
    plan.stages.iter().map(|s| (s.device.clone(), s.layers.start, s.layers.end)).collect()
}

#[test]
fn a_device_that_holds_the_model_runs_it_alone() {
    let devices = vec![device("laptop", 4000 * MB, 300), device("pi", 4000 * MB, 900)];
    let plan = plan(&request(devices, Objective::Latency)).unwrap();
    assert_eq!(layout(&plan), vec![("laptop".into(), 0, 30)]);
    assert_eq!(plan.token_latency_us, 30 * 300 + 600);
    assert_eq!(plan.best_single_latency_us, Some(plan.token_latency_us));
}

#[test]
fn a_model_too_big_for_any_device_is_split_within_memory() {
    // The model needs ~189 MB with a 2k context; each device holds a bit over half.
    let devices = vec![device("a", 110 * MB, 300), device("b", 110 * MB, 300)];
    let plan = plan(&request(devices, Objective::Latency)).unwrap();
    assert_eq!(plan.stages.len(), 2);
    assert_eq!(plan.stages[0].layers.start, 0);
    assert_eq!(plan.stages[0].layers.end, plan.stages[1].layers.start);
    assert_eq!(plan.stages[1].layers.end, 30);
    for stage in &plan.stages {
        assert!(stage.memory_bytes <= 110 * MB, "{stage:?}");
    }
    assert_eq!(plan.best_single_latency_us, None);
}

#[test]
fn a_slow_device_that_only_adds_delay_is_left_out() {
    let devices =
        vec![device("a", 110 * MB, 300), device("b", 110 * MB, 300), device("slow", 110 * MB, 5000)];
    let plan = plan(&request(devices, Objective::Latency)).unwrap();
    let used: Vec<String> = plan.stages.iter().map(|s| s.device.clone()).collect();
    assert_eq!(used.len(), 2);
    assert!(!used.contains(&"slow".to_string()), "{used:?}");
}

#[test]
fn the_fast_device_takes_as_many_layers_as_it_can_hold() {
    let devices = vec![device("fast", 80 * MB, 100), device("slow", 200 * MB, 1000)];
    let plan = plan(&request(devices, Objective::Latency)).unwrap();
    assert_eq!(plan.stages.len(), 2, "{plan:?}");
    let fast = plan.stages.iter().find(|s| s.device == "fast").unwrap();
    // The slow device could run the model alone, but the split is faster, and the fast device is
    // filled up to its memory: one more layer would not fit.
    assert!(plan.token_latency_us < plan.best_single_latency_us.unwrap(), "{plan:?}");
    assert!(fast.memory_bytes + 2_200_000 + 1536 * 2048 > 80 * MB, "{plan:?}");
}

#[test]
fn throughput_splits_where_latency_would_not() {
    let devices = vec![device("a", 4000 * MB, 300), device("b", 4000 * MB, 300)];
    let single = plan(&request(devices.clone(), Objective::Latency)).unwrap();
    assert_eq!(single.stages.len(), 1);
    let piped = plan(&request(devices, Objective::Throughput)).unwrap();
    assert_eq!(piped.stages.len(), 2);
    assert!(piped.bottleneck_us < single.bottleneck_us, "{piped:?} vs {single:?}");
}

#[test]
fn devices_without_a_link_are_never_adjacent() {
    let devices = vec![device("a", 110 * MB, 300), device("b", 110 * MB, 300)];
    let mut req = request(devices, Objective::Latency);
    req.links.retain(|l| l.from != "a");
    // Only b -> a exists, so b must come first and the token must still get back: impossible.
    assert!(matches!(plan(&req), Err(PlanError::DoesNotFit { .. })));
}

#[test]
fn bad_requests_are_refused_with_reasons() {
    let mut req = request(vec![device("a", 10 * MB, 300)], Objective::Latency);
    match plan(&req) {
        Err(PlanError::DoesNotFit { needed_bytes, offered_bytes, .. }) => {
            assert!(needed_bytes > offered_bytes);
            assert_eq!(offered_bytes, 10 * MB);
        }
        other => panic!("{other:?}"),
    }
    req.devices.push(device("a", 10 * MB, 300));
    assert_eq!(plan(&req), Err(PlanError::DuplicateDevice("a".into())));
    let mut req = request(vec![device("a", 4000 * MB, 300)], Objective::Latency);
    req.links.push(LinkProfile {
        from: "a".into(),
        to: "ghost".into(),
        latency_us: 1,
        bandwidth_bytes_per_s: 1,
    });
    assert!(matches!(plan(&req), Err(PlanError::UnknownLinkDevice { .. })));
    req.model.layer_bytes.clear();
    assert_eq!(plan(&req), Err(PlanError::EmptyModel));
}

/// Every ordered sequence of distinct devices and every way to cut the layers among them.
fn brute_force(req: &PlanRequest) -> Option<(u64, usize)> {
    fn extend(
        req: &PlanRequest,
        from: usize,
        stages: &mut Vec<(String, usize, usize)>,
        best: &mut Option<(u64, usize)>,
    ) {
        let l = req.model.layer_bytes.len();
        for device in &req.devices {
            if stages.iter().any(|s| s.0 == device.id) {
                continue;
            }
            for end in from + 1..=l {
                stages.push((device.id.clone(), from, end));
                if end == l {
                    if let Some(cost) = evaluate(req, stages)
                        && best.is_none_or(|b| (cost, stages.len()) < b)
                    {
                        *best = Some((cost, stages.len()));
                    }
                } else {
                    extend(req, end, stages, best);
                }
                stages.pop();
            }
        }
    }
    let mut best = None;
    extend(req, 0, &mut Vec::new(), &mut best);
    best
}

/// Cost of a given layout under the request's objective, straight from the definitions.
fn evaluate(req: &PlanRequest, stages: &[(String, usize, usize)]) -> Option<u64> {
    let m = &req.model;
    let l = m.layer_bytes.len();
    let dev = |id: &str| req.devices.iter().find(|d| d.id == id).unwrap();
    let link = |a: &str, b: &str| req.links.iter().find(|x| x.from == a && x.to == b);
    let mut latency = 0u64;
    let mut bottleneck = 0u64;
    for (k, (id, start, end)) in stages.iter().enumerate() {
        let d = dev(id);
        let mut mem: u64 = m.layer_bytes[*start..*end].iter().sum::<u64>()
            + m.kv_bytes_per_token_layer * req.context_tokens * (end - start) as u64;
        if *start == 0 {
            mem += m.embed_bytes;
        }
        if *end == l && !(*start == 0 && m.head_shares_embedding) {
            mem += m.head_bytes;
        }
        if mem > d.memory_bytes {
            return None;
        }
        let compute = d.layer_time_us * (end - start) as u64 + if *end == l { d.head_time_us } else { 0 };
        latency += compute;
        bottleneck = bottleneck.max(compute);
        if k > 0 {
            let x = link(&stages[k - 1].0, id)?;
            let transfer = (m.hidden_bytes_per_token * 1_000_000).div_ceil(x.bandwidth_bytes_per_s);
            latency += x.latency_us + transfer;
            bottleneck = bottleneck.max(transfer);
        }
    }
    if stages.len() > 1 {
        latency += link(&stages[stages.len() - 1].0, &stages[0].0)?.latency_us;
    }
    Some(match req.objective {
        Objective::Latency => latency,
        Objective::Throughput => bottleneck,
    })
}

fn arb_request() -> impl Strategy<Value = PlanRequest> {
    let layers = prop::collection::vec(1u64..50, 1..6);
    let devices = prop::collection::vec((20u64..200, 1u64..100, 0u64..50), 1..4);
    let links = prop::collection::vec((0u64..300, 1u64..5000, any::<bool>()), 12);
    let objective = prop_oneof![Just(Objective::Latency), Just(Objective::Throughput)];
    (layers, devices, links, objective, 0u64..5, 0u64..20, any::<bool>()).prop_map(
        |(layer_bytes, devs, raw_links, objective, embed, hidden, tied)| {
            let devices: Vec<DeviceProfile> = devs
                .iter()
                .enumerate()
                .map(|(i, (mem, t, h))| DeviceProfile {
                    id: format!("d{i}"),
                    memory_bytes: *mem,
                    layer_time_us: *t,
                    head_time_us: *h,
                })
                .collect();
            let mut links = Vec::new();
            let mut k = 0;
            for a in &devices {
                for b in &devices {
                    if a.id != b.id {
                        let (latency_us, bw, present) = raw_links[k % raw_links.len()];
                        k += 1;
                        if present {
                            links.push(LinkProfile {
                                from: a.id.clone(),
                                to: b.id.clone(),
                                latency_us,
                                bandwidth_bytes_per_s: bw,
                            });
                        }
                    }
                }
            }
            PlanRequest {
                model: ModelProfile {
                    layer_bytes,
                    embed_bytes: embed,
                    head_bytes: embed + 1,
                    head_shares_embedding: tied,
                    kv_bytes_per_token_layer: 1,
                    hidden_bytes_per_token: hidden,
                },
                devices,
                links,
                context_tokens: 3,
                objective,
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// The dynamic program finds exactly the optimum that exhaustive search finds, and the plan it
    /// reports costs what the definitions say.
    #[test]
    fn matches_brute_force(req in arb_request()) {
        let expected = brute_force(&req);
        match plan(&req) {
            Ok(p) => {
                let stages: Vec<(String, usize, usize)> = layout(&p);
                let cost = evaluate(&req, &stages);
                prop_assert!(cost.is_some(), "plan violates memory or links: {:?}", p);
                prop_assert_eq!(Some((cost.unwrap(), stages.len())), expected);
                if req.objective == Objective::Latency {
                    prop_assert_eq!(p.token_latency_us, cost.unwrap());
                    if let Some(single) = p.best_single_latency_us {
                        prop_assert!(p.token_latency_us <= single);
                    }
                } else {
                    prop_assert_eq!(p.bottleneck_us, cost.unwrap());
                }
            }
            Err(PlanError::DoesNotFit { .. }) => prop_assert_eq!(expected, None),
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }
}

#[test]
fn smollm2_profile_comes_from_its_gguf() {
    let path = polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap();
    let gguf = polylink_infer::Gguf::open(&path).unwrap();
    let profile = polylink_pipeline::profile::model_profile(&gguf).unwrap();
    assert_eq!(profile.layer_bytes.len(), 30);
    assert!(profile.head_shares_embedding, "SmolLM2 ties its LM head to the embedding");
    // 576-wide f32 hidden states; 3 KV heads of 64 in f16, keys and values.
    assert_eq!(profile.hidden_bytes_per_token, 2304);
    assert_eq!(profile.kv_bytes_per_token_layer, 768);
    let total: u64 = profile.layer_bytes.iter().sum::<u64>() + profile.embed_bytes;
    // The notes measured 96.58 MB of tensor bytes; the final norm is counted with the head.
    assert!((96_000_000..97_000_000).contains(&total), "{total}");
}

#[test]
fn balanced_ranges_even_out_the_stages_with_the_lm_head_on_the_last() {
    use polylink_pipeline::plan::balanced_ranges;
    let device = |head_time_us| DeviceProfile {
        id: "here".into(),
        memory_bytes: 8_000 * MB,
        layer_time_us: 100,
        head_time_us,
    };
    // No head cost: two equal halves; one stage asked: the whole model.
    assert_eq!(balanced_ranges(&smol(), &device(0), 2).unwrap(), vec![0..15, 15..30]);
    assert_eq!(balanced_ranges(&smol(), &device(0), 1).unwrap(), vec![0..30]);
    // A head worth 8 layers: the last stage takes 8 fewer layers, so both take 1,900 us.
    assert_eq!(balanced_ranges(&smol(), &device(800), 2).unwrap(), vec![0..19, 19..30]);
    // Three stages: the slowest is as fast as any contiguous 3-way split can make it.
    let three = balanced_ranges(&smol(), &device(800), 3).unwrap();
    let cost = |r: &std::ops::Range<usize>| 100 * r.len() as u64 + if r.end == 30 { 800 } else { 0 };
    let worst = three.iter().map(cost).max().unwrap();
    let best = (1..29)
        .flat_map(|a| (a + 1..30).map(move |b| [0..a, a..b, b..30]))
        .map(|split| split.iter().map(cost).max().unwrap())
        .min()
        .unwrap();
    assert_eq!((three.len(), worst), (3, best), "{three:?}");
    // A head heavier than all the layers together: the last stage keeps one layer and the head,
    // and a third stage could not make it faster, so none is made.
    assert_eq!(balanced_ranges(&smol(), &device(10_000), 3).unwrap(), vec![0..29, 29..30]);
}
