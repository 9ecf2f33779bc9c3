//! What a model is asked to continue: raw text, or chat messages that the model's own chat
//! template renders (see `polylink_infer::ChatTemplate`).

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A conversation's first turn: one user message, after a system prompt if one is given.
    pub fn first_turn(system: Option<&str>, user: &str) -> Vec<Self> {
        let message = |role, content: &str| Self { role, content: content.to_string() };
        let mut messages: Vec<Self> = system.map(|s| message(Role::System, s)).into_iter().collect();
        messages.push(message(Role::User, user));
        messages
    }
}

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions (OpenAI's `system` and `developer`).
    System,
    /// The user.
    User,
    /// The model's earlier answers.
    Assistant,
}

impl Role {
    /// The role's name in transcripts (`system`, `user`, `assistant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// The role named `name` (as [`Role::as_str`] spells it), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "system" => Some(Self::System),
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            _ => None,
        }
    }
}

/// What the model is asked to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// `/v1/completions`: raw text, no template.
    Text(String),
    /// `/v1/chat/completions`: messages rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
}
