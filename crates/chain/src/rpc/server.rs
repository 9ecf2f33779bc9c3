//! The RPC server (axum): bounded bodies, typed JSON answers and refusals, and a server-sent event
//! stream of executed finalized blocks. Bad input gets a 4xx with a code and a reason; the server
//! keeps serving.
use super::{
    AccountView, BODY_BYTES_MAX, BlockView, ErrorCode, FinalizedBlock, Refusal, Status, SubmitRequest,
    SubmitResponse,
};
use crate::{Block, Error, PublicKey, Scheme, Shared, Submitter, machine::Queryable};
use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Path, State, rejection::JsonRejection},
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use commonware_consensus::{
    marshal::{core::Mailbox, standard::Standard},
    types::Height,
};
use commonware_cryptography::Digestible;
use commonware_p2p::Sender;
use futures::Stream;
use polylink_ledger::{Model, Task};
use polylink_types::{Hash32, SignedTx};
use std::{convert::Infallible, str::FromStr, sync::Arc};
use tokio::{net::TcpListener, sync::broadcast};

/// What the handlers share.
pub(crate) struct RpcState<M, S> {
    /// Admits submitted transactions.
    pub submitter: Submitter<M, S>,
    /// The latest executed state.
    pub shared: Shared<M>,
    /// Finalized blocks by height.
    pub marshal: Mailbox<Scheme, Standard<Block>>,
    /// The chain id.
    pub chain_id: String,
    /// Committee size.
    pub validators: usize,
    /// A dev chain's faucet, if any.
    pub faucet: Option<Faucet>,
    /// Room for `/events` subscribers: each holds a permit while its stream is open.
    pub subscribers: Arc<tokio::sync::Semaphore>,
}

/// Most `/events` streams open at once; more are refused with `503` until one closes (a stalled
/// subscriber's stream closes when its writes stall, see [`crate::http`]).
pub(crate) const EVENT_SUBSCRIBERS_MAX: usize = 256;

/// Most accounts a faucet funds.
const FAUCET_ACCOUNTS_MAX: usize = 100_000;

/// A dev chain's faucet: a funded key that sends `amount` to each account that asks, once.
pub(crate) struct Faucet {
    /// The faucet's account key.
    pub key: polylink_types::SecretKey,
    /// What each account gets.
    pub amount: polylink_types::Amount,
    /// The accounts funded so far (the lock also orders the faucet's nonces).
    pub given: std::sync::Mutex<std::collections::HashSet<polylink_types::PublicKey>>,
}

type Ctx<M, S> = State<Arc<RpcState<M, S>>>;

/// An error answer: status code and refusal.
struct ApiError(StatusCode, Refusal);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn bad_request(message: impl ToString) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, Refusal::new(ErrorCode::BadRequest, message.to_string()))
}

/// A body that could not be read as the route's JSON: `413` when over [`BODY_BYTES_MAX`], `400`
/// (or the rejection's own status) otherwise.
fn body_refused(e: JsonRejection) -> ApiError {
    ApiError(e.status(), Refusal::new(ErrorCode::BadRequest, format!("bad request body: {e}")))
}

fn not_found(what: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, Refusal::new(ErrorCode::NotFound, format!("{what} not found")))
}

fn unavailable() -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, Refusal::new(ErrorCode::Unavailable, "state unavailable"))
}

/// Builds the router over `state`.
pub(crate) fn router<M, S>(state: RpcState<M, S>) -> Router
where
    M: Queryable,
    S: Sender<PublicKey = PublicKey>,
{
    Router::new()
        .route("/tx", post(submit::<M, S>))
        .route("/faucet", post(faucet::<M, S>))
        .route("/status", get(status::<M, S>))
        .route("/account/{key}", get(account::<M, S>))
        .route("/models", get(|s: Ctx<M, S>| read(s, |m: &M| Some(m.models()), "models")))
        .route("/model/{id}", get(model::<M, S>))
        .route("/workers", get(|s: Ctx<M, S>| read(s, |m: &M| Some(m.workers()), "workers")))
        .route("/gateways", get(|s: Ctx<M, S>| read(s, |m: &M| Some(m.gateways()), "gateways")))
        .route("/validators", get(|s: Ctx<M, S>| read(s, |m: &M| Some(m.validators()), "validators")))
        .route("/task/{id}", get(task::<M, S>))
        .route("/params", get(|s: Ctx<M, S>| read(s, |m: &M| Some(m.params()), "params")))
        .route("/block/{height}", get(block::<M, S>))
        .route("/events", get(events::<M, S>))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(Arc::new(state))
}

