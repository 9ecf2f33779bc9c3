//! Chat templates: ChatML and Gemma turns, chosen from the GGUF metadata, or raw text.

use crate::model::config::Arch;
use crate::tokenizer::Tokenizer;

/// How a user message becomes a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>role\n…<|im_end|>\n`, with the template's default system prompt if any.
    ChatMl {
        /// System prompt the GGUF's template inserts when none is given.
        default_system: Option<String>,
    },
    /// `<start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n`.
    Gemma,
    /// The text as given.
    Raw,
}

impl ChatTemplate {
    /// The template the model's metadata implies.
    pub fn detect(tok: &Tokenizer, arch: Arch) -> Self {
        let src = tok.chat_template().unwrap_or("");
        if src.contains("<|im_start|>") {
            return Self::ChatMl { default_system: default_system(src) };
        }
        if src.contains("<start_of_turn>")
            || (arch == Arch::Gemma3 && tok.token_id("<start_of_turn>").is_some())
        {
            return Self::Gemma;
        }
        if tok.token_id("<|im_start|>").is_some() {
            return Self::ChatMl { default_system: None };
        }
        Self::Raw
    }

    /// The prompt text for one user message (and an optional system prompt).
    pub fn render(&self, system: Option<&str>, user: &str) -> String {
        match self {
            Self::Raw => user.to_string(),
            Self::ChatMl { default_system } => {
                let mut s = String::new();
                if let Some(sys) = system.or(default_system.as_deref()) {
                    s.push_str(&format!("<|im_start|>system\n{sys}<|im_end|>\n"));
                }
                s.push_str(&format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"));
                s
            }
            Self::Gemma => {
                let body = match system {
                    Some(sys) => format!("{sys}\n\n{user}"),
                    None => user.to_string(),
                };
                format!("<start_of_turn>user\n{body}<end_of_turn>\n<start_of_turn>model\n")
            }
        }
    }
}

/// The system prompt a ChatML template hard-codes for conversations without one.
fn default_system(src: &str) -> Option<String> {
    let start = src.find("<|im_start|>system\n")? + "<|im_start|>system\n".len();
    let len = src[start..].find("<|im_end|>")?;
    let s = &src[start..start + len];
    (!s.contains("{{") && !s.contains("{%")).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_takes_the_default_system_prompt_from_the_template() {
        let src = "{{ '<|im_start|>system\nYou are SmolLM<|im_end|>\n' }}{% for m in messages %}";
        let t = ChatTemplate::ChatMl { default_system: default_system(src) };
        assert_eq!(
            t.render(None, "Hi"),
            "<|im_start|>system\nYou are SmolLM<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            ChatTemplate::Gemma.render(None, "Hi"),
            "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
    }
}
