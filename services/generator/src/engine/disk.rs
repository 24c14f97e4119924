//! The memory-KV cache's disk tier (`--memory-cache-dir`): memories' states kept in files
//! under a byte budget, so a restarted generator answers fused requests without computing
//! them again. Lookups go RAM, then disk, then compute ([`super::fused`]).
//!
//! A file is named by a SHA-256 digest of everything its states depend on: the model (a
//! digest of its files' bytes and the compute dtype, taken at start), the prompt prefix the
//! memory was computed after, the memory's key and its tokens. The digest is also in the
//! file, and checked on reading together with the tokens and shapes, so states of other
//! weights, another prefix or another text are never used; a CRC-32 of the whole file
//! catches torn or damaged files, which are deleted and counted (`memory_cache_disk_errors`)
//! and their memory computed again. Files are encoded, checksummed and written by a writer
//! thread (to a temporary name, then renamed), so the model thread never waits on a copy, a
//! checksum or a disk write; least recently used files go first when the budget is reached.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use memgpt_models::llama::fused::MemoryKv;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use super::stats::Stats;
use crate::error::{GeneratorError, Result};

const MAGIC: &[u8; 8] = b"MGPTKV01";
const SUFFIX: &str = "kv";

/// What the writer thread does, in order.
enum Write {
    /// States to encode and write: handles sharing the cached tensors' storage (a tensor
    /// handle may move to another thread, not be shared with one).
    Put(PathBuf, MemoryKv, [u8; 32]),
    Remove(PathBuf),
}

struct File {
    bytes: u64,
    last_used: u64,
}

/// Memory states on disk.
pub(super) struct DiskTier {
    dir: PathBuf,
    budget: u64,
    /// Digest of the model's weights and compute dtype.
    model: [u8; 32],
    files: HashMap<String, File>,
    bytes: u64,
    clock: u64,
    writer: Option<Sender<Write>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
}

