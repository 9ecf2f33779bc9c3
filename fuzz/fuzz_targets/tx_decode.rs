//! Signed-transaction decoder: never panics; whatever decodes re-encodes to the same bytes
//! (the encoding is canonical) and its id and signature check run without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polylink_types::SignedTx;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = SignedTx::from_bytes(data) {
        assert_eq!(tx.to_bytes(), data, "decoding is not canonical");
        let _ = tx.id();
        let _ = tx.verify("polylink-fuzz");
    }
});
