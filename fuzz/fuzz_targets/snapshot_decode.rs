//! Ledger snapshot decoder (what a node reads back from disk): never panics; whatever decodes
//! snapshots back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polylink_ledger::Ledger;

fuzz_target!(|data: &[u8]| {
    if let Ok(ledger) = Ledger::from_snapshot(data) {
        assert_eq!(ledger.snapshot(), data, "decoding is not canonical");
        let _ = ledger.state_root();
    }
});
