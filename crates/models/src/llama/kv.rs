//! The KV cache as an explicit type: per-layer keys and values of a batch of sequences, with
//! a capacity and a filled length, that a scheduler can batch, slice and extend.

use tch::{Device, Kind, Tensor};

/// Keys and values of every layer: `[batch, kv_heads, capacity, head_dim]` each.
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: i64,
}

impl KvCache {
    /// An empty cache.
    pub fn new(layers: i64, batch: i64, kv_heads: i64, capacity: i64, head_dim: i64, kind: Kind, device: Device) -> Self {
        let shape = [batch, kv_heads, capacity, head_dim];
        let keys = (0..layers).map(|_| Tensor::zeros(shape, (kind, device))).collect();
        let values = (0..layers).map(|_| Tensor::zeros(shape, (kind, device))).collect();
        Self { keys, values, len: 0 }
    }

    /// An empty cache whose storage is not zeroed (only filled positions are ever read).
    pub fn uninit(layers: i64, batch: i64, kv_heads: i64, capacity: i64, head_dim: i64, kind: Kind, device: Device) -> Self {
        let shape = [batch, kv_heads, capacity, head_dim];
        let keys = (0..layers).map(|_| Tensor::empty(shape, (kind, device))).collect();
        let values = (0..layers).map(|_| Tensor::empty(shape, (kind, device))).collect();
        Self { keys, values, len: 0 }
    }

    /// Layers.
    pub fn layers(&self) -> usize {
        self.keys.len()
    }

    /// Copies keys and values (`[B, H, T, D]`) of every layer into positions `start..start+T`
    /// and marks the cache filled up to there (a shared prefix, or cached memory states).
    pub fn write(&mut self, start: i64, keys: &[Tensor], values: &[Tensor]) {
        let end = self.put(start, keys, values);
        self.len = self.len.max(end);
    }

    /// Copies keys and values (`[B, H, T, D]`) of every layer into positions `start..start+T`
    /// without changing the filled length (states laid out ahead of the computation that
    /// reaches them); returns `start + T`.
    pub fn put(&mut self, start: i64, keys: &[Tensor], values: &[Tensor]) -> i64 {
        let mut end = start;
        for (layer, (k, v)) in keys.iter().zip(values).enumerate() {
            let t = k.size()[2];
            self.keys[layer].narrow(2, start, t).copy_(k);
            self.values[layer].narrow(2, start, t).copy_(v);
            end = start + t;
        }
        end
    }

    /// Marks the first `len` positions filled (at most the capacity): positions written by
    /// [`KvCache::put`] become visible to the next step, which then starts at `len`.
    pub fn set_filled(&mut self, len: i64) {
        self.len = len.clamp(0, self.capacity());
    }

    /// Copies of keys and values of every layer at positions `start..start+len`.
    pub fn read(&self, start: i64, len: i64) -> (Vec<Tensor>, Vec<Tensor>) {
        let copy = |t: &Tensor| t.narrow(2, start, len).copy();
        (self.keys.iter().map(copy).collect(), self.values.iter().map(copy).collect())
    }

    /// Filled positions (the same for every row).
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> i64 {
        self.keys.first().map(|k| k.size()[2]).unwrap_or(0)
    }

    /// Rows.
    pub fn batch(&self) -> i64 {
        self.keys.first().map(|k| k.size()[0]).unwrap_or(0)
    }

    /// Bytes held by the tensors.
    pub fn bytes(&self) -> i64 {
        self.keys.iter().chain(&self.values).map(|t| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64).sum()
    }

    /// Writes `k` and `v` ([B, H, T, D]) of `layer` at `start` and returns the filled views
    /// `[.., 0..start+T, ..]` of keys and values.
    pub(crate) fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor, start: i64) -> (Tensor, Tensor) {
        let t = k.size()[2];
        self.keys[layer].narrow(2, start, t).copy_(k);
        self.values[layer].narrow(2, start, t).copy_(v);
        (self.keys[layer].narrow(2, 0, start + t), self.values[layer].narrow(2, 0, start + t))
    }

    /// Writes `k` and `v` ([B, H, T, D]) of `layer` at the positions `index` ([T]) and returns
    /// the views `[.., 0..end, ..]` of keys and values.
    pub(crate) fn scatter(&mut self, layer: usize, k: &Tensor, v: &Tensor, index: &Tensor, end: i64) -> (Tensor, Tensor) {
        let _ = self.keys[layer].index_copy_(2, index, k);
        let _ = self.values[layer].index_copy_(2, index, v);
        (self.keys[layer].narrow(2, 0, end), self.values[layer].narrow(2, 0, end))
    }

    /// Keys and values of a layer at `slots` (filled or laid in).
    pub(crate) fn at(&self, layer: usize, slots: &Tensor) -> (Tensor, Tensor) {
        (self.keys[layer].index_select(2, slots), self.values[layer].index_select(2, slots))
    }

    pub(crate) fn set_len(&mut self, len: i64) {
        self.len = len;
    }

    /// Forgets everything after `len` positions.
    pub fn truncate(&mut self, len: i64) {
        self.len = self.len.min(len.max(0));
    }

    /// A cache of the given rows only (a scheduler dropping finished sequences).
    pub fn select_rows(&self, rows: &[i64]) -> Self {
        let device = self.keys.first().map(|k| k.device()).unwrap_or(Device::Cpu);
        let index = Tensor::from_slice(rows).to_device(device);
        Self {
            keys: self.keys.iter().map(|k| k.index_select(0, &index)).collect(),
            values: self.values.iter().map(|v| v.index_select(0, &index)).collect(),
            len: self.len,
        }
    }

    /// The same cache with room for `capacity` positions (grows or shrinks to at least `len`).
    pub fn with_capacity(&self, capacity: i64) -> Self {
        let capacity = capacity.max(self.len);
        let resize = |t: &Tensor| {
            let mut shape = t.size();
            shape[2] = capacity;
            let out = Tensor::zeros(shape.as_slice(), (t.kind(), t.device()));
            out.narrow(2, 0, self.len).copy_(&t.narrow(2, 0, self.len));
            out
        };
        Self { keys: self.keys.iter().map(resize).collect(), values: self.values.iter().map(resize).collect(), len: self.len }
    }

    /// Keys of a layer (filled part).
    pub fn keys(&self, layer: usize) -> Tensor {
        self.keys[layer].narrow(2, 0, self.len)
    }

    /// Values of a layer (filled part).
    pub fn values(&self, layer: usize) -> Tensor {
        self.values[layer].narrow(2, 0, self.len)
    }
}