/// Serves `router` on `listener` until the task is dropped, within [`crate::http`]'s limits.
pub(crate) async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    crate::http::serve(listener, router, crate::http::HttpLimits::with_body_max(BODY_BYTES_MAX)).await
}

async fn submit<M: Queryable, S: Sender<PublicKey = PublicKey>>(
    State(state): Ctx<M, S>,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<Json<SubmitResponse>, ApiError> {
    let Json(request) = body.map_err(body_refused)?;
    let bytes = hex::decode(request.tx.trim()).map_err(|e| bad_request(format!("tx is not hex: {e}")))?;
    let tx = SignedTx::from_bytes(&bytes).map_err(|e| bad_request(format!("malformed tx: {e}")))?;
    match state.submitter.submit(tx) {
        Ok(id) => Ok(Json(SubmitResponse { id })),
        Err(Error::Refused(refusal)) => Err(ApiError(StatusCode::BAD_REQUEST, refusal)),
        Err(e) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            Refusal::new(ErrorCode::Unavailable, e.to_string()),
        )),
    }
}

async fn faucet<M: Queryable, S: Sender<PublicKey = PublicKey>>(
    State(state): Ctx<M, S>,
    body: Result<Json<super::FaucetRequest>, JsonRejection>,
) -> Result<Json<SubmitResponse>, ApiError> {
    let Json(request) = body.map_err(body_refused)?;
    let Some(faucet) = &state.faucet else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            Refusal::new(ErrorCode::NotFound, "this chain has no faucet (only a dev chain does)"),
        ));
    };
    let refused =
        |message: String| ApiError(StatusCode::BAD_REQUEST, Refusal::new(ErrorCode::Duplicate, message));
    let mut given = faucet.given.lock().map_err(|_| unavailable())?;
    if given.contains(&request.account) {
        return Err(refused(format!("the faucet funded {} already", request.account)));
    }
    if given.len() >= FAUCET_ACCOUNTS_MAX {
        return Err(refused(format!("the faucet funded {FAUCET_ACCOUNTS_MAX} accounts, its most")));
    }
    let me = faucet.key.public_key();
    let nonce = {
        let guard = state.shared.state.read().map_err(|_| unavailable())?;
        guard.machine.account(&me, state.submitter.pending_of(&me) as u64).next_nonce()
    };
    let kind = polylink_types::TxKind::Transfer(polylink_types::Transfer {
        to: request.account,
        amount: faucet.amount,
    });
    let tx = polylink_types::UnsignedTx { signer: me, nonce, kind }.sign(&faucet.key, &state.chain_id);
    match state.submitter.submit(tx) {
        Ok(id) => {
            given.insert(request.account);
            Ok(Json(SubmitResponse { id }))
        }
        Err(Error::Refused(refusal)) => Err(ApiError(StatusCode::BAD_REQUEST, refusal)),
        Err(e) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            Refusal::new(ErrorCode::Unavailable, e.to_string()),
        )),
    }
}

async fn status<M: Queryable, S>(State(state): Ctx<M, S>) -> Result<Json<Status>, ApiError> {
    let guard = state.shared.state.read().map_err(|_| unavailable())?;
    Ok(Json(Status {
        chain_id: state.chain_id.clone(),
        height: guard.height,
        time_ms: guard.last_block.as_ref().map_or(0, |b| b.timestamp_ms),
        state_root: guard.state_root,
        mempool: state.submitter.pending(),
        tasks_held: guard.machine.tasks_held(),
        validators: state.validators,
    }))
}

