//! Shared test helpers: a minimal GGUF writer for crafted (and deliberately broken) files, and
//! the paths of the fetched models.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

/// A metadata value to write.
pub enum V {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArr(Vec<String>),
    I32Arr(Vec<i32>),
    F32Arr(Vec<f32>),
}

/// A tensor to write: name, dims (GGUF order), type id, raw bytes.
pub struct T {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: u32,
    pub data: Vec<u8>,
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

/// Serializes a GGUF v3 file (alignment 32).
pub fn write_gguf(kv: &[(&str, V)], tensors: &[T]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        put_str(&mut b, k);
        match v {
            V::U32(x) => {
                b.extend(4u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            V::F32(x) => {
                b.extend(6u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            V::Bool(x) => {
                b.extend(7u32.to_le_bytes());
                b.push(u8::from(*x));
            }
            V::Str(s) => {
                b.extend(8u32.to_le_bytes());
                put_str(&mut b, s);
            }
            V::StrArr(a) => {
                b.extend(9u32.to_le_bytes());
                b.extend(8u32.to_le_bytes());
                b.extend((a.len() as u64).to_le_bytes());
                a.iter().for_each(|s| put_str(&mut b, s));
            }
            V::I32Arr(a) => {
                b.extend(9u32.to_le_bytes());
                b.extend(5u32.to_le_bytes());
                b.extend((a.len() as u64).to_le_bytes());
                a.iter().for_each(|x| b.extend(x.to_le_bytes()));
            }
            V::F32Arr(a) => {
                b.extend(9u32.to_le_bytes());
                b.extend(6u32.to_le_bytes());
                b.extend((a.len() as u64).to_le_bytes());
                a.iter().for_each(|x| b.extend(x.to_le_bytes()));
            }
        }
    }
    let mut offset = 0u64;
    for t in tensors {
        put_str(&mut b, &t.name);
        b.extend((t.dims.len() as u32).to_le_bytes());
        t.dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
        b.extend(t.ty.to_le_bytes());
        b.extend(offset.to_le_bytes());
        offset += (t.data.len() as u64).div_ceil(32) * 32;
    }
    while b.len() % 32 != 0 {
        b.push(0);
    }
    for t in tensors {
        b.extend(&t.data);
        while b.len() % 32 != 0 {
            b.push(0);
        }
    }
    b
}

/// An f32 tensor of `dims` filled from a deterministic pattern.
pub fn f32_tensor(name: &str, dims: &[u64], seed: u32) -> T {
    let n: u64 = dims.iter().product();
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let data = (0..n)
        .flat_map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            ((s as f32 / u32::MAX as f32 - 0.5) * 0.2).to_le_bytes()
        })
        .collect();
    T { name: name.to_string(), dims: dims.to_vec(), ty: 0, data }
}

/// A tiny llama-architecture model (f32 weights) with a byte-level BPE vocabulary.
pub fn tiny_llama(n_layers: u32, skip: Option<&str>) -> Vec<u8> {
    let (dim, ffn, heads, kv_heads, vocab) = (32u64, 64u64, 4u32, 2u32, 300usize);
    let kv_dim = dim / u64::from(heads / kv_heads);
    let mut tokens: Vec<String> = (0..256u32).map(|b| byte_token(b as u8)).collect();
    tokens.extend(["<|im_start|>", "<|im_end|>"].iter().map(|s| s.to_string()));
    while tokens.len() < vocab {
        tokens.push(format!("tok{}", tokens.len()));
    }
    let types: Vec<i32> = (0..vocab).map(|i| if (256..258).contains(&i) { 3 } else { 1 }).collect();
    let kv = vec![
        ("general.architecture", V::Str("llama".into())),
        ("llama.block_count", V::U32(n_layers)),
        ("llama.embedding_length", V::U32(dim as u32)),
        ("llama.feed_forward_length", V::U32(ffn as u32)),
        ("llama.attention.head_count", V::U32(heads)),
        ("llama.attention.head_count_kv", V::U32(kv_heads)),
        ("llama.context_length", V::U32(64)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
        ("tokenizer.ggml.model", V::Str("gpt2".into())),
        ("tokenizer.ggml.pre", V::Str("smollm".into())),
        ("tokenizer.ggml.tokens", V::StrArr(tokens)),
        ("tokenizer.ggml.token_type", V::I32Arr(types)),
        ("tokenizer.ggml.merges", V::StrArr(vec!["t o".into()])),
        ("tokenizer.ggml.eos_token_id", V::U32(257)),
    ];
    let mut t = vec![
        f32_tensor("token_embd.weight", &[dim, vocab as u64], 1),
        f32_tensor("output_norm.weight", &[dim], 2),
    ];
    for l in 0..n_layers {
        let s = 10 + l * 20;
        let p = |n: &str| format!("blk.{l}.{n}.weight");
        t.push(f32_tensor(&p("attn_norm"), &[dim], s));
        t.push(f32_tensor(&p("attn_q"), &[dim, dim], s + 1));
        t.push(f32_tensor(&p("attn_k"), &[dim, kv_dim], s + 2));
        t.push(f32_tensor(&p("attn_v"), &[dim, kv_dim], s + 3));
        t.push(f32_tensor(&p("attn_output"), &[dim, dim], s + 4));
        t.push(f32_tensor(&p("ffn_norm"), &[dim], s + 5));
        t.push(f32_tensor(&p("ffn_gate"), &[dim, ffn], s + 6));
        t.push(f32_tensor(&p("ffn_up"), &[dim, ffn], s + 7));
        t.push(f32_tensor(&p("ffn_down"), &[ffn, dim], s + 8));
    }
    if let Some(name) = skip {
        t.retain(|x| x.name != name);
    }
    write_gguf(&kv, &t)
}

/// GPT-2's printable form of a byte.
fn byte_token(b: u8) -> String {
    let printable = (b'!'..=b'~').contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    if printable {
        char::from(b).to_string()
    } else {
        let mut n = 0u32;
        for x in 0..b {
            let p = (b'!'..=b'~').contains(&x) || (0xa1..=0xac).contains(&x) || (0xae..=0xff).contains(&x);
            if !p {
                n += 1;
            }
        }
        char::from_u32(256 + n).unwrap().to_string()
    }
}

/// Writes bytes to a temp file and returns its handle (deleted on drop).
pub fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    f
}

/// SmolLM2-135M-Instruct Q4_1.
pub fn smollm2() -> PathBuf {
    polylink_models::gguf_path(polylink_models::SMOLLM2_135M).expect("run `polylink models fetch` first")
}

/// Gemma-3-270M Q4_K_M.
pub fn gemma3() -> PathBuf {
    polylink_models::gguf_path(polylink_models::GEMMA3_270M).expect("run `polylink models fetch` first")
}
