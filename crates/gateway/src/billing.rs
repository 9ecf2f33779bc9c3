//! The task lifecycle on chain, as the gateway sees it.
//!
//! Before inference the gateway opens a task for the caller's account: a SubmitTask it signs
//! itself, paid from the account's deposit for it, that escrows `max_tokens × price` (the chain
//! refuses it if the deposit is short, or, for a signed request, if the account's voucher does not
//! authorize it). After inference it
//! reports the result: output hash and the token counts actually delivered; the chain charges
//! those tokens at the task's price and refunds the rest of the escrow. A gateway with no
//! [`Billing`] serves without charging and says so in its log and headers.

use crate::error::Result;
use crate::keys::Account;
use futures::future::BoxFuture;
use polylink_protocol::Placement;
use polylink_types::{Amount, ApiKey, Hash32, PublicKey, SignedReceipt, SignedVoucher, TaskId};

/// An opened task: what the response headers announce before the first token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The task id (its SubmitTask transaction id).
    pub task: TaskId,
    /// Price per token the task is charged at, base units.
    pub price_per_token: Amount,
    /// Amount escrowed (`tokens_max × price`).
    pub escrow: Amount,
    /// The workers named on the task, in pipeline order.
    pub workers: Vec<PublicKey>,
}

/// What the gateway reports after a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    /// sha256 of the output text delivered.
    pub output_hash: Hash32,
    /// Prompt tokens processed.
    pub prompt_tokens: u32,
    /// Completion tokens delivered to the client.
    pub completion_tokens: u32,
    /// The receipts the workers that computed the answer signed for the task (see
    /// [`polylink_protocol::Receipts`]): only they are paid, by layers x rows.
    pub receipts: Vec<SignedReceipt>,
}

/// The amount a task was charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// Base units taken from the account (the rest of the escrow is refunded).
    pub amount: Amount,
}

/// The request header in which a client caps the price per token it accepts (base units); the
/// chain refuses the task when the model's price is above it.
pub const MAX_PRICE_HEADER: &str = "x-polylink-max-price";

/// What a task is opened for.
#[derive(Debug, Clone, Copy)]
pub struct Opening<'a> {
    /// The gateway's model id.
    pub model: &'a str,
    /// Prompt plus completion tokens escrowed.
    pub tokens_max: u32,
    /// sha256 of the prompt token ids.
    pub prompt_hash: Hash32,
    /// Who serves it.
    pub placement: &'a Placement,
    /// The sampling seed fixed on chain.
    pub seed: u64,
    /// The highest price per token the client accepts (`None`: the current price).
    pub max_price: Option<Amount>,
}

/// Opens and settles tasks on chain.
pub trait Billing: Send + Sync + 'static {
    /// Whether `key` is an on-chain key for this gateway: its account allows this gateway and the
    /// allowance records the key's hash. Fails with [`crate::GatewayError::WrongKey`] when not.
    fn authenticate<'a>(&'a self, key: &'a ApiKey) -> BoxFuture<'a, Result<()>>;

    /// Whether `voucher` is a signed request this gateway can open a task for: its payer's
    /// signature on this chain, for this gateway, not expired, not used here before. Fails with
    /// [`crate::GatewayError::BadVoucher`] when not. (That it covers the request, and the body's
    /// hash, are checked once the request is read.)
    fn check_voucher<'a>(&'a self, voucher: &'a SignedVoucher) -> BoxFuture<'a, Result<()>>;

    /// Escrows `opening.tokens_max` tokens of its model for `account` (signed by the gateway,
    /// spent from the account's deposit for it, with the account's voucher when it signed the
    /// request), naming the workers of its
    /// placement (the billing's own worker when it names none) and fixing the sampling seed on
    /// chain; fails with [`crate::GatewayError::InsufficientBalance`] when the account cannot pay
    /// and [`crate::GatewayError::PriceAboveMax`] when the price is above the client's cap.
    fn open<'a>(&'a self, account: &'a Account, opening: Opening<'a>) -> BoxFuture<'a, Result<Ticket>>;

    /// The chain, this gateway's account and the on-chain id of each model, for clients that sign
    /// their requests.
    fn info(&self) -> polylink_protocol::GatewayInfo;

    /// Reports the result of `ticket`'s task; returns what the account is charged.
    fn close<'a>(&'a self, ticket: &'a Ticket, usage: UsageReport) -> BoxFuture<'a, Result<Charge>>;
}

/// The charge for `usage` on `ticket`: billed tokens × price, as the ledger computes it.
pub(crate) fn charge_for(ticket: &Ticket, usage: &UsageReport) -> Charge {
    let tokens = Amount::from(usage.prompt_tokens) + Amount::from(usage.completion_tokens);
    Charge { amount: tokens.saturating_mul(ticket.price_per_token) }
}
