//! A ragged step: the tokens of several sequences (prefill chunks and single decode tokens
//! alike) run through the weight matrices together as one `[1, N]` batch, while attention is
//! computed per sequence against that sequence's own KV cache. No padding, no masks between
//! sequences, and each sequence sees exactly the attention it would see alone: this is what a
//! continuous-batching scheduler builds on (sequences join and leave between steps freely).

use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::kv::KvCache;
use crate::llama::Llama;

/// One sequence's share of a ragged step.
pub struct SeqStep<'a> {
    /// New tokens (a prefill chunk, or the one token to decode); placed right after what
    /// the cache holds.
    pub tokens: &'a [u32],
    /// The sequence's KV cache (batch 1), extended by this step.
    pub cache: &'a mut KvCache,
    /// Key-position ranges `[start, end)` whose attention from the last new token is
    /// reported (memory spans); empty for none.
    pub spans: &'a [(i64, i64)],
    /// Positions of the tokens when they are not the ones right after the cache's filled
    /// part: ascending, at or beyond the filled length, within the capacity. The positions
    /// between them must hold states already (laid in); each token attends to every position
    /// up to its own. None: `cache.len()..cache.len() + tokens`.
    pub positions: Option<&'a [i64]>,
}

/// What a ragged step returns.
pub struct StepOutput {
    /// Logits of each sequence's last new token, `[sequences, vocab]`, f32.
    pub logits: Tensor,
    /// Per sequence, per span: the attention probability the last new token puts on the
    /// span, averaged over heads and the attribution layers.
    pub shares: Vec<Vec<f32>>,
}

