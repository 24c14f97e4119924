//! GGUF reading: header, metadata and tensor directory, with every length and offset checked
//! against the file, so a corrupted or truncated file gives an error naming the problem.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};
use crate::formats::quant::GgmlType;

const MAGIC: u32 = 0x4655_4747; // "GGUF", little-endian
const MAX_STRING: u64 = 1 << 30;
const MAX_ARRAY: u64 = 1 << 28;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Unsigned integer (u8 to u64).
    U64(u64),
    /// Signed integer (i8 to i64).
    I64(i64),
    /// Float (f32 or f64).
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string (invalid sequences replaced).
    String(String),
    /// Array of values.
    Array(Vec<Value>),
}

impl Value {
    /// As an unsigned integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    /// As a float.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }
    /// As a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    /// As an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's directory entry.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, innermost first (GGUF order).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl TensorInfo {
    /// Elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Shape in row-major (PyTorch) order: GGUF lists the innermost dimension first.
    pub fn shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }
}

/// A parsed GGUF file held in memory.
pub struct Gguf {
    /// Where it came from.
    pub path: PathBuf,
    /// Format version.
    pub version: u32,
    /// Metadata.
    pub metadata: HashMap<String, Value>,
    /// Tensors by name.
    pub tensors: HashMap<String, TensorInfo>,
    data: memmap2::Mmap,
    data_start: usize,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn fail(&self, what: impl Into<String>) -> ModelError {
        ModelError::Format { path: self.path.to_path_buf(), reason: format!("{} (at byte {})", what.into(), self.at) }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.fail(format!("truncated: {what} needs {n} bytes, {} left", self.bytes.len() - self.at)));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        if len > MAX_STRING {
            return Err(self.fail(format!("{what}: string length {len} is implausible")));
        }
        Ok(String::from_utf8_lossy(self.take(len as usize, what)?).into_owned())
    }
    fn value(&mut self, kind: u32, what: &str, depth: usize) -> Result<Value> {
        Ok(match kind {
            0 => Value::U64(self.take(1, what)?[0] as u64),
            1 => Value::I64(self.take(1, what)?[0] as i8 as i64),
            2 => Value::U64(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()) as u64),
            3 => Value::I64(i16::from_le_bytes(self.take(2, what)?.try_into().unwrap()) as i64),
            4 => Value::U64(self.u32(what)? as u64),
            5 => Value::I64(self.u32(what)? as i32 as i64),
            6 => Value::F64(f32::from_le_bytes(self.take(4, what)?.try_into().unwrap()) as f64),
            7 => Value::Bool(self.take(1, what)?[0] != 0),
            8 => Value::String(self.string(what)?),
            9 => {
                if depth > 2 {
                    return Err(self.fail(format!("{what}: arrays nested too deep")));
                }
                let inner = self.u32(what)?;
                let len = self.u64(what)?;
                if len > MAX_ARRAY || len > (self.bytes.len() - self.at) as u64 {
                    return Err(self.fail(format!("{what}: array length {len} exceeds the file")));
                }
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.value(inner, what, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(self.u64(what)? as i64),
            12 => Value::F64(f64::from_le_bytes(self.take(8, what)?.try_into().unwrap())),
            other => return Err(self.fail(format!("{what}: unknown metadata value type {other}"))),
        })
    }
}

impl Gguf {
    /// Maps and parses a GGUF file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the file is opened read-only and not modified while mapped by this process.
        let data = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let (version, metadata, tensors, data_start) = parse(&data, path)?;
        Ok(Self { path: path.to_path_buf(), version, metadata, tensors, data, data_start })
    }

    /// Parses GGUF bytes (used by fuzzing and tests); tensor data must follow the header.
    pub fn parse_bytes(bytes: &[u8]) -> Result<(HashMap<String, Value>, HashMap<String, TensorInfo>)> {
        let (_, metadata, tensors, _) = parse(bytes, Path::new("<bytes>"))?;
        Ok((metadata, tensors))
    }

    /// Raw bytes of a tensor.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let start = self.data_start + info.offset as usize;
        &self.data[start..start + info.size as usize]
    }

    /// A metadata value, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&Value> {
        self.metadata.get(key).ok_or_else(|| ModelError::Format {
            path: self.path.clone(),
            reason: format!("metadata key `{key}` is missing"),
        })
    }

    /// An unsigned metadata value.
    pub fn require_u64(&self, key: &str) -> Result<u64> {
        self.require(key)?.as_u64().ok_or_else(|| ModelError::Format {
            path: self.path.clone(),
            reason: format!("metadata key `{key}` is not an unsigned integer"),
        })
    }
}

type Parsed = (u32, HashMap<String, Value>, HashMap<String, TensorInfo>, usize);

fn parse(bytes: &[u8], path: &Path) -> Result<Parsed> {
    let mut r = Reader { bytes, at: 0, path };
    let magic = r.u32("magic")?;
    if magic != MAGIC {
        return Err(r.fail(format!("not a GGUF file (magic {magic:#010x})")));
    }
    let version = r.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(r.fail(format!("unsupported GGUF version {version}")));
    }
    let n_tensors = r.u64("tensor count")?;
    let n_kv = r.u64("metadata count")?;
    if n_tensors > 1 << 20 || n_kv > 1 << 20 {
        return Err(r.fail(format!("implausible counts: {n_tensors} tensors, {n_kv} metadata keys")));
    }
    let mut metadata = HashMap::new();
    for _ in 0..n_kv {
        let key = r.string("metadata key")?;
        let kind = r.u32(&key)?;
        let value = r.value(kind, &key, 0)?;
        metadata.insert(key, value);
    }
    let mut infos = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = r.string("tensor name")?;
        let n_dims = r.u32(&name)?;
        if n_dims == 0 || n_dims > 4 {
            return Err(r.fail(format!("tensor `{name}` has {n_dims} dimensions")));
        }
        let dims = (0..n_dims).map(|_| r.u64(&name)).collect::<Result<Vec<_>>>()?;
        let raw_type = r.u32(&name)?;
        let ggml_type = GgmlType::from_u32(raw_type)
            .ok_or_else(|| r.fail(format!("tensor `{name}` has unknown quantisation type {raw_type}")))?;
        let offset = r.u64(&name)?;
        infos.push((name, dims, ggml_type, offset));
    }
    let alignment = metadata.get("general.alignment").and_then(Value::as_u64).unwrap_or(32).max(1) as usize;
    let data_start = r.at.div_ceil(alignment) * alignment;
    let data_len = bytes.len().saturating_sub(data_start) as u64;
    let mut tensors = HashMap::with_capacity(infos.len());
    for (name, dims, ggml_type, offset) in infos {
        let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let size = elements.and_then(|e| ggml_type.bytes_for(e));
        let Some(size) = size else {
            return Err(r.fail(format!("tensor `{name}`: {dims:?} is not a whole number of {ggml_type:?} blocks")));
        };
        if offset.checked_add(size).is_none_or(|end| end > data_len) {
            return Err(ModelError::Format {
                path: path.to_path_buf(),
                reason: format!("truncated: tensor `{name}` needs bytes {offset}..{} of a {data_len}-byte data section", offset.saturating_add(size)),
            });
        }
        tensors.insert(name.clone(), TensorInfo { name, dims, ggml_type, offset, size });
    }
    Ok((version, metadata, tensors, data_start))
}
