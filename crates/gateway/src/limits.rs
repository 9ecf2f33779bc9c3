//! Limits on what one request, one key and the whole gateway may ask for.

/// Limits on what one request may ask for.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes.
    pub body_bytes_max: usize,
    /// Longest prompt, tokens (after the chat template).
    pub prompt_tokens_max: usize,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens_max: usize,
    /// `max_tokens` when the request gives none.
    pub max_tokens_default: usize,
    /// Requests in flight per API key.
    pub requests_per_key_max: usize,
    /// Requests in flight for the whole gateway.
    pub requests_max: usize,
    /// Longest a generation may run; it then ends with `finish_reason: "length"`.
    pub request_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes_max: 1 << 20,
            prompt_tokens_max: 4096,
            max_tokens_max: 2048,
            max_tokens_default: 256,
            requests_per_key_max: 4,
            requests_max: 64,
            request_timeout_ms: 300_000,
        }
    }
}
