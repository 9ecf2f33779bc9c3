//! Small shared helpers: file hashing, linear ramps.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Result, io_err};

/// sha256 of a file's bytes, read in chunks.
pub fn file_sha256(path: &Path) -> Result<[u8; 32]> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

/// 0 at or below `lo`, 1 at or above `hi`, linear between.
pub(crate) fn ramp(x: f64, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return f64::from(u8::from(x >= hi));
    }
    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}
