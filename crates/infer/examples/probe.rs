//! Development probe: greedy tokens, timing and metadata of a GGUF (not part of the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use polylink_infer::{Gguf, LogitsMode, OutputKind, Pool, Shard, ShardInput, Tokenizer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let g = Gguf::open(std::path::Path::new(&args[1])).unwrap();
    if args.get(2).map(String::as_str) == Some("meta") {
        for (k, v) in &g.metadata {
            let s = format!("{v:?}");
            println!("{k} = {}", &s[..s.len().min(200)]);
        }
        for t in g.tensors.iter().take(40) {
            println!("{} {:?} {:?}", t.name, t.dims, t.ty);
        }
        return;
    }
    let text = std::fs::read_to_string(&args[2]).unwrap();
    let n: usize = args.get(3).map_or(16, |s| s.parse().unwrap());
    let threads: usize = args.get(4).map_or(2, |s| s.parse().unwrap());
    let t0 = Instant::now();
    let pool = Arc::new(Pool::new(threads));
    let hp = polylink_infer::HParams::from_gguf(&g).unwrap();
    let shard = Shard::load(&g, 0..hp.n_layers, pool).unwrap();
    let tok = Tokenizer::from_gguf(&g, hp.vocab).unwrap();
    eprintln!("load {:?}", t0.elapsed());
    let ids = tok.encode(&text);
    println!("prompt {ids:?}");
    let mut kv = shard.new_session(4096);
    let mut out = Vec::new();
    let t1 = Instant::now();
    let OutputKind::Logits { .. } =
        shard.forward(&mut kv, ShardInput::Tokens(&ids), LogitsMode::Last, &mut out).unwrap()
    else {
        panic!()
    };
    let tp = t1.elapsed();
    let mut generated = Vec::new();
    let t2 = Instant::now();
    for _ in 0..n {
        let (best, _) =
            out.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        generated.push(best as u32);
        shard.forward(&mut kv, ShardInput::Tokens(&[best as u32]), LogitsMode::Last, &mut out).unwrap();
    }
    let td = t2.elapsed();
    println!("generated {generated:?}");
    println!("text {:?}", tok.decode(&generated));
    eprintln!(
        "prefill {:.1} tok/s, decode {:.1} tok/s",
        ids.len() as f64 / tp.as_secs_f64(),
        n as f64 / td.as_secs_f64()
    );
}
