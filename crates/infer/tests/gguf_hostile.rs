//! Truncated, corrupt and hostile GGUF files get typed errors, with bounded memory and no panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use polylink_infer::{Gguf, HParams, InferError, LogitsMode, Model, Pool, Shard, ShardInput, Tokenizer};

fn open(bytes: &[u8]) -> Result<Gguf, InferError> {
    let f = temp_file(bytes);
    Gguf::open(f.path())
}

fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b
}

#[test]
fn a_well_formed_tiny_model_loads_and_runs() {
    let f = temp_file(&tiny_llama(2, None));
    let m = Model::open(f.path(), None, 2).unwrap();
    let ids = m.tokenizer.encode("<|im_start|>hello");
    assert_eq!(ids[0], 256);
    let mut kv = m.shard.new_session(64);
    let mut out = Vec::new();
    m.shard.forward(&mut kv, ShardInput::Tokens(&ids), LogitsMode::All, &mut out).unwrap();
    assert_eq!(out.len(), ids.len() * 300);
    assert!(out.iter().all(|v| v.is_finite()));
}

#[test]
fn bad_magic_and_versions_are_rejected() {
    assert!(matches!(open(b"GGML\x03\0\0\0"), Err(InferError::BadMagic(_))));
    let mut b = header(0, 0);
    b[4] = 1;
    assert!(matches!(open(&b), Err(InferError::Malformed { .. })));
    assert!(matches!(open(b"GG"), Err(InferError::Malformed { .. })));
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error() {
    let full = tiny_llama(1, None);
    let g = open(&full).unwrap();
    let data_start = full.len() - g.tensors.iter().map(|t| t.bytes.div_ceil(32) * 32).sum::<u64>() as usize;
    // Every cut inside the header and directory, and a spread of cuts inside the tensor data.
    let cuts = (0..data_start).chain((data_start..full.len()).step_by(97));
    for cut in cuts {
        assert!(open(&full[..cut]).is_err(), "a file cut at {cut} of {} bytes opened", full.len());
    }
}

#[test]
fn absurd_counts_fail_before_allocating() {
    assert!(matches!(open(&header(u64::MAX, 0)), Err(InferError::Malformed { .. })));
    assert!(matches!(open(&header(0, 1 << 60)), Err(InferError::Malformed { .. })));
    // One key whose value is an array claiming 2^60 strings.
    let mut b = header(0, 1);
    b.extend(3u64.to_le_bytes());
    b.extend(b"key");
    b.extend(9u32.to_le_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend((1u64 << 60).to_le_bytes());
    assert!(matches!(open(&b), Err(InferError::Malformed { .. })));
    // A string claiming 2^62 bytes.
    let mut b = header(0, 1);
    b.extend((1u64 << 62).to_le_bytes());
    assert!(matches!(open(&b), Err(InferError::Malformed { .. })));
}

#[test]
fn hostile_tensor_entries_are_rejected() {
    let base = |dims: Vec<u64>, ty: u32, data: usize| {
        write_gguf(&[], &[T { name: "w".into(), dims, ty, data: vec![0; data] }])
    };
    // Dimensions whose product overflows.
    assert!(matches!(open(&base(vec![1 << 40, 1 << 40], 0, 32)), Err(InferError::Malformed { .. })));
    // Five dimensions, and a zero dimension.
    assert!(matches!(open(&base(vec![1; 5], 0, 32)), Err(InferError::Malformed { .. })));
    assert!(matches!(open(&base(vec![0, 4], 0, 32)), Err(InferError::Malformed { .. })));
    // Data past the end of the file.
    assert!(matches!(open(&base(vec![1024, 1024], 0, 32)), Err(InferError::Malformed { .. })));
    // A quantized row that is not a whole number of blocks.
    assert!(matches!(open(&base(vec![33], 8, 64)), Err(InferError::Malformed { .. })));
    // Unknown and unimplemented tensor types.
    assert!(matches!(open(&base(vec![32], 99, 64)), Err(InferError::UnsupportedType { type_id: 99, .. })));
    assert!(matches!(open(&base(vec![256], 16, 256)), Err(InferError::UnsupportedType { .. })));
    // Two tensors with the same name.
    let t = || T { name: "w".into(), dims: vec![8], ty: 0, data: vec![0; 32] };
    assert!(matches!(open(&write_gguf(&[], &[t(), t()])), Err(InferError::Malformed { .. })));
}

#[test]
fn missing_tensors_and_bad_ranges_are_typed_errors() {
    let f = temp_file(&tiny_llama(2, Some("blk.1.ffn_up.weight")));
    let g = Gguf::open(f.path()).unwrap();
    let pool = Arc::new(Pool::new(1));
    // Layer 0 alone does not need the missing tensor: a shard loads only its own layers.
    assert!(Shard::load(&g, 0..1, pool.clone()).is_ok());
    assert!(
        matches!(Shard::load(&g, 0..2, pool.clone()), Err(InferError::MissingTensor(n)) if n == "blk.1.ffn_up.weight")
    );
    assert!(matches!(Shard::load(&g, 1..3, pool.clone()), Err(InferError::BadLayerRange { .. })));
    assert!(matches!(Shard::load(&g, 1..1, pool), Err(InferError::BadLayerRange { .. })));
}

#[test]
fn absurd_hyper_parameters_are_rejected() {
    let mut bytes = tiny_llama(1, None);
    // Patch llama.block_count (a u32 right after its key) to 1,000,000.
    let key = b"llama.block_count";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
    bytes[at..at + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
    let g = open(&bytes).unwrap();
    assert!(matches!(HParams::from_gguf(&g), Err(InferError::BadMetadata { .. })));
}

#[test]
fn a_tokenizer_that_does_not_fit_is_rejected() {
    let f = temp_file(&tiny_llama(1, None));
    let g = Gguf::open(f.path()).unwrap();
    // More tokens than embedding rows.
    assert!(matches!(Tokenizer::from_gguf(&g, 100), Err(InferError::Tokenizer(_))));
    // Token types that do not match the token count.
    let kv = [
        ("tokenizer.ggml.model", V::Str("gpt2".into())),
        ("tokenizer.ggml.tokens", V::StrArr(vec!["a".into(), "b".into()])),
        ("tokenizer.ggml.token_type", V::I32Arr(vec![1])),
        ("tokenizer.ggml.merges", V::StrArr(vec![])),
    ];
    let g2 = open(&write_gguf(&kv, &[])).unwrap();
    assert!(matches!(Tokenizer::from_gguf(&g2, 10), Err(InferError::Tokenizer(_))));
    // An unknown tokenizer model, and a BOS id outside the vocabulary.
    let kv = [
        ("tokenizer.ggml.model", V::Str("wordpiece".into())),
        ("tokenizer.ggml.tokens", V::StrArr(vec!["a".into()])),
    ];
    assert!(matches!(
        Tokenizer::from_gguf(&open(&write_gguf(&kv, &[])).unwrap(), 10),
        Err(InferError::Tokenizer(_))
    ));
    let kv = [
        ("tokenizer.ggml.model", V::Str("llama".into())),
        ("tokenizer.ggml.tokens", V::StrArr(vec!["a".into()])),
        ("tokenizer.ggml.bos_token_id", V::U32(7)),
    ];
    assert!(matches!(
        Tokenizer::from_gguf(&open(&write_gguf(&kv, &[])).unwrap(), 10),
        Err(InferError::Tokenizer(_))
    ));
}

#[test]
fn a_prompt_longer_than_the_context_is_a_clear_error() {
    let f = temp_file(&tiny_llama(1, None));
    let m = Model::open(f.path(), None, 1).unwrap();
    let mut kv = m.shard.new_session(10_000);
    assert_eq!(kv.context_len(), 64);
    let ids = vec![5u32; 65];
    let err =
        m.shard.forward(&mut kv, ShardInput::Tokens(&ids), LogitsMode::Last, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, InferError::ContextFull { needed: 65, context: 64 }));
    assert!(err.to_string().contains("exceed the context length"));
    assert!(kv.is_empty(), "a rejected prompt changes nothing");
    // A token id outside the vocabulary and hidden states sent to a first shard.
    assert!(matches!(
        m.shard.forward(&mut kv, ShardInput::Tokens(&[300]), LogitsMode::Last, &mut Vec::new()),
        Err(InferError::BadInput(_))
    ));
    assert!(matches!(
        m.shard.forward(&mut kv, ShardInput::Hidden(&[0.0; 32]), LogitsMode::Last, &mut Vec::new()),
        Err(InferError::BadInput(_))
    ));
}
