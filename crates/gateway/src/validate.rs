//! Request bodies checked field by field, so every bad input gets a 400 that names the field.
//!
//! Bodies are parsed as JSON values first (so malformed JSON, invalid UTF-8 and wrong types are
//! told apart), then each field is read with its type and range. Unknown fields are ignored, as
//! OpenAI-compatible servers do; known fields this server cannot honour are refused.

use crate::error::{GatewayError, Result};
use crate::limits::Limits;
use crate::wire::Endpoint;
use polylink_protocol::{ChatMessage, GenerationParams, Prompt, Role};
use serde_json::{Map, Value};

/// Most stop sequences per request (OpenAI's limit).
pub(crate) const STOP_SEQUENCES_MAX: usize = 4;
/// Longest stop sequence, bytes.
pub(crate) const STOP_BYTES_MAX: usize = 64;
/// Most chat messages per request.
pub(crate) const MESSAGES_MAX: usize = 256;

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValidRequest {
    /// The endpoint it came in on.
    pub endpoint: Endpoint,
    /// The model id asked for.
    pub model: String,
    /// What to continue.
    pub prompt: Prompt,
    /// Sampling and length.
    pub params: GenerationParams,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Answer as server-sent events.
    pub stream: bool,
    /// Send a usage chunk at the end of the stream.
    pub include_usage: bool,
}

/// Parses and checks a request body for `endpoint`.
pub(crate) fn parse(endpoint: Endpoint, body: &[u8], limits: &Limits) -> Result<ValidRequest> {
    let text = std::str::from_utf8(body)
        .map_err(|e| GatewayError::BadBody(format!("request body is not valid utf-8: {e}")))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| GatewayError::BadBody(format!("request body is not valid json: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(GatewayError::BadBody("request body must be a json object".into()));
    };
    refuse_unsupported(&obj)?;
    let model = string(&obj, "model")?.ok_or_else(|| GatewayError::invalid("model", "model is required"))?;
    let prompt = match endpoint {
        Endpoint::Chat => Prompt::Chat(messages(&obj)?),
        Endpoint::Completion => Prompt::Text(completion_prompt(&obj)?),
    };
    let (max_param, max_value) = match (number(&obj, "max_completion_tokens")?, number(&obj, "max_tokens")?) {
        (Some(v), _) => ("max_completion_tokens", Some(v)),
        (None, v) => ("max_tokens", v),
    };
    let max_tokens = match max_value {
        None => limits.max_tokens_default.min(limits.max_tokens_max),
        Some(v) if v.fract() == 0.0 && v >= 1.0 && v <= limits.max_tokens_max as f64 => v as usize,
        Some(v) => {
            let max = limits.max_tokens_max;
            return Err(GatewayError::invalid(
                max_param,
                format!("{max_param} must be an integer in 1..={max}, got {v}"),
            ));
        }
    };
    let temperature = ranged(&obj, "temperature", 0.0, 2.0, 1.0, true)?;
    let top_p = ranged(&obj, "top_p", 0.0, 1.0, 1.0, false)?;
    for penalty in ["presence_penalty", "frequency_penalty"] {
        if ranged(&obj, penalty, -2.0, 2.0, 0.0, true)? != 0.0 {
            return Err(GatewayError::Unsupported { param: penalty, message: "only 0 is supported".into() });
        }
    }
    if let Some(n) = number(&obj, "n")?
        && n != 1.0
    {
        return Err(GatewayError::Unsupported {
            param: "n",
            message: format!("only n = 1 is supported, got {n}"),
        });
    }
    let seed = match number(&obj, "seed")? {
        Some(s) if s.fract() == 0.0 && s.abs() < 9.0e18 => s as i64 as u64,
        Some(s) => return Err(GatewayError::invalid("seed", format!("seed must be an integer, got {s}"))),
        // No seed asked for: a fresh one. Either way it goes on chain with the task, so the
        // committee can reproduce the sampled answer token for token.
        None => rand::random(),
    };
    let stream = boolean(&obj, "stream")?.unwrap_or(false);
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) if stream => boolean(o, "include_usage")?.unwrap_or(false),
        Some(Value::Object(_)) => {
            return Err(GatewayError::invalid(
                "stream_options",
                "stream_options is only allowed when stream is true",
            ));
        }
        Some(_) => return Err(GatewayError::invalid("stream_options", "stream_options must be an object")),
    };
    let params = GenerationParams {
        max_tokens,
        temperature: temperature as f32,
        top_p: top_p as f32,
        seed,
        task: None,
    };
    Ok(ValidRequest { endpoint, model, prompt, params, stop: stop(&obj)?, stream, include_usage })
}

fn refuse_unsupported(obj: &Map<String, Value>) -> Result<()> {
    let on = |k: &str| match obj.get(k) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => {
            let plain_text = k == "response_format" && o.get("type") == Some(&Value::from("text"));
            !(o.is_empty() || plain_text)
        }
        Some(Value::Number(n)) => !(k == "best_of" && n.as_f64() == Some(1.0)),
        Some(_) => true,
    };
    for (param, what) in [
        ("logprobs", "log probabilities"),
        ("echo", "echoing the prompt"),
        ("suffix", "suffixes"),
        ("best_of", "best_of"),
        ("tools", "tool calls"),
        ("functions", "function calls"),
        ("logit_bias", "logit bias"),
        ("response_format", "response formats other than text"),
    ] {
        if on(param) {
            return Err(GatewayError::Unsupported { param, message: format!("{what} are not implemented") });
        }
    }
    Ok(())
}

