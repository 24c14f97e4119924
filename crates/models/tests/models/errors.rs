//! A corrupted or truncated model file, an unknown architecture or quantisation type, or a
//! missing tokenizer gives an error naming the file and the problem, never a panic.

use std::path::Path;

use memgpt_models::encoder::bert::{Bert, Precision};
use memgpt_models::llama::decoder::Decoder;
use memgpt_models::formats::gguf::Gguf;
use tch::{Device, Kind};

use crate::common::models;

/// A minimal GGUF writer: string and u32 metadata, tensors of raw bytes.
struct GgufWriter {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    data: Vec<u8>,
    n_tensors: u64,
}

impl GgufWriter {
    fn new() -> Self {
        Self { kv: Vec::new(), n_kv: 0, infos: Vec::new(), data: Vec::new(), n_tensors: 0 }
    }
    fn string(buf: &mut Vec<u8>, s: &str) {
        buf.extend((s.len() as u64).to_le_bytes());
        buf.extend(s.as_bytes());
    }
    fn meta_str(mut self, key: &str, value: &str) -> Self {
        Self::string(&mut self.kv, key);
        self.kv.extend(8u32.to_le_bytes());
        Self::string(&mut self.kv, value);
        self.n_kv += 1;
        self
    }
    fn meta_u32(mut self, key: &str, value: u32) -> Self {
        Self::string(&mut self.kv, key);
        self.kv.extend(4u32.to_le_bytes());
        self.kv.extend(value.to_le_bytes());
        self.n_kv += 1;
        self
    }
    fn tensor(mut self, name: &str, dims: &[u64], ggml_type: u32, bytes: &[u8]) -> Self {
        Self::string(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ggml_type.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        while self.data.len() % 32 != 0 {
            self.data.push(0);
        }
        self.n_tensors += 1;
        self
    }
    fn write(self, path: &Path) {
        let mut out = Vec::new();
        out.extend(0x4655_4747u32.to_le_bytes());
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(self.kv);
        out.extend(self.infos);
        while out.len() % 32 != 0 {
            out.push(0);
        }
        out.extend(self.data);
        std::fs::write(path, out).unwrap();
    }
}

fn load_err(path: &Path) -> String {
    match Decoder::load(path, Device::Cpu, Kind::Float) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(err) => err.to_string(),
    }
}

#[test]
fn a_truncated_gguf_names_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.gguf");
    let full = std::fs::read(models().join(memgpt_models::DEFAULT_DECODER)).unwrap();
    for cut in [3usize, 100, 2_000_000, full.len() - 1000] {
        std::fs::write(&path, &full[..cut]).unwrap();
        let err = load_err(&path);
        assert!(err.contains("truncated.gguf"), "{err}");
        assert!(err.contains("truncated"), "cut at {cut}: {err}");
    }
}

#[test]
fn a_corrupted_gguf_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, b"PK\x03\x04 this is a zip file, not a model").unwrap();
    let err = load_err(&path);
    assert!(err.contains("bad.gguf") && err.contains("not a GGUF file"), "{err}");

    // An absurd string length in the metadata.
    let mut bytes = Vec::new();
    bytes.extend(0x4655_4747u32.to_le_bytes());
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(u64::MAX.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let err = load_err(&path);
    assert!(err.contains("implausible") || err.contains("truncated"), "{err}");

    let missing = dir.path().join("missing.gguf");
    let err = load_err(&missing);
    assert!(err.contains("missing.gguf") && err.contains("not found"), "{err}");
}

#[test]
fn an_unknown_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arch.gguf");
    GgufWriter::new().meta_str("general.architecture", "mamba").meta_str("tokenizer.ggml.model", "gpt2").write(&path);
    // The tokenizer fails first here (no tokens); check the architecture path on its own too.
    let err = load_err(&path);
    assert!(err.contains("arch.gguf"), "{err}");
    let gguf = Gguf::open(&path).unwrap();
    let err = memgpt_models::llama::Llama::from_gguf(gguf, Device::Cpu, Kind::Float).err().unwrap().to_string();
    assert!(err.contains("arch.gguf") && err.contains("architecture `mamba`"), "{err}");
}

#[test]
fn unknown_and_unsupported_quantisation_types_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quant.gguf");
    GgufWriter::new().meta_str("general.architecture", "llama").tensor("blk.0.attn_q.weight", &[32], 99, &[0u8; 32]).write(&path);
    let err = Gguf::open(&path).err().unwrap().to_string();
    assert!(err.contains("quant.gguf") && err.contains("unknown quantisation type 99"), "{err}");

    // Q5_K (type 13) is known but not supported by the loader: the error says which tensor.
    let path = dir.path().join("q5k.gguf");
    GgufWriter::new()
        .meta_str("general.architecture", "llama")
        .meta_u32("llama.block_count", 1)
        .meta_u32("llama.embedding_length", 256)
        .meta_u32("llama.feed_forward_length", 256)
        .meta_u32("llama.attention.head_count", 1)
        .meta_u32("llama.vocab_size", 1)
        .tensor("blk.0.attn_q.weight", &[256, 256], 13, &vec![0u8; 176 * 256])
        .write(&path);
    let gguf = Gguf::open(&path).unwrap();
    let err = memgpt_models::llama::Llama::from_gguf(gguf, Device::Cpu, Kind::Float).err().unwrap().to_string();
    assert!(err.contains("q5k.gguf") && err.contains("unsupported quantisation type Q5_K"), "{err}");
}

#[test]
fn a_missing_tokenizer_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notok.gguf");
    GgufWriter::new().meta_str("general.architecture", "llama").write(&path);
    let err = load_err(&path);
    assert!(err.contains("notok.gguf") && err.contains("holds no tokenizer"), "{err}");

    // An encoder folder without tokenizer.json.
    let enc = dir.path().join("encoder");
    std::fs::create_dir(&enc).unwrap();
    let src = models().join(memgpt_models::DEFAULT_ENCODER);
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), enc.join(f)).unwrap();
    }
    let err = Bert::load(&enc, Device::Cpu, Precision::F32).err().unwrap().to_string();
    assert!(err.contains("tokenizer.json") && err.contains("not found"), "{err}");

    // And one whose weights are cut short.
    std::fs::copy(src.join("tokenizer.json"), enc.join("tokenizer.json")).unwrap();
    let weights = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(enc.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let err = Bert::load(&enc, Device::Cpu, Precision::F32).err().unwrap().to_string();
    assert!(err.contains("model.safetensors") && err.contains("not a valid safetensors file"), "{err}");
}
