//! Turning a running generation into an answer: one JSON object, or server-sent events that end
//! with `data: [DONE]`. A [`Run`] counts what reached the client and settles the task exactly
//! once — at the end, or when it is dropped because the client went away mid-stream.

use crate::billing::{Billing, Charge, Ticket, UsageReport, charge_for};
use crate::error::GatewayError;
use crate::metrics::{InFlight, Metrics};
use crate::state::Gateway;
use crate::stop::StopFilter;
use crate::transcript_store::Draft;
use crate::transcripts::Transcripts;
use crate::wire::{Head, Usage};
use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use polylink_protocol::{Ending, FinishReason, Receipts, TokenEvent, TokenStream, Transcript, output_hash};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

/// What a [`Run`] is made of.
pub(crate) struct RunParts {
    /// The gateway.
    pub gw: Arc<Gateway>,
    /// Ids shared by the response's objects.
    pub head: Head,
    /// The open task, when billing is on.
    pub ticket: Option<Ticket>,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Stop sequences.
    pub filter: StopFilter,
    /// When the request arrived.
    pub started: Instant,
    /// The key's and the gateway's request slots, held until the run ends.
    pub _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    /// The request's side of its transcript, when the gateway keeps transcripts.
    pub transcript: Option<Draft>,
}

/// What the next step of a run produced.
#[derive(Debug)]
pub(crate) enum Step {
    /// Text for the client.
    Text(String),
    /// The end.
    Finish(FinishReason),
    /// The backend failed.
    Failed(String),
}

/// A generation being answered.
pub(crate) struct Run {
    parts: RunParts,
    tokens: Option<TokenStream>,
    pending_finish: Option<FinishReason>,
    deadline: tokio::time::Instant,
    generated: u32,
    delivered: u32,
    text: String,
    ids: Vec<u32>,
    settled: bool,
    ending: Option<Ending>,
    /// The workers' receipts, signed once their sessions close (after the end, or after the
    /// client went away): taken before the stream is dropped, so they still arrive then.
    receipts: Option<Receipts>,
    _in_flight: InFlight,
}

impl Run {
    /// Starts answering the generation `tokens`.
    pub(crate) fn new(parts: RunParts, mut tokens: TokenStream) -> Self {
        let timeout = Duration::from_millis(parts.gw.limits.request_timeout_ms);
        let deadline = tokio::time::Instant::from_std(parts.started) + timeout;
        let in_flight = parts.gw.metrics.in_flight();
        let receipts = tokens.take_receipts();
        Self {
            parts,
            tokens: Some(tokens),
            pending_finish: None,
            deadline,
            generated: 0,
            delivered: 0,
            text: String::new(),
            ids: Vec::new(),
            settled: false,
            ending: None,
            receipts,
            _in_flight: in_flight,
        }
    }

    /// The next piece of the answer.
    pub(crate) async fn next(&mut self) -> Step {
        if let Some(f) = self.pending_finish.take() {
            return Step::Finish(f);
        }
        loop {
            let Some(tokens) = self.tokens.as_mut() else { return Step::Finish(FinishReason::Stop) };
            let event = match tokio::time::timeout_at(self.deadline, tokens.next()).await {
                Ok(event) => event,
                Err(_) => {
                    // The client sees `length` (OpenAI has no other word for it); the record
                    // says the gateway's clock cut it, so the worker is not judged a truncator.
                    warn!(id = %self.parts.head.id, "generation hit the request timeout");
                    let tail = self.parts.filter.finish();
                    let step = self.end(tail, FinishReason::Length);
                    self.ending = Some(Ending::TimedOut);
                    return step;
                }
            };
            match event {
                Some(TokenEvent::Token { text, id }) => {
                    self.ids.push(id);
                    if self.generated == 0 {
                        self.parts.gw.metrics.first_token(self.parts.started.elapsed());
                    }
                    self.generated += 1;
                    let released = self.parts.filter.push(&text);
                    if released.stopped {
                        let step = self.end(released.text, FinishReason::Stop);
                        self.ending = Some(Ending::StopSequence);
                        return step;
                    }
                    if !released.text.is_empty() {
                        return Step::Text(released.text);
                    }
                }
                Some(TokenEvent::Done(finish)) => {
                    let tail = self.parts.filter.finish();
                    return self.end(tail, finish);
                }
                Some(TokenEvent::Failed(message)) => {
                    self.tokens = None;
                    self.ending = Some(Ending::Failed);
                    return Step::Failed(message);
                }
                None => {
                    self.tokens = None;
                    self.ending = Some(Ending::Failed);
                    return Step::Failed("the inference backend stopped without finishing".into());
                }
            }
        }
    }

