//! Adversarial (#11 item 9): what a gateway reports is checked, and users cap what they pay.
//! - A gateway that bills more completion tokens than it delivered (here: all it escrowed, for a
//!   short answer) had its result settled as reported. Now the validator counts the bill
//!   against the tokens the worker's receipt says it drew: the task scores 0 (the gateway served
//!   it alone, so its bill is its own worker's), the user is refunded in full and the worker is
//!   struck, unpaid.
//! - The user's `max_price` was always the current price. Now the client's cap
//!   (`x-polylink-max-price`) goes on chain: under the price the request is refused before any
//!   escrow, at the price it is served and charged at the chain's price.
//! - Once its task settled, a transcript is deleted by its gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod validator_common;

use futures::future::BoxFuture;
use polylink_gateway::{
    Account, Billing, ChainBilling, Charge, MAX_PRICE_HEADER, Opening, Ticket, UsageReport,
};
use polylink_ledger::TaskStatus;
use polylink_types::SettleOutcome;
use std::sync::Arc;
use validator_common::*;

/// An attacker's billing: reports every token it escrowed as delivered.
struct Inflating(ChainBilling);

impl Billing for Inflating {
    fn authenticate<'a>(
        &'a self,
        key: &'a polylink_types::ApiKey,
    ) -> BoxFuture<'a, polylink_gateway::Result<()>> {
        self.0.authenticate(key)
    }

    fn check_voucher<'a>(
        &'a self,
        voucher: &'a polylink_types::SignedVoucher,
    ) -> BoxFuture<'a, polylink_gateway::Result<()>> {
        self.0.check_voucher(voucher)
    }

    fn info(&self) -> polylink_protocol::GatewayInfo {
        self.0.info()
    }

    fn open<'a>(
        &'a self,
        account: &'a Account,
        opening: Opening<'a>,
    ) -> BoxFuture<'a, polylink_gateway::Result<Ticket>> {
        self.0.open(account, opening)
    }

    fn close<'a>(
        &'a self,
        ticket: &'a Ticket,
        mut usage: UsageReport,
    ) -> BoxFuture<'a, polylink_gateway::Result<Charge>> {
        let escrowed = u32::try_from(ticket.escrow / ticket.price_per_token).unwrap();
        usage.completion_tokens = escrowed - usage.prompt_tokens;
        self.0.close(ticket, usage)
    }
}

async fn chat(base: &str, max_price: Option<u128>) -> reqwest::Response {
    let mut post = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({
            "model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": 48, "temperature": 0,
        }));
    if let Some(cap) = max_price {
        post = post.header(MAX_PRICE_HEADER, cap.to_string());
    }
    post.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overbilling_is_refunded_and_struck_and_the_users_price_cap_holds() {
    let net = start_with(1, |p| p.reveals_min = 1).await;
    let cheat = gateway_billing(&net, local(&smollm2(), &worker(0)), &worker(0), Some(store(&net, 0)), |b| {
        Arc::new(Inflating(b))
    })
    .await;
    let honest = gateway_with(&net, local(&smollm2(), &worker(1)), &worker(1), Some(store(&net, 1))).await;
    let node = validator_node(&net, 0, None).await;

    // The inflated bill.
    let user_before = balance(&net, &user()).await;
    let cheat_before = balance(&net, &worker(0)).await;
    let resp = chat(&cheat, None).await;
    assert_eq!(resp.status(), 200);
    let task = resp.headers()["x-polylink-task-id"].to_str().unwrap().to_string();
    let record = settled(&net, &task).await;
    let result = record.result.as_ref().unwrap();
    assert_eq!(
        result.prompt_tokens + result.completion_tokens,
        record.max_tokens,
        "it billed all it escrowed"
    );
    assert_eq!(record.status, TaskStatus::Settled(SettleOutcome::LowQuality), "{record:?}");
    assert_eq!(record.committee.as_slice()[0].score, Some(0));
    // Refunded in full, but for the fee of the SubmitTask it signed (the chain's own cost).
    let tx_fee = net.client.params().await.unwrap().params.tx_fee;
    assert_eq!(balance(&net, &user()).await, user_before - tx_fee, "the user is refunded in full");
    assert_eq!(balance(&net, &worker(0)).await, cheat_before, "the cheat is not paid");
    assert_eq!(net.client.account(&worker(0).public_key()).await.unwrap().stake.strikes, 1);

    // The cap.
    let price = net.client.model(net.model_id).await.unwrap().price;
    let user_before = balance(&net, &user()).await;
    let refused = chat(&honest, Some(price - 1)).await;
    assert_eq!(refused.status(), 402);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "price_above_max", "{body}");
    assert_eq!(balance(&net, &user()).await, user_before, "nothing escrowed");
    let served = chat(&honest, Some(price)).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["x-polylink-price-per-token"].to_str().unwrap(), price.to_string());
    let task = served.headers()["x-polylink-task-id"].to_str().unwrap().to_string();
    let record = settled(&net, &task).await;
    assert_eq!(record.price, price, "charged at the chain's price, within the cap");
    assert_eq!(record.status, TaskStatus::Settled(SettleOutcome::Paid), "{record:?}");
    // Settled, the task needs its transcript no more: the gateway deletes it (the user's prompt
    // is not kept longer than the chain needs it).
    let file = net.dir.path().join("transcripts-1").join(format!("{task}.json"));
    for _ in 0..600 {
        if !file.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!file.exists(), "the transcript of a settled task is still kept");
    let bad = reqwest::Client::new()
        .post(format!("{honest}/v1/chat/completions"))
        .bearer_auth(API_KEY)
        .header(MAX_PRICE_HEADER, "cheap")
        .json(&serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "a malformed cap is a clear error");
    node.stop().await;
}

fn store(net: &Net, i: u32) -> polylink_gateway::StoreConfig {
    polylink_gateway::StoreConfig {
        entries_max: 100,
        dir: Some(net.dir.path().join(format!("transcripts-{i}"))),
        sweep_every: std::time::Duration::from_millis(500),
        keep_closed_for: std::time::Duration::ZERO,
        ..Default::default()
    }
}
