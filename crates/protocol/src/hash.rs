//! The hash rules that go on chain: a task's `prompt_hash` when it is opened and its result's
//! `output_hash` when it is reported, both re-derived by the validators that score it.

use polylink_types::Hash32;

/// The prompt hash put on chain: sha256 over the prompt token ids (u32 little-endian), which a
/// validator re-derives from the prompt text with the model's own tokenizer and template.
pub fn prompt_hash(ids: &[u32]) -> Hash32 {
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    Hash32::digest(&[b"polylink-prompt-v1", &bytes])
}

/// sha256 of the delivered output text (what SubmitResult records).
pub fn output_hash(text: &str) -> Hash32 {
    Hash32::digest(&[text.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_hash_is_domain_separated_and_order_sensitive() {
        assert_ne!(prompt_hash(&[1, 2]), prompt_hash(&[2, 1]));
        assert_ne!(prompt_hash(&[]), output_hash(""));
        assert_eq!(output_hash("Blue."), Hash32::digest(&[b"Blue."]));
    }
}