    /// Ends the generation (dropping the stream cancels it) after releasing `tail`.
    fn end(&mut self, tail: String, finish: FinishReason) -> Step {
        self.tokens = None;
        self.ending = Some(match finish {
            FinishReason::Stop => Ending::Stop,
            FinishReason::Length => Ending::Length,
        });
        if tail.is_empty() {
            Step::Finish(finish)
        } else {
            self.pending_finish = Some(finish);
            Step::Text(tail)
        }
    }

    /// Records that `text` (and every token generated so far) reached the client.
    pub(crate) fn delivered(&mut self, text: &str) {
        self.delivered = self.generated;
        self.text.push_str(text);
    }

    /// Token counts so far.
    pub(crate) fn usage(&self) -> Usage {
        Usage::new(self.parts.prompt_tokens, self.delivered)
    }

    /// Settles once: metrics, and the task's result on chain with the tokens delivered.
    pub(crate) fn settle(&mut self, cancelled: bool) -> Option<Charge> {
        if self.settled {
            return None;
        }
        self.settled = true;
        self.tokens = None;
        let gw = &self.parts.gw;
        gw.metrics.generation(
            self.parts.prompt_tokens,
            self.delivered,
            self.parts.started.elapsed(),
            cancelled,
        );
        info!(
            id = %self.parts.head.id, prompt_tokens = self.parts.prompt_tokens, completion_tokens = self.delivered,
            generated = self.generated, cancelled, elapsed_ms = self.parts.started.elapsed().as_millis() as u64,
            "generation ended"
        );
        let (billing, ticket) = (gw.billing.clone()?, self.parts.ticket.clone()?);
        let usage = UsageReport {
            output_hash: output_hash(&self.text),
            prompt_tokens: self.parts.prompt_tokens,
            completion_tokens: self.delivered,
            receipts: Vec::new(),
        };
        let charge = charge_for(&ticket, &usage);
        // A run that never reached an ending was cut short by its client going away.
        let finish = self.ending.unwrap_or(Ending::Cancelled);
        // The delivered tokens' ids, unless a stop sequence cut one (the validator re-tokenizes
        // then; it also checks that the ids spell the text).
        let mut ids = std::mem::take(&mut self.ids);
        ids.truncate(self.delivered as usize);
        if finish == Ending::StopSequence {
            ids.clear();
        }
        let transcript = (gw.transcripts.clone())
            .zip(self.parts.transcript.take())
            .map(|(store, draft)| (store, draft.finish(ticket.task, self.text.clone(), ids, finish)));
        spawn_close(billing, gw.metrics.clone(), ticket, usage, self.receipts.take(), transcript);
        Some(charge)
    }

    /// Headers every answer carries: ids, and the task and its price when billed.
    fn headers(&self, charge: Option<Charge>) -> Vec<(HeaderName, String)> {
        let mut h = vec![(HeaderName::from_static("x-request-id"), self.parts.head.id.clone())];
        match &self.parts.ticket {
            Some(t) => {
                h.push((HeaderName::from_static("x-polylink-billing"), "on".into()));
                h.push((HeaderName::from_static("x-polylink-task-id"), t.task.to_string()));
                h.push((
                    HeaderName::from_static("x-polylink-price-per-token"),
                    t.price_per_token.to_string(),
                ));
                h.push((HeaderName::from_static("x-polylink-escrow"), t.escrow.to_string()));
            }
            None => h.push((HeaderName::from_static("x-polylink-billing"), "off".into())),
        }
        if let Some(c) = charge {
            h.push((HeaderName::from_static("x-polylink-charge"), c.amount.to_string()));
        }
        h
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.settled {
            info!(id = %self.parts.head.id, delivered = self.delivered, "client went away; generation stopped");
            self.settle(true);
        }
    }
}

/// A transcript and the store it goes to once the result is on chain.
pub(crate) type Record = (Arc<Transcripts>, Transcript);

/// How long the result waits for the workers' receipts (their stages close the session after the
/// last token; a stage that does not answer within its call timeout is skipped).
const RECEIPTS_WAIT: Duration = Duration::from_secs(60);