/// Answers from the latest executed state; `None` from `query` is a 404 naming `what`.
async fn read<M: Queryable, S, T>(
    State(state): Ctx<M, S>,
    query: impl FnOnce(&M) -> Option<T>,
    what: &'static str,
) -> Result<Json<T>, ApiError> {
    let guard = state.shared.state.read().map_err(|_| unavailable())?;
    query(&guard.machine).map(Json).ok_or_else(|| not_found(what))
}

async fn account<M: Queryable, S>(
    s: Ctx<M, S>,
    Path(key): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    let key = polylink_types::PublicKey::from_str(&key).map_err(bad_request)?;
    let pending = s.submitter.pending_of(&key) as u64;
    read(s, |m: &M| Some(m.account(&key, pending)), "account").await
}

async fn model<M: Queryable, S>(s: Ctx<M, S>, Path(id): Path<u64>) -> Result<Json<Model>, ApiError> {
    read(s, |m: &M| m.model(id), "model").await
}

/// A task from the state, else from this node's archive of pruned tasks.
async fn task<M: Queryable, S>(
    State(state): Ctx<M, S>,
    Path(id): Path<String>,
) -> Result<Json<Task>, ApiError> {
    let id = Hash32::from_str(&id).map_err(bad_request)?;
    let live = state.shared.state.read().map_err(|_| unavailable())?.machine.task(&id);
    match live {
        Some(task) => Ok(Json(task)),
        None => state.shared.archived.task(&id).await.map(Json).ok_or_else(|| not_found("task")),
    }
}

async fn block<M: Queryable, S>(
    State(state): Ctx<M, S>,
    Path(height): Path<u64>,
) -> Result<Json<BlockView>, ApiError> {
    let block = state.marshal.get_block(Height::new(height)).await.ok_or_else(|| not_found("block"))?;
    let block: &Block = block.inner();
    Ok(Json(BlockView {
        height: block.height.get(),
        digest: block.digest().to_string(),
        parent: block.parent.to_string(),
        view: block.context.round.view().get(),
        timestamp_ms: block.timestamp_ms,
        txs: block.txs.clone(),
    }))
}

/// `GET /events`'s query: `from`, the first height wanted (the blocks this node still keeps from
/// there on come first; none: from the next block).
#[derive(Debug, serde::Deserialize)]
struct EventsQuery {
    from: Option<u64>,
}

async fn events<M: Queryable, S>(
    State(state): Ctx<M, S>,
    axum::extract::Query(query): axum::extract::Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = state.subscribers.clone().try_acquire_owned().map_err(|_| {
        let why = format!("{EVENT_SUBSCRIBERS_MAX} event streams are open; try again later");
        ApiError(StatusCode::SERVICE_UNAVAILABLE, Refusal::new(ErrorCode::Unavailable, why))
    })?;
    // Subscribed before the kept blocks are read, so none falls between the two.
    let receiver = state.shared.blocks.subscribe();
    let backlog: std::collections::VecDeque<Arc<FinalizedBlock>> = match query.from {
        Some(from) => state
            .shared
            .recent
            .lock()
            .map(|recent| recent.iter().filter(|b| b.executed.height >= from).cloned().collect())
            .unwrap_or_default(),
        None => Default::default(),
    };
    let sent = backlog.back().map_or(0, |b| b.executed.height);
    let frame = |block: &FinalizedBlock| {
        Event::default().event("block").json_data(block).unwrap_or_else(|_| Event::default().event("error"))
    };
    let start = (receiver, permit, backlog, sent);
    let stream =
        futures::stream::unfold(start, move |(mut receiver, permit, mut backlog, sent)| async move {
            if let Some(block) = backlog.pop_front() {
                return Some((Ok(frame(&block)), (receiver, permit, backlog, sent)));
            }
            loop {
                match receiver.recv().await {
                    // Already sent from the kept blocks.
                    Ok(block) if block.executed.height <= sent => continue,
                    Ok(block) => return Some((Ok(frame(&block)), (receiver, permit, backlog, sent))),
                    // A slow subscriber skips what it missed and goes on with the newest blocks.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
