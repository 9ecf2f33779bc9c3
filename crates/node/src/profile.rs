//! Device profiling: how fast this machine runs the layers it loaded, and how much memory it has.

use polylink_infer::{LogitsMode, Shard, ShardInput};
use std::time::Instant;

pub use crate::platform::available_memory_bytes;

/// What a worker measured about itself for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Measured {
    /// Median decode time of one layer for one token, in microseconds.
    pub layer_time_us: u64,
    /// Memory available to the worker (MemAvailable), in bytes.
    pub memory_bytes: u64,
}

/// Times `steps` single-token decode steps on `shard` (after a short warm-up) and returns the
/// median per-layer time; the head's cost is included when the shard is the last one.
pub fn measure(shard: &Shard, steps: usize) -> Result<Measured, polylink_infer::InferError> {
    let dim = shard.hparams().dim;
    let steps = steps.max(3);
    let mut kv = shard.new_session(steps + 8);
    let mut out = Vec::new();
    let hidden = vec![0.01f32; dim];
    let mut times = Vec::with_capacity(steps);
    for step in 0..steps + 2 {
        let input = if shard.is_first() { ShardInput::Tokens(&[1]) } else { ShardInput::Hidden(&hidden) };
        let start = Instant::now();
        shard.forward(&mut kv, input, LogitsMode::Last, &mut out)?;
        if step >= 2 {
            times.push(start.elapsed().as_micros() as u64);
        }
    }
    times.sort_unstable();
    let layers = shard.range().len().max(1) as u64;
    Ok(Measured { layer_time_us: times[times.len() / 2] / layers, memory_bytes: available_memory_bytes() })
}

/// Throughput of a TCP stream over loopback, kbit/s: sends `bytes` through a socket
/// pair on 127.0.0.1 (the link every local stage of `polylink up` uses). A device on a real
/// network reports its own link with `--bandwidth-kbps` instead.
pub fn loopback_bandwidth_kbps(bytes: usize) -> std::io::Result<u64> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        let chunk = vec![0x5au8; 64 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            stream.write_all(&chunk[..n])?;
            left -= n;
        }
        Ok(())
    });
    let (mut stream, _) = listener.accept()?;
    let start = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0usize;
    while got < bytes {
        match stream.read(&mut buf)? {
            0 => break,
            n => got += n,
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-6);
    sender.join().map_err(|_| std::io::Error::other("sender thread panicked"))??;
    Ok((got as f64 * 8.0 / 1000.0 / secs) as u64)
}
