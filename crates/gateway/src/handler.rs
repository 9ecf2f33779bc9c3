//! `POST /v1/chat/completions` and `POST /v1/completions`: from raw request to a running,
//! billed generation. Every refusal happens before the task is opened, so it charges nothing.

use crate::billing::{MAX_PRICE_HEADER, Opening, Ticket};
use crate::error::{GatewayError, Result};
use crate::respond::{self, Run};
use crate::state::Gateway;
use crate::stop::StopFilter;
use crate::transcript_store::Draft;
use crate::validate;
use crate::wire::{Endpoint, Head};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use polylink_protocol::{Ending, GenerationParams, prompt_hash};
use polylink_types::{Amount, Hash32, VOUCHER_HEADER};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tracing::{info, warn};

/// Placements a request tries before it gives up on finding workers the chain still names.
const PLACEMENT_TRIES: usize = 3;

/// Handles one completion request on `endpoint`.
pub(crate) async fn completions(
    State(gw): State<Arc<Gateway>>,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match start(gw.clone(), endpoint, &headers, body).await {
        Ok(response) => response,
        Err(e) => {
            warn!(route = endpoint.path(), status = e.status().as_u16(), error = %e, "request refused");
            gw.metrics.request(endpoint.path(), e.status().as_u16());
            e.into_response()
        }
    }
}

async fn start(gw: Arc<Gateway>, endpoint: Endpoint, headers: &HeaderMap, body: Body) -> Result<Response> {
    let started = Instant::now();
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let voucher = match headers.get(VOUCHER_HEADER) {
        Some(v) => Some(v.to_str().map_err(|_| GatewayError::BadVoucher("the header is not text".into()))?),
        None => None,
    };
    let (account, key_permit) = gw.keys.authorize(auth, voucher, gw.billing.as_deref()).await?;
    let limit_bytes = gw.limits.body_bytes_max;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit_bytes) {
        return Err(GatewayError::BodyTooLarge { limit_bytes });
    }
    let bytes = read_body(body, limit_bytes).await?;
    if let Some(v) = &account.voucher
        && v.voucher.request_hash != Hash32::digest(&[bytes.as_slice()])
    {
        return Err(GatewayError::BadVoucher(
            "it signs another request body: request_hash must be sha256 of the exact body sent".into(),
        ));
    }
    let request = validate::parse(endpoint, &bytes, &gw.limits)?;
    let card = gw
        .backend
        .models()
        .into_iter()
        .find(|m| m.id == request.model)
        .ok_or_else(|| GatewayError::UnknownModel(request.model.clone()))?;
    let prompt_ids = gw.backend.tokenize(&request.model, &request.prompt)?;
    let max_tokens = request.params.max_tokens;
    let limit_tokens = gw.limits.prompt_tokens_max.min(card.context_tokens);
    if prompt_ids.len() > gw.limits.prompt_tokens_max || prompt_ids.len() + max_tokens > card.context_tokens {
        return Err(GatewayError::ContextLength {
            prompt_tokens: prompt_ids.len(),
            max_tokens,
            limit_tokens,
        });
    }
    let global_permit = gw
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| GatewayError::Busy { limit: gw.limits.requests_max })?;
    let prompt_tokens = u32::try_from(prompt_ids.len()).unwrap_or(u32::MAX);
    // A placement whose worker has just left (the chain refuses to name it) is avoided from then
    // on, and the task is opened on another.
    let mut tries = PLACEMENT_TRIES;
    let (placement, ticket) = loop {
        let placement = gw.backend.place(&request.model)?;
        let Some(billing) = &gw.billing else { break (placement, None) };
        let tokens_max = u32::try_from(prompt_ids.len() + max_tokens).unwrap_or(u32::MAX);
        let opening = Opening {
            model: &request.model,
            tokens_max,
            prompt_hash: prompt_hash(&prompt_ids),
            placement: &placement,
            seed: request.params.seed,
            max_price: max_price(headers)?,
        };
        match billing.open(&account, opening).await {
            Ok(ticket) => break (placement, Some(ticket)),
            Err(e @ GatewayError::WorkerUnavailable(_)) => {
                warn!(workers = ?placement.workers, "{e}; placing elsewhere");
                gw.backend.avoid(&placement);
                tries -= 1;
                if tries == 0 {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    };
    let transcript = (gw.transcripts.is_some() && ticket.is_some())
        .then(|| Draft::new(&request.model, &request.prompt, &prompt_ids, request.params));
    // The workers sign their receipts for the task this generation serves.
    let params = GenerationParams { task: ticket.as_ref().map(|t| t.task), ..request.params };
    let tokens = match gw.backend.generate_on(&request.model, &placement, prompt_ids, params) {
        Ok(t) => t,
        Err(e) => {
            // The task is open but nothing ran: report zero completion tokens so the escrow
            // beyond the prompt goes back at once.
            if let (Some(billing), Some(ticket)) = (gw.billing.clone(), ticket.clone()) {
                let record = (gw.transcripts.clone()).zip(transcript).map(|(store, draft)| {
                    (store, draft.finish(ticket.task, String::new(), Vec::new(), Ending::Failed))
                });
                respond::settle_in_background(billing, gw.metrics.clone(), ticket, prompt_tokens, record);
            }
            return Err(e.into());
        }
    };
    let head = Head::new(endpoint, &request.model, gw.seq.fetch_add(1, Relaxed));
    info!(
        id = %head.id, account = %account.address, model = %request.model, prompt_tokens, max_tokens,
        stream = request.stream, task = ?ticket.as_ref().map(|t: &Ticket| t.task), "generation started"
    );
    let run = Run::new(
        respond::RunParts {
            gw: gw.clone(),
            head,
            ticket,
            prompt_tokens,
            filter: StopFilter::new(request.stop),
            started,
            _permits: (key_permit, global_permit),
            transcript,
        },
        tokens,
    );
    Ok(if request.stream { respond::sse(run, request.include_usage) } else { respond::json(run).await })
}

/// Reads the body, refusing it as soon as it passes `limit_bytes`.
async fn read_body(body: Body, limit_bytes: usize) -> Result<Vec<u8>> {
    let mut frames = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| GatewayError::BadBody(format!("cannot read the request body: {e}")))?;
        if out.len() + frame.len() > limit_bytes {
            return Err(GatewayError::BodyTooLarge { limit_bytes });
        }
        out.extend_from_slice(&frame);
    }
    Ok(out)
}

/// The client's price cap ([`MAX_PRICE_HEADER`]), if it set one.
fn max_price(headers: &HeaderMap) -> Result<Option<Amount>> {
    let Some(value) = headers.get(MAX_PRICE_HEADER) else { return Ok(None) };
    let text = value.to_str().unwrap_or("");
    text.trim().parse::<Amount>().map(Some).map_err(|_| {
        GatewayError::invalid(
            "header",
            format!("{MAX_PRICE_HEADER} must be a whole number of base units per token, got {text:?}"),
        )
    })
}
