#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Genesis files: dev genesis, TOML and JSON round trips, hand-written integer amounts.

use polylink_ledger::{DEV_BALANCE, Genesis, Ledger, Params, dev_key};

#[test]
fn dev_genesis_funds_fixed_keys() {
    let (g, keys) = Genesis::dev("polylink-dev", 3);
    assert_eq!(keys[2].public_key(), dev_key(2).public_key(), "dev keys are fixed");
    let ledger = Ledger::genesis(&g).unwrap();
    assert_eq!(ledger.account(&keys[1].public_key()).balance, DEV_BALANCE);
    assert_eq!(ledger.totals().supply, 3 * DEV_BALANCE);
    assert_eq!(ledger.chain_id(), "polylink-dev");
    assert_eq!(ledger.height(), 0);
}

#[test]
fn genesis_round_trips_through_toml_and_json() {
    let (g, _) = Genesis::dev("polylink-dev", 2);
    let text = toml::to_string(&g).unwrap();
    assert_eq!(toml::from_str::<Genesis>(&text).unwrap(), g);
    let json = serde_json::to_string(&g).unwrap();
    assert_eq!(serde_json::from_str::<Genesis>(&json).unwrap(), g);
}

#[test]
fn hand_written_params_accept_plain_integers() {
    let mut value = toml::Value::try_from(Params::default()).unwrap();
    let table = value.as_table_mut().unwrap();
    table.insert("worker_stake_min".into(), toml::Value::Integer(2_500));
    let params: Params = value.try_into().unwrap();
    assert_eq!(params.worker_stake_min, 2_500);
    let mut bad = toml::Value::try_from(Params::default()).unwrap();
    bad.as_table_mut().unwrap().insert("validator_stake_min".into(), toml::Value::Integer(-1));
    assert!(bad.try_into::<Params>().is_err());
}
