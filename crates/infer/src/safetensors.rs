//! A bounded reader of the safetensors format: an 8-byte little-endian header length, a JSON
//! header naming each tensor's dtype, shape and byte range, then the raw little-endian data.
//! The encoder checkpoints ([`crate::Bert`]) come in this format; GGUF files go through
//! [`crate::gguf`].

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{InferError, Result};

/// Largest header accepted.
const HEADER_BYTES_MAX: u64 = 16 << 20;
/// Largest file accepted.
const FILE_BYTES_MAX: u64 = 2 << 30;

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// One f32 tensor.
#[derive(Debug, Clone)]
pub(crate) struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// Every F32 tensor of a safetensors file, by name (other dtypes are skipped).
pub(crate) fn read_f32(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bad = |reason: String| InferError::BadFile { path: path.to_path_buf(), reason };
    let io = |source| InferError::Io { path: path.to_path_buf(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > FILE_BYTES_MAX {
        return Err(bad(format!("{len} bytes exceeds {FILE_BYTES_MAX}")));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    parse(&bytes).map_err(bad)
}

/// Parses safetensors bytes; errors are plain messages.
pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<HashMap<String, Tensor>, String> {
    let head: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or("shorter than 8 bytes")?;
    let n = u64::from_le_bytes(head);
    if n > HEADER_BYTES_MAX || n > (bytes.len() - 8) as u64 {
        return Err(format!("header length {n} exceeds the file or {HEADER_BYTES_MAX}"));
    }
    let header_end = 8 + n as usize;
    let raw: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..header_end]).map_err(|e| format!("header json: {e}"))?;
    let data = &bytes[header_end..];
    let mut out = HashMap::new();
    for (name, v) in raw {
        if name == "__metadata__" {
            continue;
        }
        let e: Entry = serde_json::from_value(v).map_err(|e| format!("tensor {name}: {e}"))?;
        let [start, end] = e.data_offsets;
        if start > end || end > data.len() {
            return Err(format!("tensor {name}: range {start}..{end} outside {} data bytes", data.len()));
        }
        if e.dtype != "F32" {
            continue;
        }
        let count = e
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or(format!("tensor {name}: shape overflows"))?;
        if count.checked_mul(4) != Some(end - start) {
            return Err(format!("tensor {name}: shape {:?} does not fill {} bytes", e.shape, end - start));
        }
        let values =
            data[start..end].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.insert(name, Tensor { shape: e.shape, data: values });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_a_tensor_and_skips_metadata() {
        let h = r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let data: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = parse(&file(h, &data)).unwrap_or_default();
        assert_eq!(t.get("w").map(|t| t.data.clone()), Some(vec![1.5, -2.0]));
    }

    #[test]
    fn refuses_lying_sizes() {
        assert!(parse(&[1, 2, 3]).is_err());
        assert!(parse(&file("{}", &[])[..4]).is_err());
        let mut huge = file("{}", &[]);
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&huge).is_err());
        let past_end = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        assert!(parse(&file(past_end, &[0; 8])).is_err());
        let wrong_shape = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        assert!(parse(&file(wrong_shape, &[0; 8])).is_err());
        let overflow = r#"{"w":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,8]}}"#;
        assert!(parse(&file(overflow, &[0; 8])).is_err());
    }
}
