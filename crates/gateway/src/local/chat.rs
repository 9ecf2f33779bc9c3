//! Renders a whole conversation with the model's chat template (the engine's
//! [`ChatTemplate`] renders one turn; a conversation needs every turn in the same format).

use crate::backend::{ChatMessage, Prompt, Role};
use polylink_infer::{ChatTemplate, Tokenizer};

/// The token ids of `prompt`: raw text as is, chat messages rendered with `template` first.
pub fn encode(tokenizer: &Tokenizer, template: &ChatTemplate, prompt: &Prompt) -> Vec<u32> {
    match prompt {
        Prompt::Text(t) => tokenizer.encode(t),
        Prompt::Chat(messages) => tokenizer.encode(&render(template, messages)),
    }
}

/// The prompt text for `messages`, ending where the assistant's next answer starts.
pub fn render(template: &ChatTemplate, messages: &[ChatMessage]) -> String {
    let (system, turns) = match messages.split_first() {
        Some((first, rest)) if first.role == Role::System => (Some(first.content.as_str()), rest),
        _ => (None, messages),
    };
    let mut out = String::new();
    match template {
        ChatTemplate::ChatMl { default_system } => {
            if let Some(sys) = system.or(default_system.as_deref()) {
                out.push_str(&format!("<|im_start|>system\n{sys}<|im_end|>\n"));
            }
            for m in turns {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                out.push_str(&format!("<|im_start|>{role}\n{}<|im_end|>\n", m.content));
            }
            out.push_str("<|im_start|>assistant\n");
        }
        ChatTemplate::Gemma => {
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
        ChatTemplate::Raw => {
            // No template (a base model): the texts in order, instructions included.
            let parts: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
            out.push_str(&parts.join("\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> ChatMessage {
        ChatMessage { role, content: content.into() }
    }

    #[test]
    fn one_turn_matches_the_engine_and_history_keeps_every_turn() {
        let templates = [
            ChatTemplate::ChatMl { default_system: Some("You are SmolLM".into()) },
            ChatTemplate::ChatMl { default_system: None },
            ChatTemplate::Gemma,
            ChatTemplate::Raw,
        ];
        for t in &templates {
            assert_eq!(render(t, &[msg(Role::User, "Hi")]), t.render(None, "Hi"));
            let with_system = [msg(Role::System, "Be brief"), msg(Role::User, "Hi")];
            if *t != ChatTemplate::Raw {
                assert_eq!(render(t, &with_system), t.render(Some("Be brief"), "Hi"), "{t:?}");
            }
        }
        let chat = [msg(Role::User, "2+2?"), msg(Role::Assistant, "4"), msg(Role::User, "and 3+3?")];
        assert_eq!(
            render(&templates[1], &chat),
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n\
             <|im_start|>user\nand 3+3?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            render(&ChatTemplate::Gemma, &chat),
            "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n\
             <start_of_turn>user\nand 3+3?<end_of_turn>\n<start_of_turn>model\n"
        );
    }
}
