//! `polylink generate`: run a GGUF model locally on a prompt and print the answer.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use polylink_infer::{GenerateParams, Model, SamplingParams, generate};
use polylink_protocol::{ChatMessage, Prompt};

/// Generate text from a prompt with a local GGUF model.
#[derive(Args)]
pub struct GenerateCmd {
    /// The GGUF model file.
    #[arg(long)]
    model: PathBuf,
    /// The prompt (a user message, or the text to continue with --raw).
    #[arg(long)]
    prompt: String,
    /// Feed the prompt as is, with no chat template (special-token text in it is recognised).
    #[arg(long)]
    raw: bool,
    /// System prompt for chat templates.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Keep the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop before this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Also print the generated token ids, space-separated, on one line.
    #[arg(long)]
    print_ids: bool,
}

impl GenerateCmd {
    pub fn run(self) -> anyhow::Result<()> {
        if !(0.0..=100.0).contains(&self.temperature) || !(0.0..=1.0).contains(&self.top_p) {
            anyhow::bail!("--temperature must be in 0..=100 and --top-p in 0..=1");
        }
        let model = Model::open(&self.model, None, self.threads)
            .with_context(|| format!("loading {}", self.model.display()))?;
        // The operator's own text may hold special tokens on purpose with --raw; a chat message
        // is content, encoded as the gateway encodes it.
        let ids = if self.raw {
            model.tokenizer.encode(&self.prompt)
        } else {
            model.template.encode(
                &model.tokenizer,
                &Prompt::Chat(ChatMessage::first_turn(self.system.as_deref(), &self.prompt)),
            )
        };
        let params = GenerateParams {
            max_tokens: self.max_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
            },
            stop: self.stop,
            ignore_eos: false,
        };
        let mut out = std::io::stdout().lock();
        let g = generate(&model.shard, &model.tokenizer, &ids, &params, &mut |t| {
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        })?;
        writeln!(out)?;
        if self.print_ids {
            let line: Vec<String> = g.ids.iter().map(u32::to_string).collect();
            writeln!(out, "{}", line.join(" "))?;
        }
        let decode_tps = g.ids.len().saturating_sub(1) as f64 / g.decode_s.max(1e-9);
        tracing::info!(
            prompt_tokens = g.prompt_tokens,
            generated = g.ids.len(),
            finish = ?g.finish,
            prefill_tok_s = format!("{:.1}", g.prompt_tokens as f64 / g.prefill_s.max(1e-9)),
            decode_tok_s = format!("{decode_tps:.1}"),
            "done"
        );
        Ok(())
    }
}
