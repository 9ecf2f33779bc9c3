//! The inference port: what a front end needs from whatever runs the model.
//!
//! A backend lists its models, turns a [`Prompt`] (raw text or chat messages, rendered with the
//! model's own chat template) into token ids, and starts generations. A generation is a
//! [`TokenStream`] of [`TokenEvent`]s, one per generated token; dropping the stream cancels the
//! generation at the backend's next step. Stop sequences, limits, billing and the HTTP shapes
//! live in the gateway, so a backend only turns tokens into tokens.

use crate::error::Result;
use crate::prompt::Prompt;
use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::channel::oneshot;
use polylink_types::{Hash32, PublicKey, SignedReceipt};

/// A model a backend serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCard {
    /// The id clients put in `model`.
    pub id: String,
    /// Who publishes it (`owned_by` in `/v1/models`).
    pub owned_by: String,
    /// Most positions (prompt plus completion) one session may hold.
    pub context_tokens: usize,
}

/// Sampling options of one generation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerationParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    pub temperature: f32,
    /// Nucleus sampling mass in (0, 1].
    pub top_p: f32,
    /// Random seed.
    pub seed: u64,
    /// The on-chain task this generation serves, when billed: the workers sign their receipts
    /// for it.
    pub task: Option<Hash32>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-generation token or a stop sequence (`"stop"`).
    Stop,
    /// `max_tokens` reached (`"length"`).
    Length,
}

impl FinishReason {
    /// OpenAI's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// What a running generation reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEvent {
    /// One generated token and the text it completes (empty while a character is still split).
    Token {
        /// Text released by this token.
        text: String,
        /// The token's id (the transcript keeps them, so a validator checks the worker's own
        /// tokens against the sampling rule rather than a re-tokenization of the text).
        id: u32,
    },
    /// The generation ended by itself (end-of-generation tokens are not counted as tokens).
    Done(FinishReason),
    /// The generation failed.
    Failed(String),
}

/// The backend's end of a generation: closed once the [`TokenStream`] is dropped.
pub type TokenSender = UnboundedSender<TokenEvent>;

/// A running generation; dropping it cancels the generation.
#[derive(Debug)]
pub struct TokenStream {
    rx: UnboundedReceiver<TokenEvent>,
    receipts: Option<Receipts>,
}

impl TokenStream {
    /// A new generation's two ends: the backend sends on the first, the front end reads the second.
    pub fn channel() -> (TokenSender, TokenStream) {
        let (tx, rx) = unbounded();
        (tx, Self { rx, receipts: None })
    }

    /// Attaches where the generation's work receipts will come (see [`Receipts`]).
    pub fn with_receipts(mut self, receipts: Receipts) -> Self {
        self.receipts = Some(receipts);
        self
    }

    /// Takes the generation's receipts, if its backend gives any: they outlive the stream, so a
    /// front end whose client went away still collects them.
    pub fn take_receipts(&mut self) -> Option<Receipts> {
        self.receipts.take()
    }

    /// The next event; `None` if the backend went away without a `Done`.
    pub async fn next(&mut self) -> Option<TokenEvent> {
        self.rx.next().await
    }
}

/// What a generation's workers signed once their sessions closed (after the last token, or
/// after the client went away), and every token the last stage drew: what the head reports on
/// chain (only workers that signed are paid or answer for the task) and what the transcript
/// records, so a validator can hold the transcript to the receipts' token digests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closed {
    /// The workers' signed receipts.
    pub receipts: Vec<SignedReceipt>,
    /// Every token drawn, in order: those delivered, then an end token or any drawn after the
    /// client went away.
    pub drawn: Vec<u32>,
}

/// Where a generation's [`Closed`] record will come.
#[derive(Debug)]
pub struct Receipts(oneshot::Receiver<Closed>);

/// Where a backend sends a generation's [`Closed`] record.
pub type ReceiptSender = oneshot::Sender<Closed>;

impl Receipts {
    /// A new pair of ends.
    pub fn channel() -> (ReceiptSender, Receipts) {
        let (tx, rx) = oneshot::channel();
        (tx, Self(rx))
    }

    /// The record; empty when the backend went away without sending it.
    pub async fn wait(self) -> Closed {
        self.0.await.unwrap_or_default()
    }
}

/// Where a generation will run: the workers that serve it, in pipeline order. Chosen before the task is opened, so the task names the workers that may serve it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The serving workers' on-chain keys; empty when the backend runs the model itself (the
    /// gateway's own worker key then stands for it).
    pub workers: Vec<PublicKey>,
    /// Which of the backend's deployments runs it (an id the backend gave it, which stays valid
    /// while the deployment is served).
    pub slot: usize,
}

/// Runs models for a front end. Implementations must be cheap to call from async code: the heavy
/// work belongs on their own threads or tasks, reached through the stream.
pub trait InferenceBackend: Send + Sync + 'static {
    /// The models served.
    fn models(&self) -> Vec<ModelCard>;

    /// Renders and tokenizes `prompt` for `model` (chat template for [`Prompt::Chat`]).
    fn tokenize(&self, model: &str, prompt: &Prompt) -> Result<Vec<u32>>;

    /// Starts generating after `prompt_ids`; tokens arrive on the stream.
    fn generate(&self, model: &str, prompt_ids: Vec<u32>, params: GenerationParams) -> Result<TokenStream>;

    /// Chooses where the next generation of `model` runs (default: the backend itself).
    fn place(&self, model: &str) -> Result<Placement> {
        let _ = model;
        Ok(Placement::default())
    }

    /// Stops placing generations on `placement`'s deployment: one of its workers can no longer be
    /// named on a task (default: nothing to stop).
    fn avoid(&self, placement: &Placement) {
        let _ = placement;
    }

    /// Starts generating on the deployment `placement` chose.
    fn generate_on(
        &self,
        model: &str,
        placement: &Placement,
        prompt_ids: Vec<u32>,
        params: GenerationParams,
    ) -> Result<TokenStream> {
        let _ = placement;
        self.generate(model, prompt_ids, params)
    }
}
