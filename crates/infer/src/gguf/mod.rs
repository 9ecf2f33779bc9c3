//! GGUF reader: header, metadata and tensor directory, then tensors read by name and offset, so
//! a shard loads only its own layers. Every count, size and offset is checked against the file.

mod read;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub(crate) use value::MetaExt;
pub use value::Value;

use crate::error::{InferError, Result, malformed};
use crate::quant::GgmlType;
use read::Cursor;

const MAGIC: &[u8; 4] = b"GGUF";
/// Most dimensions a tensor may have.
const DIMS_MAX: u32 = 4;
/// Most elements a tensor may have (far above any model this engine can run).
const ELEMS_MAX: u64 = 1 << 40;

/// Where one tensor lies in the file and what it holds.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Name, e.g. `blk.3.attn_q.weight`.
    pub name: String,
    /// Shape in GGUF order: `dims[0]` is the row length (innermost).
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
    /// Size in bytes.
    pub bytes: u64,
}

impl TensorInfo {
    /// Elements in one row (`dims[0]`).
    pub fn row_len(&self) -> usize {
        self.dims[0] as usize
    }

    /// Number of rows (product of the outer dimensions).
    pub fn n_rows(&self) -> usize {
        self.dims[1..].iter().product::<u64>() as usize
    }
}

/// An open GGUF file: metadata and tensor directory in memory, tensor data left on disk.
#[derive(Debug)]
pub struct Gguf {
    path: PathBuf,
    file: File,
    /// Format version (2 or 3).
    pub version: u32,
    /// All metadata key/values.
    pub metadata: BTreeMap<String, Value>,
    /// Tensor directory in file order.
    pub tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    data_start: u64,
}

impl MetaExt for Gguf {
    fn value(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }
}

impl Gguf {
    /// Opens and validates a GGUF file; reads no tensor data.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| InferError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut cur = Cursor::new(BufReader::with_capacity(1 << 16, &file), len);
        let magic = cur.u32()?.to_le_bytes();
        if &magic != MAGIC {
            return Err(InferError::BadMagic(format!("{} starts with {magic:?}", path.display())));
        }
        let version = cur.u32()?;
        if !(2..=3).contains(&version) {
            return Err(malformed(4, format!("unsupported gguf version {version}")));
        }
        // Each tensor entry takes at least 8+1+4+8+4+8 bytes, each key/value at least 8+1+4+1.
        let n_tensors = cur.count(33, "tensor")?;
        let n_kv = cur.count(14, "metadata")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let at = cur.pos();
            let key = cur.string()?;
            let ty = cur.u32()?;
            let value = cur.value(ty)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(malformed(at, format!("duplicate metadata key {key}")));
            }
        }
        let mut raw = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            raw.push(read_tensor_entry(&mut cur)?);
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => v
                .as_u64()
                .filter(|a| a.is_power_of_two() && *a <= 1 << 16)
                .ok_or_else(|| malformed(0, format!("general.alignment {v:?} is not a power of two")))?,
        };
        let data_start = cur.pos().div_ceil(alignment) * alignment;
        let data_len = len.saturating_sub(data_start);
        let mut tensors = Vec::with_capacity(raw.len());
        let mut index = HashMap::with_capacity(raw.len());
        for (at, name, dims, type_id, offset) in raw {
            let ty = GgmlType::from_id(type_id, &name)?;
            let bad = |why: String| malformed(at, format!("tensor {name}: {why}"));
            let row = usize::try_from(dims[0]).map_err(|_| bad("row too long".into()))?;
            let row_bytes = ty.row_bytes(row).ok_or_else(|| {
                bad(format!("row of {row} is not a multiple of the {} block", ty.block_elems()))
            })?;
            let rows: u64 = dims[1..].iter().product();
            let bytes = (row_bytes as u64).checked_mul(rows).ok_or_else(|| bad("size overflows".into()))?;
            if offset % alignment != 0 {
                return Err(bad(format!("offset {offset} not aligned to {alignment}")));
            }
            if offset.checked_add(bytes).is_none_or(|end| end > data_len) {
                return Err(bad(format!("data {offset}+{bytes} runs past the end ({data_len})")));
            }
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(bad("duplicate name".into()));
            }
            tensors.push(TensorInfo { name, dims, ty, offset, bytes });
        }
        Ok(Self { path: path.to_path_buf(), file, version, metadata, tensors, index, data_start })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A tensor's directory entry.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// Reads one tensor's bytes (exactly `info.bytes`).
    pub fn read_tensor(&self, info: &TensorInfo) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; info.bytes as usize];
        self.file
            .read_exact_at(&mut buf, self.data_start + info.offset)
            .map_err(|source| InferError::Io { path: self.path.clone(), source })?;
        Ok(buf)
    }
}

type RawEntry = (u64, String, Vec<u64>, u32, u64);

fn read_tensor_entry<R: std::io::Read>(cur: &mut Cursor<R>) -> Result<RawEntry> {
    let at = cur.pos();
    let name = cur.string()?;
    let n_dims = cur.u32()?;
    if n_dims == 0 || n_dims > DIMS_MAX {
        return Err(malformed(at, format!("tensor {name}: {n_dims} dimensions")));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    let mut elems: u64 = 1;
    for _ in 0..n_dims {
        let d = cur.u64()?;
        elems = elems.saturating_mul(d);
        dims.push(d);
    }
    if dims.contains(&0) || elems > ELEMS_MAX {
        return Err(malformed(at, format!("tensor {name}: absurd shape {dims:?}")));
    }
    let type_id = cur.u32()?;
    let offset = cur.u64()?;
    Ok((at, name, dims, type_id, offset))
}
