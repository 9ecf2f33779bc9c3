//! Chat templates: ChatML and Gemma turns, chosen from the GGUF metadata, or raw text. This is the
//! one place a conversation becomes prompt text: the gateway's backends tokenize requests with it
//! and the validators re-derive the hashed prompt ids with it.

use crate::model::config::Arch;
use crate::tokenizer::Tokenizer;
use polylink_protocol::{ChatMessage, Prompt, Role};

/// How a conversation becomes a prompt.
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

    /// The prompt text for one user message (and an optional system prompt). Without a template
    /// (a base model) it is the user's text alone.
    pub fn render(&self, system: Option<&str>, user: &str) -> String {
        if *self == Self::Raw {
            return user.to_string();
        }
        let message = |role, content: &str| ChatMessage { role, content: content.to_string() };
        let mut messages: Vec<ChatMessage> = system.map(|s| message(Role::System, s)).into_iter().collect();
        messages.push(message(Role::User, user));
        self.render_chat(&messages)
    }

    /// The prompt text for `messages`, ending where the assistant's next answer starts.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> String {
        let (system, turns) = match messages.split_first() {
            Some((first, rest)) if first.role == Role::System => (Some(first.content.as_str()), rest),
            _ => (None, messages),
        };
        let mut out = String::new();
        match self {
            Self::ChatMl { default_system } => {
                if let Some(sys) = system.or(default_system.as_deref()) {
                    out.push_str(&format!("<|im_start|>system\n{sys}<|im_end|>\n"));
                }
                for m in turns {
                    out.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", m.role.as_str(), m.content));
                }
                out.push_str("<|im_start|>assistant\n");
            }
            Self::Gemma => {
                // Gemma has no system role: instructions open the first user turn.
                let mut pending_system = system.map(str::to_string);
                for m in turns {
                    let (role, text) = match m.role {
                        Role::Assistant => ("model", m.content.clone()),
                        Role::User | Role::System => match pending_system.take() {
                            Some(sys) => ("user", format!("{sys}\n\n{}", m.content)),
                            None => ("user", m.content.clone()),
                        },
                    };
                    out.push_str(&format!("<start_of_turn>{role}\n{text}<end_of_turn>\n"));
                }
                out.push_str("<start_of_turn>model\n");
            }
            Self::Raw => {
                // No template (a base model): the texts in order, instructions included.
                let parts: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
                out.push_str(&parts.join("\n"));
            }
        }
        out
    }

    /// The token ids of `prompt`: raw text as is, chat messages rendered with this template first.
    pub fn encode(&self, tokenizer: &Tokenizer, prompt: &Prompt) -> Vec<u32> {
        match prompt {
            Prompt::Text(t) => tokenizer.encode(t),
            Prompt::Chat(messages) => tokenizer.encode(&self.render_chat(messages)),
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

    fn msg(role: Role, content: &str) -> ChatMessage {
        ChatMessage { role, content: content.into() }
    }

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
        assert_eq!(
            ChatTemplate::Gemma.render(Some("Be brief"), "Hi"),
            "<start_of_turn>user\nBe brief\n\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(ChatTemplate::Raw.render(Some("Be brief"), "Hi"), "Hi");
    }

    #[test]
    fn a_conversation_keeps_every_turn() {
        let chat = [msg(Role::User, "2+2?"), msg(Role::Assistant, "4"), msg(Role::User, "and 3+3?")];
        assert_eq!(
            ChatTemplate::ChatMl { default_system: None }.render_chat(&chat),
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n\
             <|im_start|>user\nand 3+3?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            ChatTemplate::Gemma.render_chat(&chat),
            "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n\
             <start_of_turn>user\nand 3+3?<end_of_turn>\n<start_of_turn>model\n"
        );
        let with_system = [msg(Role::System, "Be brief"), msg(Role::User, "Hi")];
        assert_eq!(ChatTemplate::Raw.render_chat(&with_system), "Be brief\nHi");
    }
}
