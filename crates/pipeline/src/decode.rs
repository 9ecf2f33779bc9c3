//! The one decode loop of the backends: a session's prompt goes in chunks (only the last asks
//! for a token), then each sampled token is decoded by [`Decoding`] (the rule
//! `polylink_infer::generate` follows too) and fed back, until the generation ends or the client
//! drops its stream. What runs the forwards is a [`Steps`]: a pipeline head over remote stages,
//! or the engine on this machine.

use crate::PipelineError;
use crate::wire::SampleSpec;
use polylink_infer::Decoding;
use polylink_infer::Finish;
use polylink_infer::Tokenizer;
use polylink_protocol::{FinishReason, GenerationParams, TokenEvent, TokenSender};

/// Runs one session's forwards.
pub(crate) trait Steps {
    /// Feeds `tokens` at the session's next positions; with `sample`, returns the token the
    /// session's sampler draws after them.
    fn feed(
        &mut self,
        tokens: &[u32],
        sample: Option<SampleSpec>,
    ) -> impl Future<Output = Result<Option<u32>, PipelineError>> + Send;
}

/// Drives one generation through `steps`, sending each token's text on `events` and keeping
/// every token drawn in `drawn` (an end token, and one drawn after the client went away,
/// included: what the last stage's receipt commits to). Returns the event that ends it (done or
/// failed), or `None` when the client's stream was dropped.
pub(crate) async fn run(
    steps: &mut impl Steps,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    params: &GenerationParams,
    prefill_chunk: usize,
    events: &TokenSender,
    drawn: &mut Vec<u32>,
) -> Option<TokenEvent> {
    let sample =
        SampleSpec { temperature: params.temperature, top_k: 0, top_p: params.top_p, seed: params.seed };
    let failed = |e: PipelineError| Some(TokenEvent::Failed(e.to_string()));
    let chunks = prompt.len().div_ceil(prefill_chunk.max(1));
    let mut next = None;
    for (i, chunk) in prompt.chunks(prefill_chunk.max(1)).enumerate() {
        if events.is_closed() {
            return None;
        }
        match steps.feed(chunk, (i + 1 == chunks).then_some(sample)).await {
            Ok(token) => next = token,
            Err(e) => return failed(e),
        }
    }
    let Some(mut token) = next else {
        return failed(PipelineError::Protocol("the prompt gave no first token".into()));
    };
    drawn.push(token);
    let mut decoding = Decoding::new(params.max_tokens, false);
    loop {
        let decoded = decoding.push(tokenizer, token);
        // An end-of-generation token adds text only if a split character was pending.
        if decoded.finish != Some(Finish::Eos) || !decoded.text.is_empty() {
            events.unbounded_send(TokenEvent::Token { text: decoded.text, id: token }).ok()?;
        }
        match decoded.finish {
            Some(Finish::Eos | Finish::Stop) => return Some(TokenEvent::Done(FinishReason::Stop)),
            Some(Finish::Length) => return Some(TokenEvent::Done(FinishReason::Length)),
            None => {}
        }
        token = match steps.feed(&[token], Some(sample)).await {
            Ok(Some(next)) => {
                drawn.push(next);
                next
            }
            Ok(None) => return failed(PipelineError::Protocol("a decode step gave no token".into())),
            Err(e) => return failed(e),
        };
    }
}