fn spawn_close(
    billing: Arc<dyn Billing>,
    metrics: Arc<Metrics>,
    ticket: Ticket,
    mut usage: UsageReport,
    receipts: Option<Receipts>,
    mut transcript: Option<Record>,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        warn!(task = %ticket.task, "no runtime to report the result on; the escrow will be reclaimable after the deadline");
        return;
    };
    runtime.spawn(async move {
        if let Some(receipts) = receipts {
            match tokio::time::timeout(RECEIPTS_WAIT, receipts.wait()).await {
                Ok(closed) => {
                    usage.receipts = closed.receipts;
                    // What the receipts' token digests commit to.
                    if let Some((_, t)) = transcript.as_mut() {
                        t.drawn_ids = closed.drawn;
                    }
                }
                Err(_) => warn!(task = %ticket.task, "the workers' receipts did not come"),
            }
        }
        match billing.close(&ticket, usage).await {
            Ok(charge) => {
                metrics.charged(charge.amount);
                info!(task = %ticket.task, charge = %charge.amount, "task settled");
                if let Some((store, t)) = transcript {
                    store.record(t);
                }
            }
            Err(e) => warn!(task = %ticket.task, error = %e, "reporting the result failed"),
        }
    });
}

/// Reports a task whose generation never started (nothing delivered), with its transcript (an
/// empty output that ended [`Ending::Failed`]) when the gateway keeps them.
pub(crate) fn settle_in_background(
    billing: Arc<dyn Billing>,
    metrics: Arc<Metrics>,
    ticket: Ticket,
    prompt_tokens: u32,
    transcript: Option<Record>,
) {
    let usage = UsageReport {
        output_hash: output_hash(""),
        prompt_tokens,
        completion_tokens: 0,
        receipts: Vec::new(),
    };
    spawn_close(billing, metrics, ticket, usage, None, transcript);
}

fn with_headers(mut response: Response, headers: Vec<(HeaderName, String)>) -> Response {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

/// Collects the whole answer into one JSON object.
pub(crate) async fn json(mut run: Run) -> Response {
    let mut text = String::new();
    let finish = loop {
        match run.next().await {
            Step::Text(t) => text.push_str(&t),
            Step::Finish(f) => break f,
            Step::Failed(message) => {
                run.settle(false);
                let e = GatewayError::Backend(message);
                run.parts.gw.metrics.request(run.parts.head.endpoint.path(), e.status().as_u16());
                let headers = run.headers(None);
                return with_headers(e.into_response(), headers);
            }
        }
    };
    run.delivered(&text);
    let charge = run.settle(false);
    run.parts.gw.metrics.request(run.parts.head.endpoint.path(), 200);
    let body = run.parts.head.full(&text, finish, run.usage());
    with_headers(axum::Json(body).into_response(), run.headers(charge))
}

enum Phase {
    First,
    Body,
    Usage,
    Done,
    End,
}

fn event(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// Streams the answer as server-sent events.
pub(crate) fn sse(run: Run, include_usage: bool) -> Response {
    let headers = run.headers(None);
    run.parts.gw.metrics.request(run.parts.head.endpoint.path(), 200);
    let stream = futures::stream::unfold((run, Phase::First), move |(mut run, phase)| async move {
        let head = run.parts.head.clone();
        let (bytes, next) = match phase {
            Phase::First => (event(&head.chunk(Some(""), true, None)), Phase::Body),
            Phase::Body => match run.next().await {
                Step::Text(t) => {
                    run.delivered(&t);
                    (event(&head.chunk(Some(&t), false, None)), Phase::Body)
                }
                Step::Finish(f) => {
                    run.delivered("");
                    let charge = run.settle(false);
                    let mut chunk = head.chunk(None, false, Some(f));
                    if let (Some(t), Some(c)) = (&run.parts.ticket, charge) {
                        chunk["polylink"] = serde_json::json!({"task_id": t.task.to_string(), "charge": c.amount.to_string()});
                    }
                    (event(&chunk), if include_usage { Phase::Usage } else { Phase::Done })
                }
                Step::Failed(message) => {
                    run.settle(false);
                    (event(&GatewayError::Backend(message).body()), Phase::Done)
                }
            },
            Phase::Usage => (event(&head.usage_chunk(run.usage())), Phase::Done),
            Phase::Done => (Bytes::from_static(b"data: [DONE]\n\n"), Phase::End),
            Phase::End => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(bytes), (run, next)))
    });
    let mut response = Response::new(Body::from_stream(stream.boxed()));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_headers(response, headers)
}
