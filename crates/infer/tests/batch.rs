//! One loaded shard serves several sessions: decoding them together in one batch gives the same
//! logits as decoding each alone, and sessions never see each other's cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use polylink_infer::sample::argmax;
use polylink_infer::{KvCache, LogitsMode, Model, ShardInput};

#[test]
fn batched_decode_equals_one_session_at_a_time() {
    let m = Model::open(&common::smollm2(), None, 1).unwrap();
    let vocab = m.info.hparams.vocab;
    let prompts =
        ["The capital of France is", "1, 2, 3,", "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"];
    let mut alone: Vec<KvCache> = Vec::new();
    let mut batched: Vec<KvCache> = Vec::new();
    let mut next = Vec::new();
    let mut out = Vec::new();
    for p in prompts {
        let ids = m.tokenizer.encode(p);
        for set in [&mut alone, &mut batched] {
            let mut kv = m.shard.new_session(256);
            m.shard.forward(&mut kv, ShardInput::Tokens(&ids), LogitsMode::Last, &mut out).unwrap();
            set.push(kv);
        }
        next.push(argmax(&out));
    }
    for step in 0..6 {
        let mut refs: Vec<&mut KvCache> = batched.iter_mut().collect();
        let mut batch_logits = Vec::new();
        m.shard.forward_batch(&mut refs, ShardInput::Tokens(&next), &mut batch_logits).unwrap();
        assert_eq!(batch_logits.len(), prompts.len() * vocab);
        for (i, kv) in alone.iter_mut().enumerate() {
            m.shard.forward(kv, ShardInput::Tokens(&[next[i]]), LogitsMode::Last, &mut out).unwrap();
            assert!(out[..] == batch_logits[i * vocab..(i + 1) * vocab], "session {i} step {step} differs");
        }
        next = (0..prompts.len()).map(|i| argmax(&batch_logits[i * vocab..(i + 1) * vocab])).collect();
    }
    assert!(batched.iter().zip(&alone).all(|(a, b)| a.len() == b.len()));
    // A batch whose input does not match its sessions is refused and changes nothing.
    let mut refs: Vec<&mut KvCache> = batched.iter_mut().collect();
    let before: Vec<usize> = refs.iter().map(|k| k.len()).collect();
    assert!(m.shard.forward_batch(&mut refs, ShardInput::Tokens(&next[..2]), &mut out).is_err());
    assert_eq!(refs.iter().map(|k| k.len()).collect::<Vec<_>>(), before);
}
