//! Hidden states on the wire between shards: f32 little-endian, `rows × dim`, size-checked.

use crate::error::{InferError, Result};

/// Encodes hidden states as little-endian f32 bytes.
pub fn hidden_to_bytes(h: &[f32]) -> Vec<u8> {
    h.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decodes `bytes` as whole rows of `dim` f32 values, at most `rows_max` rows.
pub fn hidden_from_bytes(bytes: &[u8], dim: usize, rows_max: usize) -> Result<Vec<f32>> {
    let row_bytes = dim
        .checked_mul(4)
        .filter(|&b| b > 0)
        .ok_or_else(|| InferError::BadInput(format!("hidden size {dim}")))?;
    if bytes.is_empty() || !bytes.len().is_multiple_of(row_bytes) {
        return Err(InferError::BadInput(format!("{} bytes are not whole rows of {dim} f32", bytes.len())));
    }
    let rows = bytes.len() / row_bytes;
    if rows > rows_max {
        return Err(InferError::BadInput(format!("{rows} rows exceed the limit of {rows_max}")));
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_partial_rows() {
        let h = [1.5f32, -2.0, 0.25, 8.0];
        let b = hidden_to_bytes(&h);
        assert_eq!(hidden_from_bytes(&b, 2, 4).ok(), Some(h.to_vec()));
        assert!(hidden_from_bytes(&b[..12], 2, 4).is_err());
        assert!(hidden_from_bytes(&b, 2, 1).is_err());
        assert!(hidden_from_bytes(&[], 2, 1).is_err());
    }
}
