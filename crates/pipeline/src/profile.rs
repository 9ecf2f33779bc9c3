//! A model's [`ModelProfile`] read from its GGUF tensor directory (no tensor data is read).

use crate::plan::ModelProfile;
use polylink_infer::{Gguf, HParams, InferError};

/// Bytes of one KV-cache element (the engine keeps keys and values in f16).
const KV_ELEMENT_BYTES: u64 = 2;
/// Bytes of one hidden-state element on the wire (f32, so a split is bit-identical).
const HIDDEN_ELEMENT_BYTES: u64 = 4;

/// Per-layer weight bytes, embedding and head bytes, KV and hidden-state sizes of a GGUF model.
pub fn model_profile(gguf: &Gguf) -> Result<ModelProfile, InferError> {
    let hp = HParams::from_gguf(gguf)?;
    let mut layer_bytes = vec![0u64; hp.n_layers];
    let mut embed_bytes = 0u64;
    let mut head_bytes = 0u64;
    let mut has_output = false;
    for tensor in &gguf.tensors {
        let layer = tensor
            .name
            .strip_prefix("blk.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(index, _)| index.parse::<usize>().ok());
        match (layer, tensor.name.as_str()) {
            (Some(i), _) if i < hp.n_layers => layer_bytes[i] = layer_bytes[i].saturating_add(tensor.bytes),
            (_, "token_embd.weight") => embed_bytes = tensor.bytes,
            (_, "output.weight") => {
                has_output = true;
                head_bytes = head_bytes.saturating_add(tensor.bytes);
            }
            (_, "output_norm.weight") => head_bytes = head_bytes.saturating_add(tensor.bytes),
            _ => {}
        }
    }
    // A tied head reuses the embedding matrix, which the last stage must then hold too.
    if !has_output {
        head_bytes = head_bytes.saturating_add(embed_bytes);
    }
    Ok(ModelProfile {
        layer_bytes,
        embed_bytes,
        head_bytes,
        head_shares_embedding: !has_output,
        kv_bytes_per_token_layer: 2 * hp.kv_dim() as u64 * KV_ELEMENT_BYTES,
        hidden_bytes_per_token: hp.dim as u64 * HIDDEN_ELEMENT_BYTES,
    })
}
