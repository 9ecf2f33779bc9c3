//! The crate's one error type, and how each error looks to an OpenAI client.

use crate::billing::MAX_PRICE_HEADER;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use polylink_protocol::ProtocolError;
use serde_json::json;

/// Result with [`GatewayError`].
pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

/// Everything that can go wrong serving a request, or starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No `Authorization: Bearer` header.
    #[error(
        "missing api key: send it as 'Authorization: Bearer <key>', or sign the request (header x-polylink-voucher)"
    )]
    MissingKey,
    /// The key is not one the gateway knows.
    #[error("incorrect api key provided: {masked}")]
    WrongKey {
        /// The key with most of it hidden.
        masked: String,
    },
    /// A signed request's voucher is malformed, not for this gateway or request, expired, used
    /// already, or does not cover the request.
    #[error("invalid voucher: {0}")]
    BadVoucher(String),
    /// The body is larger than the limit.
    #[error("request body exceeds {limit_bytes} bytes")]
    BodyTooLarge {
        /// The limit.
        limit_bytes: usize,
    },
    /// The body could not be read or is not valid JSON / UTF-8.
    #[error("{0}")]
    BadBody(String),
    /// A field is missing, has the wrong type or an unacceptable value.
    #[error("{message}")]
    InvalidParam {
        /// The field, as OpenAI names it.
        param: &'static str,
        /// What was wrong.
        message: String,
    },
    /// A field the gateway does not implement was asked for.
    #[error("{param} is not supported by this server: {message}")]
    Unsupported {
        /// The field.
        param: &'static str,
        /// What is supported instead.
        message: String,
    },
    /// The model is not served here.
    #[error("the model '{0}' does not exist or is not served by this gateway")]
    UnknownModel(String),
    /// The prompt (plus `max_tokens`) does not fit.
    #[error(
        "prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} exceeds the limit of {limit_tokens} tokens"
    )]
    ContextLength {
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Completion tokens asked for.
        max_tokens: usize,
        /// The limit that was hit.
        limit_tokens: usize,
    },
    /// The key already has its maximum of requests in flight.
    #[error("too many concurrent requests for this api key (limit {limit})")]
    TooManyRequests {
        /// Concurrent requests allowed per key.
        limit: usize,
    },
    /// The whole gateway is at capacity.
    #[error("the server is at capacity ({limit} requests in flight); retry later")]
    Busy {
        /// Requests allowed in flight.
        limit: usize,
    },
    /// The account cannot pay the escrow.
    #[error("insufficient balance: {0}")]
    InsufficientBalance(String),
    /// The model's price per token is above the cap the client set.
    #[error("the price of {price} per token is above your cap of {max} (header {MAX_PRICE_HEADER})")]
    PriceAboveMax {
        /// The chain's current price, base units per token.
        price: u128,
        /// The client's cap.
        max: u128,
    },
    /// The chain refused or could not be reached.
    #[error("billing failed: {0}")]
    Billing(String),
    /// A worker of the chosen placement can no longer be named on a task (it left: unbonded
    /// under the minimum, or is no longer registered); another placement may serve.
    #[error("no worker can take the task now: {0}")]
    WorkerUnavailable(String),
    /// The inference backend failed.
    #[error("inference failed: {0}")]
    Backend(String),
    /// Loading a model or configuration failed at startup.
    #[error("{0}")]
    Setup(String),
    /// Binding or serving the socket failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl GatewayError {
    /// A 400 for `param` with `message`.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidParam { param, message: message.into() }
    }

    /// The HTTP status OpenAI uses for this kind of error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey | Self::WrongKey { .. } | Self::BadVoucher(_) => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadBody(_)
            | Self::InvalidParam { .. }
            | Self::Unsupported { .. }
            | Self::ContextLength { .. } => StatusCode::BAD_REQUEST,
            Self::UnknownModel(_) => StatusCode::NOT_FOUND,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::InsufficientBalance(_) | Self::PriceAboveMax { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::Busy { .. } | Self::WorkerUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Billing(_) => StatusCode::BAD_GATEWAY,
            Self::Backend(_) | Self::Setup(_) | Self::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingKey | Self::WrongKey { .. } => "invalid_request_error",
            Self::TooManyRequests { .. } => "rate_limit_error",
            Self::InsufficientBalance(_) => "insufficient_quota",
            Self::Busy { .. }
            | Self::Billing(_)
            | Self::WorkerUnavailable(_)
            | Self::Backend(_)
            | Self::Setup(_)
            | Self::Io(_) => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// OpenAI's `param` field.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::InvalidParam { param, .. } | Self::Unsupported { param, .. } => Some(param),
            Self::UnknownModel(_) => Some("model"),
            Self::ContextLength { .. } => Some("messages"),
            _ => None,
        }
    }

    /// OpenAI's `code` field.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::MissingKey => Some("missing_api_key"),
            Self::WrongKey { .. } => Some("invalid_api_key"),
            Self::BadVoucher(_) => Some("invalid_voucher"),
            Self::BodyTooLarge { .. } => Some("request_too_large"),
            Self::BadBody(_) => Some("invalid_json"),
            Self::InvalidParam { .. } => Some("invalid_value"),
            Self::Unsupported { .. } => Some("unsupported_parameter"),
            Self::UnknownModel(_) => Some("model_not_found"),
            Self::ContextLength { .. } => Some("context_length_exceeded"),
            Self::TooManyRequests { .. } => Some("rate_limit_exceeded"),
            Self::InsufficientBalance(_) => Some("insufficient_quota"),
            Self::PriceAboveMax { .. } => Some("price_above_max"),
            _ => None,
        }
    }

    /// The JSON body: `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.to_string(),
            "type": self.kind(),
            "param": self.param(),
            "code": self.code(),
        }})
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self.body())).into_response()
    }
}

impl From<ProtocolError> for GatewayError {
    /// A backend's refusal as the client sees it: an unknown model is a 404, the rest are the
    /// server's failures.
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::UnknownModel(model) => Self::UnknownModel(model),
            ProtocolError::Backend(message) => Self::Backend(message),
            ProtocolError::Setup(message) => Self::Setup(message),
            e @ (ProtocolError::MissingHeader(_) | ProtocolError::BadHeader { .. }) => {
                Self::invalid("header", e.to_string())
            }
        }
    }
}
