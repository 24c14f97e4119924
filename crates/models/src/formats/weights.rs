//! Weight sources: tensors by name from a GGUF file (dequantised) or safetensors files, turned
//! into tch tensors of the compute dtype on the compute device.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::kernels::blocks::BlockMatrix;
use crate::error::{ModelError, Result};
use crate::formats::gguf::Gguf;
use crate::formats::quant::dequantize;

/// Where the weights come from.
pub enum Weights {
    /// A GGUF file.
    Gguf(Gguf),
    /// One or more safetensors files (a Hugging Face folder).
    Safetensors(Vec<(PathBuf, memmap2::Mmap)>),
}

impl Weights {
    /// Maps every `*.safetensors` file of a folder.
    pub fn safetensors_dir(dir: &Path) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| ModelError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(ModelError::format(dir, "no .safetensors file in the folder"));
        }
        let mut maps = Vec::with_capacity(files.len());
        for path in files {
            let file = std::fs::File::open(&path).map_err(|e| ModelError::io(&path, e))?;
            // SAFETY: read-only mapping of a file this process does not modify.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(&path, e))?;
            safetensors::SafeTensors::deserialize(&map).map_err(|e| ModelError::format(&path, format!("not a valid safetensors file: {e}")))?;
            maps.push((path, map));
        }
        Ok(Self::Safetensors(maps))
    }

    /// Whether a tensor exists.
    pub fn has(&self, name: &str) -> bool {
        match self {
            Self::Gguf(g) => g.tensors.contains_key(name),
            Self::Safetensors(files) => files
                .iter()
                .any(|(_, m)| safetensors::SafeTensors::deserialize(m).map(|s| s.tensor(name).is_ok()).unwrap_or(false)),
        }
    }

    fn source(&self) -> &Path {
        match self {
            Self::Gguf(g) => &g.path,
            Self::Safetensors(files) => files.first().map(|(p, _)| p.as_path()).unwrap_or(Path::new("")),
        }
    }

    /// The tensor `name` as f32 on the CPU, in row-major (PyTorch) shape.
    pub fn f32(&self, name: &str) -> Result<Tensor> {
        match self {
            Self::Gguf(g) => {
                let info = g.tensors.get(name).ok_or_else(|| ModelError::format(&g.path, format!("tensor `{name}` is missing")))?;
                let values = dequantize(info.ggml_type, g.tensor_bytes(info)).ok_or_else(|| ModelError::Unsupported {
                    path: g.path.clone(),
                    what: format!("quantisation type {:?} of tensor `{name}`", info.ggml_type),
                })?;
                Ok(Tensor::from_slice(&values).reshape(info.shape()))
            }
            Self::Safetensors(files) => {
                for (path, map) in files {
                    let st = safetensors::SafeTensors::deserialize(map).map_err(|e| ModelError::format(path, e.to_string()))?;
                    let Ok(view) = st.tensor(name) else { continue };
                    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
                    let kind = match view.dtype() {
                        safetensors::Dtype::F32 => Kind::Float,
                        safetensors::Dtype::F16 => Kind::Half,
                        safetensors::Dtype::BF16 => Kind::BFloat16,
                        other => return Err(ModelError::Unsupported { path: path.clone(), what: format!("dtype {other:?} of tensor `{name}`") }),
                    };
                    let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
                    return Ok(t.to_kind(Kind::Float));
                }
                Err(ModelError::format(self.source(), format!("tensor `{name}` is missing")))
            }
        }
    }

    /// The GGML blocks of the `[rows, cols]` matrix `name` when it is stored in a format the
    /// block products read (Q4_0, Q4_1, Q8_0 in a GGUF file); `None` otherwise.
    pub(crate) fn blocks(&self, name: &str, rows: i64, cols: i64) -> Option<BlockMatrix> {
        let Self::Gguf(g) = self else { return None };
        let info = g.tensors.get(name)?;
        (info.shape() == [rows, cols]).then(|| BlockMatrix::from_ggml(info.ggml_type, g.tensor_bytes(info), rows as usize, cols as usize)).flatten()
    }

    /// The tensor `name` with an expected shape, in `kind` on `device`.
    pub fn load(&self, name: &str, shape: &[i64], kind: Kind, device: Device) -> Result<Tensor> {
        let t = self.f32(name)?;
        if t.size() != shape {
            return Err(ModelError::format(self.source(), format!("tensor `{name}` has shape {:?}, expected {shape:?}", t.size())));
        }
        Ok(t.to_kind(kind).to_device(device))
    }
}

/// A `config.json` as a JSON map.
pub fn read_json(path: &Path) -> Result<HashMap<String, serde_json::Value>> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| ModelError::format(path, format!("invalid JSON: {e}")))
}
