//! Block decoder under a small transaction limit: never panics; whatever decodes re-encodes to
//! the same bytes and respects the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polylink_types::codec::Encode;
use polylink_types::{Block, BlockLimits};

fuzz_target!(|data: &[u8]| {
    let limits = BlockLimits { txs_max: 16 };
    if let Ok(block) = Block::from_bytes(data, &limits) {
        assert!(block.txs.len() <= limits.txs_max);
        assert_eq!(block.encode().as_ref(), data, "decoding is not canonical");
    }
});
