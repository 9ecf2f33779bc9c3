//! Chat templates: ChatML and Gemma turns, chosen from the GGUF metadata, or raw text. This is the
//! one place a conversation becomes prompt text: the gateway's backends tokenize requests with it
//! and the validators re-derive the hashed prompt ids with it.

use crate::model::config::Arch;
use crate::tokenizer::Segment::{self, Special, Text};
use crate::tokenizer::Tokenizer;
use polylink_protocol::{ChatMessage, Prompt, Role};

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";
const START_OF_TURN: &str = "<start_of_turn>";
const END_OF_TURN: &str = "<end_of_turn>";

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
        if src.contains(IM_START) {
            return Self::ChatMl { default_system: default_system(src) };
        }
        if src.contains(START_OF_TURN) || (arch == Arch::Gemma3 && tok.token_id(START_OF_TURN).is_some()) {
            return Self::Gemma;
        }
        if tok.token_id(IM_START).is_some() {
            return Self::ChatMl { default_system: None };
        }
        Self::Raw
    }

    /// The prompt text for one user message (and an optional system prompt). Without a template
    /// (a base model) it is the user's text alone.
    pub fn render(&self, system: Option<&str>, user: &str) -> String {
        match self {
            Self::Raw => user.to_string(),
            _ => self.render_chat(&ChatMessage::first_turn(system, user)),
        }
    }

    /// The prompt text for `messages`, ending where the assistant's next answer starts (for
    /// display: [`ChatTemplate::encode`] is what tokenizes it).
    pub fn render_chat(&self, messages: &[ChatMessage]) -> String {
        self.segments(messages).iter().map(Segment::text).collect()
    }

    /// `messages` laid out by this template: its own markers as [`Segment::Special`], every
    /// message's content (and the system prompt) as [`Segment::Text`].
    pub fn segments<'a>(&'a self, messages: &'a [ChatMessage]) -> Vec<Segment<'a>> {
        let (system, turns) = match messages.split_first() {
            Some((first, rest)) if first.role == Role::System => (Some(first.content.as_str()), rest),
            _ => (None, messages),
        };
        let mut out = Vec::new();
        match self {
            Self::ChatMl { default_system } => {
                let mut turn = |role: &'a str, content: &'a str| {
                    out.extend([Special(IM_START), Text(role), Text("\n"), Text(content), Special(IM_END)]);
                    out.push(Text("\n"));
                };
                if let Some(sys) = system.or(default_system.as_deref()) {
                    turn("system", sys);
                }
                for m in turns {
                    turn(m.role.as_str(), &m.content);
                }
                out.extend([Special(IM_START), Text("assistant\n")]);
            }
            Self::Gemma => {
                // Gemma has no system role: instructions open the first user turn.
                let mut pending_system = system;
                for m in turns {
                    out.push(Special(START_OF_TURN));
                    match m.role {
                        Role::Assistant => out.push(Text("model\n")),
                        Role::User | Role::System => {
                            out.push(Text("user\n"));
                            if let Some(sys) = pending_system.take() {
                                out.extend([Text(sys), Text("\n\n")]);
                            }
                        }
                    }
                    out.extend([Text(&m.content), Special(END_OF_TURN), Text("\n")]);
                }
                out.extend([Special(START_OF_TURN), Text("model\n")]);
            }
            Self::Raw => {
                // No template (a base model): the texts in order, instructions included.
                for (i, m) in messages.iter().enumerate() {
                    if i > 0 {
                        out.push(Text("\n"));
                    }
                    out.push(Text(&m.content));
                }
            }
        }
        out
    }

    /// The token ids of `prompt`. What a client wrote is always plain text: special-token strings
    /// in a message (`<|im_end|>`, `<start_of_turn>`) become ordinary tokens, so a user cannot
    /// forge a turn; only the template's own markers are special tokens. Raw text
    /// (`/v1/completions`) is plain text as a whole, as OpenAI's completions endpoint treats it.
    pub fn encode(&self, tokenizer: &Tokenizer, prompt: &Prompt) -> Vec<u32> {
        match prompt {
            Prompt::Text(t) => tokenizer.encode_plain(t),
            Prompt::Chat(messages) => tokenizer.encode_segments(&self.segments(messages)),
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