fn type_error(param: &'static str, want: &str, got: &Value) -> GatewayError {
    let got = match got {
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
        Value::Null => "null",
    };
    GatewayError::invalid(param, format!("{param} must be {want}, got {got}"))
}

fn string(obj: &Map<String, Value>, param: &'static str) -> Result<Option<String>> {
    match obj.get(param) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(type_error(param, "a string", v)),
    }
}

fn number(obj: &Map<String, Value>, param: &'static str) -> Result<Option<f64>> {
    match obj.get(param) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            n.as_f64().map(Some).ok_or_else(|| GatewayError::invalid(param, "number out of range"))
        }
        Some(v) => Err(type_error(param, "a number", v)),
    }
}

fn boolean(obj: &Map<String, Value>, param: &'static str) -> Result<Option<bool>> {
    match obj.get(param) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(type_error(param, "a boolean", v)),
    }
}

/// A number in `lo..=hi` (or `lo<..=hi` when `lo_inclusive` is false), `default` when absent.
fn ranged(
    obj: &Map<String, Value>,
    param: &'static str,
    lo: f64,
    hi: f64,
    default: f64,
    lo_inclusive: bool,
) -> Result<f64> {
    let Some(v) = number(obj, param)? else { return Ok(default) };
    let above_lo = if lo_inclusive { v >= lo } else { v > lo };
    if above_lo && v <= hi {
        return Ok(v);
    }
    let open = if lo_inclusive { "[" } else { "(" };
    Err(GatewayError::invalid(param, format!("{param} must be in {open}{lo}, {hi}], got {v}")))
}

fn messages(obj: &Map<String, Value>) -> Result<Vec<ChatMessage>> {
    let list = match obj.get("messages") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => return Err(GatewayError::invalid("messages", "messages is required")),
        Some(v) => return Err(type_error("messages", "an array", v)),
    };
    if list.is_empty() || list.len() > MESSAGES_MAX {
        return Err(GatewayError::invalid(
            "messages",
            format!("messages must hold 1..={MESSAGES_MAX} items, got {}", list.len()),
        ));
    }
    let out = list.iter().map(message).collect::<Result<Vec<_>>>()?;
    if out.iter().all(|m| m.content.trim().is_empty()) {
        return Err(GatewayError::invalid(
            "messages",
            "the prompt is empty: every message has empty content",
        ));
    }
    Ok(out)
}

fn message(value: &Value) -> Result<ChatMessage> {
    let Value::Object(m) = value else { return Err(type_error("messages", "an array of objects", value)) };
    let role = match string(m, "role")?.as_deref() {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some(other) => {
            return Err(GatewayError::invalid(
                "messages",
                format!("unsupported role '{other}': use system, developer, user or assistant"),
            ));
        }
        None => return Err(GatewayError::invalid("messages", "every message needs a role")),
    };
    let content = match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None if role == Role::Assistant => String::new(),
        Some(Value::Array(parts)) => parts.iter().map(text_part).collect::<Result<Vec<_>>>()?.concat(),
        Some(v) => return Err(type_error("messages", "a message content string or array of text parts", v)),
        None => return Err(GatewayError::invalid("messages", "every message needs content")),
    };
    Ok(ChatMessage { role, content })
}

fn text_part(part: &Value) -> Result<String> {
    match part {
        Value::Object(p) if p.get("type") == Some(&Value::from("text")) => {
            string(p, "text")?.ok_or_else(|| GatewayError::invalid("messages", "a text part needs text"))
        }
        _ => Err(GatewayError::Unsupported {
            param: "messages",
            message: "only text content parts are supported".into(),
        }),
    }
}

fn completion_prompt(obj: &Map<String, Value>) -> Result<String> {
    let text = match obj.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => match a.as_slice() {
            [Value::String(s)] => s.clone(),
            _ => {
                return Err(GatewayError::Unsupported {
                    param: "prompt",
                    message: "the prompt must be one string".into(),
                });
            }
        },
        None | Some(Value::Null) => return Err(GatewayError::invalid("prompt", "prompt is required")),
        Some(v) => return Err(type_error("prompt", "a string", v)),
    };
    if text.is_empty() {
        return Err(GatewayError::invalid("prompt", "the prompt is empty"));
    }
    Ok(text)
}

fn stop(obj: &Map<String, Value>) -> Result<Vec<String>> {
    let list = match obj.get("stop") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| type_error("stop", "a string or array of strings", v))
            })
            .collect::<Result<_>>()?,
        Some(v) => return Err(type_error("stop", "a string or array of strings", v)),
    };
    if list.len() > STOP_SEQUENCES_MAX || list.iter().any(|s| s.is_empty() || s.len() > STOP_BYTES_MAX) {
        return Err(GatewayError::invalid(
            "stop",
            format!(
                "stop takes at most {STOP_SEQUENCES_MAX} non-empty sequences of at most {STOP_BYTES_MAX} bytes"
            ),
        ));
    }
    Ok(list)
}
