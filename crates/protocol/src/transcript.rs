//! The transcript record: what a gateway keeps of one billed request, and what a validator on
//! the task's committee fetches (as JSON) to score it.

use crate::backend::GenerationParams;
use crate::prompt::{ChatMessage, Prompt, Role};
use polylink_types::TaskId;
use serde::{Deserialize, Serialize};

/// The prompt as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptRecord {
    /// `/v1/completions`: raw text.
    Text {
        /// The text.
        text: String,
    },
    /// `/v1/chat/completions`: the messages, rendered with the model's chat template.
    Chat {
        /// `(role, content)` in order; role is `system`, `user` or `assistant`.
        messages: Vec<(String, String)>,
    },
}

impl PromptRecord {
    /// The record of `prompt`.
    pub fn of(prompt: &Prompt) -> Self {
        match prompt {
            Prompt::Text(text) => Self::Text { text: text.clone() },
            Prompt::Chat(messages) => Self::Chat {
                messages: messages.iter().map(|m| (m.role.as_str().to_string(), m.content.clone())).collect(),
            },
        }
    }

    /// The prompt this record was made from; `None` if a role is unknown (a record the gateway
    /// never wrote).
    pub fn to_prompt(&self) -> Option<Prompt> {
        match self {
            Self::Text { text } => Some(Prompt::Text(text.clone())),
            Self::Chat { messages } => {
                let message = |(role, content): &(String, String)| {
                    Some(ChatMessage { role: Role::from_name(role)?, content: content.clone() })
                };
                messages.iter().map(message).collect::<Option<Vec<_>>>().map(Prompt::Chat)
            }
        }
    }

    /// The question the text evaluators read: the last user message of a chat (the one being
    /// answered), or a completion's text.
    pub fn question(&self) -> String {
        match self {
            Self::Text { text } => text.clone(),
            Self::Chat { messages } => {
                let last_user = messages.iter().rev().find(|(role, _)| role == "user");
                last_user.or(messages.last()).map(|(_, content)| content.clone()).unwrap_or_default()
            }
        }
    }
}

/// How an answer ended, as the gateway that served it saw it.
///
/// The first three are the model's own endings and are checked as such; the last three are cuts
/// made by someone else (the client, the backend, the gateway's clock): the answer is judged on
/// the tokens delivered, with no claim about how it would have ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The model's end-of-generation token.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// One of the client's stop sequences (the text ends where it began).
    StopSequence,
    /// The client went away before the answer ended.
    Cancelled,
    /// The backend failed mid-answer.
    Failed,
    /// The gateway's request timeout ended it.
    TimedOut,
}

impl Ending {
    /// Whether the answer was cut short by someone other than the model.
    pub fn cut_short(self) -> bool {
        matches!(self, Self::Cancelled | Self::Failed | Self::TimedOut)
    }
}

/// What the gateway keeps of one billed request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// The task on chain.
    pub task: TaskId,
    /// The gateway's model id.
    pub model: String,
    /// Prompt token ids (their hash is the task's `prompt_hash`).
    pub prompt_ids: Vec<u32>,
    /// The prompt as sent.
    pub prompt: PromptRecord,
    /// Completion tokens asked for.
    pub max_tokens: u32,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// How the answer ended.
    pub finish: Ending,
    /// The output text delivered (its sha256 is the result's `output_hash`).
    pub output: String,
    /// The ids of the tokens generated for it, when they spell exactly the delivered text (empty
    /// otherwise, e.g. when a stop sequence cut a token).
    #[serde(default)]
    pub output_ids: Vec<u32>,
    /// Every token the last stage drew, in order (the delivered ones, then an end token or any
    /// drawn after the client went away): what the workers' receipts commit to.
    #[serde(default)]
    pub drawn_ids: Vec<u32>,
}

impl Transcript {
    /// The transcript of a request on `task` for `model`, once its output and ending are known.
    pub fn new(
        task: TaskId,
        model: &str,
        prompt: &Prompt,
        prompt_ids: &[u32],
        params: GenerationParams,
        output: String,
        finish: Ending,
    ) -> Self {
        Self {
            task,
            model: model.to_string(),
            prompt_ids: prompt_ids.to_vec(),
            prompt: PromptRecord::of(prompt),
            max_tokens: u32::try_from(params.max_tokens).unwrap_or(u32::MAX),
            temperature: params.temperature,
            top_p: params.top_p,
            finish,
            output,
            output_ids: Vec::new(),
            drawn_ids: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_record_gives_back_its_prompt_and_question() {
        let chat = Prompt::Chat(vec![
            ChatMessage { role: Role::System, content: "Be brief".into() },
            ChatMessage { role: Role::User, content: "2+2?".into() },
            ChatMessage { role: Role::Assistant, content: "4".into() },
        ]);
        let record = PromptRecord::of(&chat);
        assert_eq!(record.to_prompt(), Some(chat));
        assert_eq!(record.question(), "2+2?");
        let odd = PromptRecord::Chat { messages: vec![("tool".into(), "x".into())] };
        assert_eq!(odd.to_prompt(), None);
        let json = serde_json::to_string(&PromptRecord::Text { text: "Once".into() }).unwrap_or_default();
        assert_eq!(json, r#"{"kind":"text","text":"Once"}"#);
    }
}