impl Llama {
    /// Runs one ragged step; `attribution_layers` is how many of the last layers the span
    /// shares average over (at least 1 is used when any span is asked for).
    pub fn forward_ragged(&self, seqs: &mut [SeqStep<'_>], attribution_layers: usize) -> Result<StepOutput> {
        let c = &self.config;
        if seqs.is_empty() || seqs.iter().any(|s| s.tokens.is_empty()) {
            return Err(ModelError::InvalidInput { field: "tokens".into(), reason: "every sequence needs at least one token".into() });
        }
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut starts = Vec::with_capacity(seqs.len());
        let mut ends = Vec::with_capacity(seqs.len());
        for s in seqs.iter() {
            let start = s.cache.len();
            let (first, end) = match s.positions {
                None => (start, start + s.tokens.len() as i64),
                Some(p) => {
                    let ordered = p.len() == s.tokens.len() && p.windows(2).all(|w| w[0] < w[1]);
                    if !ordered || p[0] < start {
                        return Err(ModelError::InvalidInput { field: "positions".into(), reason: "must be one per token, ascending, at or beyond the filled length".into() });
                    }
                    (p[0], p[p.len() - 1] + 1)
                }
            };
            if end > s.cache.capacity() || end > c.context_length {
                return Err(ModelError::InvalidInput {
                    field: "tokens".into(),
                    reason: format!("{end} positions exceed the KV cache capacity {} or the context length {}", s.cache.capacity(), c.context_length),
                });
            }
            ids.extend(s.tokens.iter().map(|&t| t as i64));
            match s.positions {
                None => positions.extend(start..end),
                Some(p) => positions.extend_from_slice(p),
            }
            starts.push(first);
            ends.push(end);
        }
        let n = ids.len() as i64;
        let device = self.device;
        let tokens = Tensor::from_slice(&ids).to_device(device);
        let positions = Tensor::from_slice(&positions).view([1, n]).to_device(device);
        let mut x = self.embed.index_select(0, &tokens).view([1, n, c.n_embd]);
        let rope = self.rope_at(&positions);
        // Cache slots of scattered tokens, per sequence (empty tensors for contiguous ones).
        let pos_index: Vec<Tensor> = seqs
            .iter()
            .map(|s| match s.positions {
                Some(p) => Tensor::from_slice(p).to_device(device),
                None => Tensor::empty([0], (Kind::Int64, device)),
            })
            .collect();
        let n_layer = self.layers.len();
        let attributed = attribution_layers.clamp(1, n_layer);
        let mut shares: Vec<Vec<f32>> = seqs.iter().map(|s| vec![0.0; s.spans.len()]).collect();
        let group = c.n_head / c.n_head_kv;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        for (li, layer) in self.layers.iter().enumerate() {
            let h = self.rms_norm(&x, &layer.attn_norm);
            let q = h.linear(&layer.wq, layer.bq.as_ref()).view([1, n, c.n_head, c.head_dim]).transpose(1, 2);
            let k = h.linear(&layer.wk, layer.bk.as_ref()).view([1, n, c.n_head_kv, c.head_dim]).transpose(1, 2);
            let v = h.linear(&layer.wv, layer.bv.as_ref()).view([1, n, c.n_head_kv, c.head_dim]).transpose(1, 2);
            let q = self.rope(&q, &rope);
            let k = self.rope(&k, &rope);
            let mut outs = Vec::with_capacity(seqs.len());
            let mut offset = 0;
            for (si, s) in seqs.iter_mut().enumerate() {
                let t = s.tokens.len() as i64;
                let start = starts[si];
                let qi = q.narrow(2, offset, t);
                let end = ends[si];
                let contiguous = s.positions.is_none() || end - start == t;
                let (keys, values) = if contiguous {
                    s.cache.append(li, &k.narrow(2, offset, t), &v.narrow(2, offset, t), start)
                } else {
                    s.cache.scatter(li, &k.narrow(2, offset, t), &v.narrow(2, offset, t), &pos_index[si], end)
                };
                let out = if t == 1 || (start == 0 && contiguous) {
                    // One query sees every key; a fresh prompt is plain causal.
                    Tensor::scaled_dot_product_attention(&qi, &keys, &values, None::<&Tensor>, 0.0, t > 1, None, true)
                } else {
                    let q_pos = match &s.positions {
                        Some(_) if !contiguous => pos_index[si].unsqueeze(1),
                        _ => Tensor::arange_start(start, start + t, (Kind::Int64, device)).unsqueeze(1),
                    };
                    let k_pos = Tensor::arange(end, (Kind::Int64, device)).unsqueeze(0);
                    let mask = k_pos.le_tensor(&q_pos).view([1, 1, t, end]);
                    Tensor::scaled_dot_product_attention(&qi, &keys, &values, Some(&mask), 0.0, false, None, true)
                };
                if !s.spans.is_empty() && li >= n_layer - attributed {
                    let last = qi.narrow(2, t - 1, 1).to_kind(Kind::Float);
                    let keys = keys.to_kind(Kind::Float).repeat_interleave_self_int(group, Some(1), None::<i64>);
                    let probs = (last.matmul(&keys.transpose(-1, -2)) * scale).softmax(-1, Kind::Float).mean_dim(1, false, Kind::Float).view([-1]);
                    for (j, &(a, b)) in s.spans.iter().enumerate() {
                        let (a, b) = (a.clamp(0, end), b.clamp(0, end));
                        if b > a {
                            shares[si][j] += probs.narrow(0, a, b - a).sum(Kind::Float).double_value(&[]) as f32 / attributed as f32;
                        }
                    }
                }
                outs.push(out);
                offset += t;
            }
            let attn = Tensor::cat(&outs, 2).transpose(1, 2).reshape([1, n, c.n_head * c.head_dim]);
            x = x + attn.linear::<Tensor>(&layer.wo, None);
            let h = self.rms_norm(&x, &layer.ffn_norm);
            let gate = h.linear::<Tensor>(&layer.w_gate, None).silu();
            let up = h.linear::<Tensor>(&layer.w_up, None);
            x = x + (gate * up).linear::<Tensor>(&layer.w_down, None);
        }
        let mut last = Vec::with_capacity(seqs.len());
        let mut offset = 0;
        for (si, s) in seqs.iter_mut().enumerate() {
            let t = s.tokens.len() as i64;
            s.cache.set_len(ends[si]);
            offset += t;
            last.push(offset - 1);
        }
        let index = Tensor::from_slice(&last).to_device(device);
        let hidden = x.index_select(1, &index).squeeze_dim(0);
        let logits = self.logits(&self.rms_norm(&hidden, &self.norm));
        Ok(StepOutput { logits, shares })
    }
}