/// The digest of a model: its file's bytes (every file of a folder, by name) and the dtype.
pub(super) fn model_digest(model: &Path, kind: Kind) -> std::io::Result<[u8; 32]> {
    let mut files = if model.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(model)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
        v.sort();
        v
    } else {
        vec![model.to_path_buf()]
    };
    let mut h = Sha256::new();
    for path in files.drain(..) {
        h.update(path.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        let mut f = std::fs::File::open(&path)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    h.update(format!("{kind:?}").as_bytes());
    Ok(h.finalize().into())
}

fn kind_code(kind: Kind) -> Option<u8> {
    match kind {
        Kind::Float => Some(1),
        Kind::BFloat16 => Some(2),
        Kind::Half => Some(3),
        _ => None,
    }
}

fn code_kind(code: u8) -> Option<Kind> {
    [Kind::Float, Kind::BFloat16, Kind::Half].into_iter().find(|&k| kind_code(k) == Some(code))
}

impl DiskTier {
    /// Opens (creating) `dir` for states of the model whose digest is `model`, at most
    /// `budget` bytes: finds the files already there, and removes unfinished ones.
    pub(super) fn open(dir: &Path, budget: u64, model: [u8; 32], stats: Arc<Stats>) -> Result<Self> {
        let fail = |e: std::io::Error| GeneratorError::Internal(format!("--memory-cache-dir {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let mut found: Vec<(String, u64, std::time::SystemTime)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().map_err(fail)?;
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            } else if meta.is_file() && name.ends_with(&format!(".{SUFFIX}")) {
                found.push((name, meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH)));
            }
        }
        // Oldest first, so the clock orders them as they were written.
        found.sort_by_key(|f| f.2);
        let (tx, rx) = channel::<Write>();
        let thread = std::thread::Builder::new()
            .name("memory-cache-writer".into())
            .spawn(move || {
                for w in rx {
                    match w {
                        Write::Put(path, kv, digest) => {
                            let tmp = path.with_extension("tmp");
                            let Some(bytes) = encode(&kv, &digest) else { continue };
                            if let Err(err) = std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, &path)) {
                                tracing::warn!(path = %path.display(), error = %err, "writing memory states failed");
                                let _ = std::fs::remove_file(&tmp);
                            }
                        }
                        Write::Remove(path) => {
                            let _ = std::fs::remove_file(path);
                        }
                    }
                }
            })
            .map_err(fail)?;
        let mut tier = Self { dir: dir.to_path_buf(), budget, model, files: HashMap::new(), bytes: 0, clock: 0, writer: Some(tx), thread: Some(thread), stats };
        for (name, bytes, _) in found {
            tier.clock += 1;
            tier.bytes += bytes;
            tier.files.insert(name, File { bytes, last_used: tier.clock });
        }
        tier.evict();
        tier.publish();
        tracing::info!(dir = %dir.display(), files = tier.files.len(), bytes = tier.bytes, budget, "memory-KV disk tier open");
        Ok(tier)
    }

    /// The digest naming the states of memory `key` (tokens `tokens`) computed after `prefix`.
    fn digest(&self, prefix: &[u32], key: u64, tokens: &[u32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.model);
        for part in [prefix, tokens] {
            h.update((part.len() as u64).to_le_bytes());
            for t in part {
                h.update(t.to_le_bytes());
            }
        }
        h.update(key.to_le_bytes());
        h.finalize().into()
    }

    fn name(digest: &[u8; 32]) -> String {
        let hex: String = digest[..20].iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}.{SUFFIX}")
    }

    /// The states on disk for this memory, when a whole, matching file holds them.
    pub(super) fn load(&mut self, prefix: &[u32], key: u64, tokens: &[u32], device: Device) -> Option<MemoryKv> {
        let digest = self.digest(prefix, key, tokens);
        let name = Self::name(&digest);
        if !self.files.contains_key(&name) {
            return None;
        }
        let path = self.dir.join(&name);
        let read = std::fs::read(&path).map_err(|e| e.to_string()).and_then(|bytes| decode(&bytes, &digest, tokens, device));
        match read {
            Ok(kv) => {
                self.clock += 1;
                if let Some(f) = self.files.get_mut(&name) {
                    f.last_used = self.clock;
                }
                self.stats.memory_disk_hits.fetch_add(1, Ordering::Relaxed);
                Some(kv)
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), reason, "memory states on disk unusable; computing them again");
                self.stats.memory_disk_errors.fetch_add(1, Ordering::Relaxed);
                self.forget(&name);
                None
            }
        }
    }

    /// Writes these states (in the background), evicting the least recently used files to
    /// stay within the budget.
    pub(super) fn store(&mut self, prefix: &[u32], key: u64, kv: &MemoryKv) {
        let digest = self.digest(prefix, key, &kv.tokens);
        let name = Self::name(&digest);
        let Some(size) = encoded_len(kv) else { return };
        if size > self.budget || self.files.contains_key(&name) {
            return;
        }
        self.clock += 1;
        self.bytes += size;
        self.files.insert(name.clone(), File { bytes: size, last_used: self.clock });
        let handles = |ts: &[Tensor]| ts.iter().map(Tensor::shallow_clone).collect();
        let shared = MemoryKv { tokens: kv.tokens.clone(), base: kv.base, keys: handles(&kv.keys), values: handles(&kv.values) };
        self.send(Write::Put(self.dir.join(name), shared, digest));
        self.evict();
        self.publish();
    }

    fn evict(&mut self) {
        while self.bytes > self.budget {
            let Some(oldest) = self.files.iter().min_by_key(|(_, f)| f.last_used).map(|(n, _)| n.clone()) else { break };
            self.forget(&oldest);
            self.stats.memory_disk_evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn forget(&mut self, name: &str) {
        if let Some(f) = self.files.remove(name) {
            self.bytes -= f.bytes;
            self.send(Write::Remove(self.dir.join(name)));
        }
        self.publish();
    }

    fn send(&self, w: Write) {
        if let Some(tx) = &self.writer {
            let _ = tx.send(w);
        }
    }

    fn publish(&self) {
        self.stats.memory_disk_bytes.store(self.bytes, Ordering::Relaxed);
        self.stats.memory_disk_entries.store(self.files.len() as u64, Ordering::Relaxed);
    }
}

impl Drop for DiskTier {
    /// Finishes the writes queued (a stopped generator leaves whole files behind).
    fn drop(&mut self) {
        self.writer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The length of `kv`'s file (header, tokens, states, checksum); None for a dtype the tier
/// does not store.
fn encoded_len(kv: &MemoryKv) -> Option<u64> {
    let first = kv.keys.first()?;
    kind_code(first.kind())?;
    let states: usize = kv.keys.iter().chain(&kv.values).map(|t| t.numel() * t.kind().elt_size_in_bytes()).sum();
    Some((HEADER + 4 * kv.tokens.len() + states + 4) as u64)
}

/// Bytes before the tokens: magic, digest, base, four u32 sizes, the dtype code.
const HEADER: usize = 8 + 32 + 8 + 16 + 1;

/// The file of `kv`: magic, digest, base, token count, layers, heads, head width, dtype,
/// tokens, each layer's keys then values, CRC-32 of all before it. None for a dtype the tier
/// does not store.
fn encode(kv: &MemoryKv, digest: &[u8; 32]) -> Option<Vec<u8>> {
    let first = kv.keys.first()?;
    let [_, heads, n, dim] = first.size()[..] else { return None };
    let code = kind_code(first.kind())?;
    let mut out = Vec::with_capacity(kv.bytes() as usize + 128);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(digest);
    out.extend_from_slice(&kv.base.to_le_bytes());
    for v in [n, kv.keys.len() as i64, heads, dim] {
        out.extend_from_slice(&(v as u32).to_le_bytes());
    }
    out.push(code);
    for t in &kv.tokens {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for t in kv.keys.iter().zip(&kv.values).flat_map(|(k, v)| [k, v]) {
        let t = t.to_device(Device::Cpu).contiguous();
        let at = out.len();
        let len = t.numel() * t.kind().elt_size_in_bytes();
        out.resize(at + len, 0);
        t.copy_data_u8(&mut out[at..], t.numel());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// The states in `bytes`, checked against the digest and tokens asked for.
fn decode(bytes: &[u8], digest: &[u8; 32], tokens: &[u32], device: Device) -> std::result::Result<MemoryKv, String> {
    let body = bytes.len().checked_sub(4).filter(|&n| n >= HEADER).ok_or("the file is too short")?;
    let crc = u32::from_le_bytes(bytes[body..].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[..body]) != crc {
        return Err("checksum mismatch".into());
    }
    if &bytes[..8] != MAGIC || bytes[8..40] != digest[..] {
        return Err("another format, model, prefix or memory".into());
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as i64;
    let base = i64::from_le_bytes(bytes[40..48].try_into().expect("8 bytes"));
    let (n, layers, heads, dim) = (u32_at(48), u32_at(52), u32_at(56), u32_at(60));
    let kind = code_kind(bytes[64]).ok_or("unknown dtype")?;
    let mut at = HEADER;
    let stored: Vec<u32> = (0..n as usize).map(|i| u32_at(at + 4 * i) as u32).collect();
    if stored != tokens {
        return Err("other tokens".into());
    }
    at += 4 * n as usize;
    let len = (heads * n * dim) as usize * kind.elt_size_in_bytes();
    if at + 2 * layers as usize * len != body {
        return Err("the shapes do not match the file's length".into());
    }
    let mut tensor = || {
        let t = Tensor::from_data_size(&bytes[at..at + len], &[1, heads, n, dim], kind).to_device(device);
        at += len;
        t
    };
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    for _ in 0..layers {
        keys.push(tensor());
        values.push(tensor());
    }
    Ok(MemoryKv { tokens: tokens.to_vec(), base, keys, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(tokens: &[u32]) -> MemoryKv {
        let t = |s: f64| Tensor::arange(2 * tokens.len() as i64 * 4, (Kind::Float, Device::Cpu)).view([1, 2, tokens.len() as i64, 4]) * s;
        MemoryKv { tokens: tokens.to_vec(), base: 7, keys: vec![t(1.0), t(2.0)], values: vec![t(3.0), t(4.0)] }
    }

    #[test]
    fn states_round_trip_and_damage_is_refused() {
        let digest = [9u8; 32];
        let original = kv(&[5, 6, 7]);
        let bytes = encode(&original, &digest).expect("f32 is stored");
        assert_eq!(Some(bytes.len() as u64), encoded_len(&original));
        let back = decode(&bytes, &digest, &[5, 6, 7], Device::Cpu).expect("a whole file");
        assert_eq!(back.base, 7);
        for (a, b) in original.keys.iter().chain(&original.values).zip(back.keys.iter().chain(&back.values)) {
            assert!(a.equal(b));
        }
        // Another digest or other tokens: refused.
        assert!(decode(&bytes, &[1u8; 32], &[5, 6, 7], Device::Cpu).is_err());
        assert!(decode(&bytes, &digest, &[5, 6, 8], Device::Cpu).is_err());
        // A flipped byte or a torn file: refused by the checksum.
        let mut flipped = bytes.clone();
        flipped[100] ^= 1;
        assert_eq!(decode(&flipped, &digest, &[5, 6, 7], Device::Cpu).err().as_deref(), Some("checksum mismatch"));
        assert!(decode(&bytes[..bytes.len() / 2], &digest, &[5, 6, 7], Device::Cpu).is_err());
    }

    #[test]
    fn the_tier_keeps_to_its_budget_and_reads_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let size = encode(&kv(&[1, 2, 3]), &[0; 32]).unwrap().len() as u64;
        let mut tier = DiskTier::open(dir.path(), 2 * size, [3; 32], Arc::clone(&stats)).unwrap();
        for i in 0..3u32 {
            tier.store(&[1, 2], u64::from(i), &kv(&[i, i + 1, i + 2]));
        }
        assert_eq!((tier.files.len(), stats.memory_disk_evictions.load(Ordering::Relaxed)), (2, 1));
        drop(tier);
        let mut tier = DiskTier::open(dir.path(), 2 * size, [3; 32], Arc::clone(&stats)).unwrap();
        assert!(tier.load(&[1, 2], 0, &[0, 1, 2], Device::Cpu).is_none(), "the oldest was evicted");
        assert!(tier.load(&[1, 2], 2, &[2, 3, 4], Device::Cpu).is_some());
        // Another prefix or another model finds nothing.
        assert!(tier.load(&[1, 9], 2, &[2, 3, 4], Device::Cpu).is_none());
        drop(tier);
        let mut other = DiskTier::open(dir.path(), 2 * size, [4; 32], stats).unwrap();
        assert!(other.load(&[1, 2], 2, &[2, 3, 4], Device::Cpu).is_none());
    }
}
