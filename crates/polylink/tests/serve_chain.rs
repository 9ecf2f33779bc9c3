//! Adversarial (#11 item 4): `polylink serve --chain`, as an operator runs it, with a validator
//! on the chain. Before, its `--chain-model` defaulted to 0 (model ids start at 1, so every
//! request failed billing) and, given the right id, it kept no transcripts, so every billed
//! request was scored 0 and struck its honest worker. Now it finds its model on chain by the
//! file's sha256 and keeps transcripts: the task is scored on its answer and paid. The user calls
//! it with an on-chain key made for its allowance, as `polylink wallet allow` makes one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod validator_common;

use polylink_ledger::TaskStatus;
use polylink_protocol::GatewayReady;
use polylink_types::{Allow, ApiKey, SecretKey, SettleOutcome, Transfer, TxKind};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use validator_common::*;

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_chain_bills_its_registered_model_and_keeps_transcripts() {
    let net = start_with(1, |p| p.reveals_min = 1).await;
    let worker = worker(0);
    register_worker(&net, &worker).await;
    let user = SecretKey::from_label("serve-chain-user");
    let transfer = Transfer { to: user.public_key(), amount: 10_000_000 };
    send(&net.client, &developer(), TxKind::Transfer(transfer)).await;
    // The user lets the operator's gateway (its worker key) spend up to 1,000,000 for it.
    let api_key = ApiKey::new(user.public_key(), [5; 32]);
    let allow = Allow { gateway: worker.public_key(), limit: 1_000_000, key_hash: api_key.hash() };
    send(&net.client, &user, TxKind::Allow(allow)).await;
    let api_key = api_key.to_string();

    let mut child = Command::new(env!("CARGO_BIN_EXE_polylink"))
        .args(["serve", "--listen", "127.0.0.1:0", "--threads", "1", "--model-id", MODEL])
        .args(["--chain", &net.url, "--worker-seed", &hex::encode(worker.seed())])
        .arg("--transcripts-dir")
        .arg(net.dir.path().join("serve-transcripts"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    // The gateway announces itself with one typed line on stdout; its log goes to stderr.
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).find_map(|line| GatewayReady::from_line(&line))
    })
    .await
    .unwrap()
    .expect("polylink serve never said where it listens");
    assert_eq!(ready.worker, Some(worker.public_key()));
    assert_eq!(ready.gateway, Some(worker.public_key()), "one operator: its worker key is its gateway's");
    assert_eq!(ready.chain_model, Some(net.model_id));
    let addr = ready.addr;
    let base = format!("http://{addr}");

    let node = validator_node(&net, 0, None).await;
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&api_key)
        .json(&serde_json::json!({
            "model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": 8, "temperature": 0,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
    let task = resp.headers()["x-polylink-task-id"].to_str().unwrap().to_string();
    let record = settled(&net, &task).await;
    assert_eq!(record.model, net.model_id, "billed under the model registered with the file's hash");
    assert_eq!(record.status, TaskStatus::Settled(SettleOutcome::Paid), "{record:?}");
    assert!(
        record.committee.as_slice()[0].score.is_some_and(|s| s > 0),
        "the transcript was fetched and scored"
    );
    assert_eq!(net.client.account(&worker.public_key()).await.unwrap().stake.strikes, 0);
    node.stop().await;
    drop(server);
}
