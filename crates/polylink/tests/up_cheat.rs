//! A cheating worker through `polylink up`: the worker registered as serving SmolLM2 skips 14 of
//! its 30 layers (a cheaper, different model behind the same tokenizer). The validators score its
//! tasks low, the chain settles each as low quality, the worker is not paid, is struck and at its
//! third strike slashed, and the user gets every fee back — all visible through the RPC.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod up_common;

use std::time::Duration;
use up_common::{Up, amount, balance, get, wait_settled};

#[test]
fn a_worker_that_drops_layers_is_scored_low_slashed_and_the_user_refunded() {
    let up = Up::start(&["--stages", "0", "--cheat-drop-layers", "8..22"]);
    let rpc = up.rpc();
    let user = up.summary["account"].as_str().unwrap().to_string();
    let cheat = up.summary["workers"][0]["account"].as_str().unwrap().to_string();
    let stake_before = amount(&get(&rpc, &format!("/account/{cheat}"))["stake"]["bonded"]);
    let (user_before, cheat_before) = (balance(&rpc, &user), balance(&rpc, &cheat));

    let auth = format!("Authorization: Bearer {}", up.summary["api_key"].as_str().unwrap());
    let ask = |question: &str| {
        let body = serde_json::json!({
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "user", "content": question}],
            "max_tokens": 24, "temperature": 0,
        });
        let out = std::process::Command::new("curl")
            .args(["-sS", "-D", "-", "-o", "/dev/null", "-H", &auth])
            .args(["-H", "Content-Type: application/json", "-d", &body.to_string()])
            .arg(format!("{}/chat/completions", up.base_url()))
            .output()
            .unwrap();
        let headers = String::from_utf8_lossy(&out.stdout).to_string();
        headers
            .lines()
            .find_map(|l| l.strip_prefix("x-polylink-task-id: "))
            .unwrap_or_else(|| panic!("no task id in {headers}"))
            .trim()
            .to_string()
    };
    // Three cheats: each is caught, unpaid and struck; the third strike slashes.
    let tasks: Vec<String> =
        ["Name three primary colors.", "Name a large animal.", "What is the capital of Spain?"]
            .iter()
            .map(|q| ask(q))
            .collect();
    let params = get(&rpc, "/params")["params"].clone();
    assert_eq!(params["strikes_to_slash"], 3);
    for task in &tasks {
        let record = wait_settled(&rpc, task, Duration::from_secs(240));
        assert_eq!(record["status"]["settled"], "low_quality", "{record}");
        assert!(
            record["median_score"].as_u64().unwrap() < params["quality_min"].as_u64().unwrap(),
            "{record}"
        );
    }
    let stake = get(&rpc, &format!("/account/{cheat}"))["stake"].clone();
    let slash = stake_before * params["worker_slash_bps"].as_u64().unwrap() as u128 / 10_000;
    assert_eq!(
        amount(&stake["bonded"]),
        stake_before - slash,
        "the third strike slashes the cheating worker"
    );
    assert_eq!(stake["strikes"], 0, "and starts its count again");
    assert_eq!(balance(&rpc, &cheat), cheat_before, "a cheating worker is not paid");
    // Every task fee comes back; the three SubmitTask transactions cost their fee.
    let tx_fee = amount(&params["tx_fee"]);
    assert_eq!(balance(&rpc, &user), user_before - 3 * tx_fee, "the user gets every fee back");
}
