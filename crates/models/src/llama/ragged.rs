//! A ragged step: the tokens of several sequences (prefill chunks and single decode tokens
//! alike) run through the weight matrices together as one `[1, N]` batch, while attention is
//! computed per sequence against that sequence's own KV cache. No padding, no masks between
//! sequences, and each sequence sees exactly the attention it would see alone: this is what a
//! continuous-batching scheduler builds on (sequences join and leave between steps freely).

use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::llama::kv::KvCache;
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
    /// Selective recompute (fused mode): of the tokens marked here, whose states were laid
    /// in from cached ones, only the `keep` whose layer-1 keys and values deviate most from
    /// the laid-in states go on past layer 1 (CacheBlend); the others keep their laid-in
    /// states from layer 2 on. Unmarked tokens are computed through every layer.
    pub select: Option<Select<'a>>,
    /// The attention some of the step's tokens put on a range of key positions, reported
    /// per key (the query-driven selective recompute scores memory tokens with it).
    pub score: Option<Score>,
    /// Calibrated attention to the memories (fused mode), for some of the step's tokens.
    pub calibrate: Option<Calibrate>,
}

impl<'a> SeqStep<'a> {
    /// `tokens` placed right after what `cache` holds, with nothing else asked.
    pub fn new(tokens: &'a [u32], cache: &'a mut KvCache) -> Self {
        Self { tokens, cache, spans: &[], positions: None, select: None, score: None, calibrate: None }
    }
}

/// Calibrated attention to memories (APE, arXiv 2502.05431): the step's tokens at positions
/// `from` on divide their attention logits on the key positions `keys.0..keys.1` by
/// `temperature` and multiply those keys' share of the softmax mass by `scale` before it is
/// normalised. Memories whose states were computed apart receive attention that is too flat
/// or too heavy as a whole; this corrects both. 1 and 1 is exact attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibrate {
    pub keys: (i64, i64),
    pub from: i64,
    pub temperature: f32,
    pub scale: f32,
}

impl Calibrate {
    /// Whether it leaves attention as it is.
    pub fn is_exact(&self) -> bool {
        self.temperature == 1.0 && self.scale == 1.0
    }
}

/// Which attention a [`SeqStep`] reports: from its tokens at positions `from` on, on the key
/// positions `keys.0..keys.1`, summed over heads and over the layers from [`SCORE_LAYER`] on.
#[derive(Debug, Clone, Copy)]
pub struct Score {
    pub keys: (i64, i64),
    pub from: i64,
}

/// The first layer whose attention [`Score`] sums: layers 0 and 1 attend mostly to the sink
/// and to neighbours, whatever the question asks.
pub const SCORE_LAYER: usize = 2;

/// Which tokens of a [`SeqStep`] may be dropped after layer 1, and how many of them to keep.
pub struct Select<'a> {
    /// One flag per token: true for a laid-in token that may be dropped.
    pub candidates: &'a [bool],
    /// Candidates kept (the most deviating); at least 1 is kept.
    pub keep: usize,
}

/// The layer whose key/value deviation picks the tokens to recompute: layer 0's states do
/// not depend on context, layer 1's are the first that do.
const SELECT_LAYER: usize = 1;

/// A sequence's rows while its step runs.
struct Rows {
    /// Tokens (rows) computed at this layer.
    t: i64,
    /// First position computed and one past the last.
    start: i64,
    end: i64,
    /// The rows' cache slots (scattered), or None: `start..end` in order.
    slots: Option<Tensor>,
}

/// What a ragged step returns.
pub struct StepOutput {
    /// Logits of each sequence's last new token, `[sequences, vocab]`, f32.
    pub logits: Tensor,
    /// Per sequence, per span: the attention probability the last new token puts on the
    /// span, averaged over heads and the attribution layers.
    pub shares: Vec<Vec<f32>>,
    /// Per sequence: with a [`Score`], the attention on each of its key positions (empty
    /// without one).
    pub scores: Vec<Vec<f32>>,
}

impl Llama {
    /// Runs one ragged step; `attribution_layers` is how many of the last layers the span
    /// shares average over (at least 1 is used when any span is asked for).
    pub fn forward_ragged(&self, seqs: &mut [SeqStep<'_>], attribution_layers: usize) -> Result<StepOutput> {
        let c = &self.config;
        if seqs.is_empty() || seqs.iter().any(|s| s.tokens.is_empty()) {
            return Err(ModelError::InvalidInput { field: "tokens".into(), reason: "every sequence needs at least one token".into() });
        }
        let device = self.device;
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut rows: Vec<Rows> = Vec::with_capacity(seqs.len());
        for s in seqs.iter() {
            let start = s.cache.len();
            let t = s.tokens.len() as i64;
            let (first, end) = match s.positions {
                None => (start, start + t),
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
            if s.select.as_ref().is_some_and(|sel| sel.candidates.len() != s.tokens.len()) {
                return Err(ModelError::InvalidInput { field: "select".into(), reason: "needs one candidate flag per token".into() });
            }
            ids.extend(s.tokens.iter().map(|&t| t as i64));
            match s.positions {
                None => positions.extend(start..end),
                Some(p) => positions.extend_from_slice(p),
            }
            // Scattered tokens write their own cache slots; consecutive ones append.
            let slots = match s.positions {
                Some(p) if end - first != t => Some(Tensor::from_slice(p).to_device(device)),
                _ => None,
            };
            rows.push(Rows { t, start: first, end, slots });
        }
        let mut n = ids.len() as i64;
        let tokens = Tensor::from_slice(&ids).to_device(device);
        let positions = Tensor::from_slice(&positions).view([1, n]).to_device(device);
        let mut x = self.embed.index_select(0, &tokens).view([1, n, c.n_embd]);
        let mut rope = self.rope_at(&positions);
        let n_layer = self.layers.len();
        let attributed = attribution_layers.clamp(1, n_layer);
        let mut shares: Vec<Vec<f32>> = seqs.iter().map(|s| vec![0.0; s.spans.len()]).collect();
        let mut scores: Vec<Option<Tensor>> = seqs.iter().map(|_| None).collect();
        // Rows of each sequence a score reads, and rows whose attention is calibrated: its
        // last tokens, those at or after `from`.
        let scored: Vec<i64> = seqs.iter().map(|s| s.score.map_or(0, |sc| s.rows_from(sc.from))).collect();
        let calibrated: Vec<Option<Calibrated>> = seqs
            .iter()
            .zip(&rows)
            .map(|(s, r)| s.calibrate.filter(|cal| !cal.is_exact()).and_then(|cal| Calibrated::new(s, r, cal, self.kind, device)))
            .collect();
        let group = c.n_head / c.n_head_kv;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let selecting = seqs.iter().any(|s| s.select.is_some());
        for (li, layer) in self.layers.iter().enumerate() {
            let (q, k, v) = self.attention_inputs(layer, &self.rms_norm(&x, &layer.attn_norm), &rope);
            let select_here = selecting && li == SELECT_LAYER;
            let mut kept: Vec<i64> = Vec::new();
            let mut outs = Vec::with_capacity(seqs.len());
            let mut offset = 0;
            for (si, s) in seqs.iter_mut().enumerate() {
                let r = &mut rows[si];
                let (t, start, end) = (r.t, r.start, r.end);
                let (ki, vi) = (k.narrow(2, offset, t), v.narrow(2, offset, t));
                let mut qi = q.narrow(2, offset, t);
                let keep = match (&s.select, select_here) {
                    (Some(sel), true) => Some(self.most_deviating(s.cache, li, r, &ki, &vi, sel)),
                    _ => None,
                };
                let (keys, values) = match &r.slots {
                    None => s.cache.append(li, &ki, &vi, start),
                    Some(slots) => s.cache.scatter(li, &ki, &vi, slots, end),
                };
                match keep {
                    Some(local) => {
                        let index = Tensor::from_slice(&local).to_device(device);
                        qi = qi.index_select(2, &index);
                        let slots = r.slots.as_ref().map_or_else(|| &index + start, |s| s.index_select(0, &index));
                        kept.extend(local.iter().map(|i| i + offset));
                        r.t = local.len() as i64;
                        r.slots = Some(slots);
                    }
                    None => kept.extend(offset..offset + t),
                }
                let t_now = r.t;
                let out = match &calibrated[si] {
                    // The calibrated rows are the last ones, never dropped by a selection.
                    Some(cal) if cal.rows <= t_now => {
                        let exact = t_now - cal.rows;
                        let tail = cal.attention(&qi.narrow(2, exact, cal.rows), &keys, &values);
                        if exact == 0 { tail } else { Tensor::cat(&[exact_attention(&qi.narrow(2, 0, exact), &keys, &values, r), tail], 2) }
                    }
                    _ => exact_attention(&qi, &keys, &values, r),
                };
                if !s.spans.is_empty() && li >= n_layer - attributed {
                    let last = qi.narrow(2, t_now - 1, 1).to_kind(Kind::Float);
                    let keys = keys.to_kind(Kind::Float).repeat_interleave_self_int(group, Some(1), None::<i64>);
                    let probs = (last.matmul(&keys.transpose(-1, -2)) * scale).softmax(-1, Kind::Float).mean_dim(1, false, Kind::Float).view([-1]);
                    for (j, &(a, b)) in s.spans.iter().enumerate() {
                        let (a, b) = (a.clamp(0, end), b.clamp(0, end));
                        if b > a {
                            shares[si][j] += probs.narrow(0, a, b - a).sum(Kind::Float).double_value(&[]) as f32 / attributed as f32;
                        }
                    }
                }
                if let (Some(sc), true) = (&s.score, li >= SCORE_LAYER && scored[si] > 0 && s.select.is_none()) {
                    let m = scored[si];
                    let got = self.key_attention(&qi.narrow(2, t_now - m, m), &keys, r, m, sc.keys);
                    scores[si] = Some(match scores[si].take() {
                        Some(acc) => acc + got,
                        None => got,
                    });
                }
                outs.push(out);
                offset += t;
            }
            let attn = Tensor::cat(&outs, 2).transpose(1, 2);
            if kept.len() as i64 != n {
                // Dropped rows leave the step: their laid-in states stand from here on.
                let index = Tensor::from_slice(&kept).to_device(device);
                x = x.index_select(1, &index);
                rope = (rope.0.index_select(1, &index), rope.1.index_select(1, &index));
                n = kept.len() as i64;
            }
            let attn = attn.reshape([1, n, c.n_head * c.head_dim]);
            x = x + self.linear(&layer.wo, &attn, None);
            x = &x + self.feed_forward(layer, &self.rms_norm(&x, &layer.ffn_norm));
        }
        let mut last = Vec::with_capacity(seqs.len());
        let mut offset = 0;
        for (si, s) in seqs.iter_mut().enumerate() {
            s.cache.set_len(rows[si].end);
            offset += rows[si].t;
            last.push(offset - 1);
        }
        let index = Tensor::from_slice(&last).to_device(device);
        let hidden = x.index_select(1, &index).squeeze_dim(0);
        let logits = self.logits(&self.rms_norm(&hidden, &self.norm));
        let scores = seqs
            .iter()
            .zip(scores)
            .map(|(s, got)| match (s.score, got) {
                (Some(_), Some(t)) => Vec::try_from(t.to_device(tch::Device::Cpu)).unwrap_or_default(),
                (Some(sc), None) => vec![0.0; (sc.keys.1 - sc.keys.0).max(0) as usize],
                _ => Vec::new(),
            })
            .collect();
        Ok(StepOutput { logits, shares, scores })
    }

    /// The attention the last `m` rows (`q`, `[1, heads, m, dim]`) of `rows` put on each key
    /// position of `range`, summed over heads and rows (`[range len]`, f32). Each row sees the
    /// keys up to its own position.
    fn key_attention(&self, q: &Tensor, keys: &Tensor, rows: &Rows, m: i64, range: (i64, i64)) -> Tensor {
        let c = &self.config;
        let end = rows.end;
        let group = c.n_head / c.n_head_kv;
        let q_pos = match &rows.slots {
            Some(s) => s.narrow(0, s.size()[0] - m, m),
            None => Tensor::arange_start(end - m, end, (Kind::Int64, self.device)),
        }
        .unsqueeze(1);
        let k_pos = Tensor::arange(end, (Kind::Int64, self.device)).unsqueeze(0);
        let hidden = k_pos.gt_tensor(&q_pos).view([1, 1, m, end]);
        let keys = keys.to_kind(Kind::Float).repeat_interleave_self_int(group, Some(1), None::<i64>);
        let logits = q.to_kind(Kind::Float).matmul(&keys.transpose(-1, -2)) * (1.0 / (c.head_dim as f64).sqrt());
        let probs = logits.masked_fill(&hidden, f64::NEG_INFINITY).softmax(-1, Kind::Float);
        let (a, b) = (range.0.clamp(0, end), range.1.clamp(0, end));
        let on = probs.narrow(3, a, b - a).sum_dim_intlist([0i64, 1, 2].as_slice(), false, Kind::Float);
        // Keys past the step's end (none in practice) score zero.
        if b - a < range.1 - range.0 { Tensor::cat(&[on, Tensor::zeros([range.1 - range.0 - (b - a)], (Kind::Float, self.device))], 0) } else { on }
    }

    /// The rows (indices into the sequence's tokens) that go on past the selection layer:
    /// every non-candidate and the `keep` candidates whose new keys and values (`k`, `v`,
    /// `[1, heads, t, dim]`) differ most from the states laid in at their slots.
    fn most_deviating(&self, cache: &KvCache, layer: usize, rows: &Rows, k: &Tensor, v: &Tensor, select: &Select<'_>) -> Vec<i64> {
        let slots = match &rows.slots {
            Some(s) => s.shallow_clone(),
            None => Tensor::arange_start(rows.start, rows.end, (Kind::Int64, self.device)),
        };
        let (old_k, old_v) = cache.at(layer, &slots);
        let dk = (k - old_k).to_kind(Kind::Float).square().sum_dim_intlist([0i64, 1, 3].as_slice(), false, Kind::Float);
        let dv = (v - old_v).to_kind(Kind::Float).square().sum_dim_intlist([0i64, 1, 3].as_slice(), false, Kind::Float);
        let deviation: Vec<f32> = Vec::try_from((dk + dv).to_device(tch::Device::Cpu)).unwrap_or_default();
        let mut candidates: Vec<usize> = (0..select.candidates.len()).filter(|&i| select.candidates[i]).collect();
        candidates.sort_by(|&a, &b| deviation.get(b).unwrap_or(&0.0).total_cmp(deviation.get(a).unwrap_or(&0.0)));
        let mut keep = vec![true; select.candidates.len()];
        for &i in candidates.iter().skip(select.keep.max(1)) {
            keep[i] = false;
        }
        (0..keep.len() as i64).filter(|&i| keep[i as usize]).collect()
    }
}

impl SeqStep<'_> {
    /// How many of its tokens sit at positions `from` on (they are its last ones).
    fn rows_from(&self, from: i64) -> i64 {
        match self.positions {
            Some(p) => p.iter().filter(|&&x| x >= from).count() as i64,
            None => (self.cache.len() + self.tokens.len() as i64 - from.max(self.cache.len())).max(0),
        }
    }
}

/// Causal attention of the first rows of `rows` (`q`, `[1, heads, n, dim]`; each sees the
/// keys up to its own position).
fn exact_attention(q: &Tensor, keys: &Tensor, values: &Tensor, rows: &Rows) -> Tensor {
    let n = q.size()[2];
    match &rows.slots {
        // One query at the end sees every key; a fresh prompt is plain causal.
        None if n == rows.t && (n == 1 || rows.start == 0) => Tensor::scaled_dot_product_attention(q, keys, values, None::<&Tensor>, 0.0, n > 1, None, true),
        slots => {
            let q_pos = match slots {
                Some(s) => s.narrow(0, 0, n),
                None => Tensor::arange_start(rows.start, rows.start + n, (Kind::Int64, q.device())),
            };
            let k_pos = Tensor::arange(rows.end, (Kind::Int64, q.device())).unsqueeze(0);
            let mask = k_pos.le_tensor(&q_pos.unsqueeze(1)).view([1, 1, n, rows.end]);
            Tensor::scaled_dot_product_attention(q, keys, values, Some(&mask), 0.0, false, None, true)
        }
    }
}

/// A sequence's calibrated rows in one step, and what they attend with: the same at every
/// layer, so made once per step.
struct Calibrated {
    /// The last `rows` of the step.
    rows: i64,
    /// Per key position, the factor its keys are multiplied by (`1 / temperature` on the
    /// memories), `[1, 1, end, 1]`.
    factor: Tensor,
    /// The additive mask of the rows: `ln scale` on visible memory keys, 0 on other visible
    /// keys, -inf on keys past a row's position; `[1, 1, rows, end]`.
    mask: Tensor,
}

impl Calibrated {
    fn new(s: &SeqStep<'_>, rows: &Rows, cal: Calibrate, kind: Kind, device: tch::Device) -> Option<Self> {
        let m = s.rows_from(cal.from);
        let end = rows.end;
        let (a, b) = (cal.keys.0.clamp(0, end) as usize, cal.keys.1.clamp(0, end) as usize);
        if m == 0 || b <= a {
            return None;
        }
        let mut factor = vec![1f32; end as usize];
        let mut bias = vec![0f32; end as usize];
        factor[a..b].fill(1.0 / cal.temperature);
        bias[a..b].fill(cal.scale.ln());
        let q_pos: Vec<i64> = match s.positions {
            Some(p) => p[p.len() - m as usize..].to_vec(),
            None => (end - m..end).collect(),
        };
        let q_pos = Tensor::from_slice(&q_pos).unsqueeze(1);
        let hidden = Tensor::arange(end, (Kind::Int64, tch::Device::Cpu)).unsqueeze(0).gt_tensor(&q_pos);
        let mask = Tensor::from_slice(&bias).view([1, end]).expand([m, end], false).masked_fill(&hidden, f64::NEG_INFINITY);
        Some(Self {
            rows: m,
            factor: Tensor::from_slice(&factor).view([1, 1, end, 1]).to_kind(kind).to_device(device),
            mask: mask.view([1, 1, m, end]).to_kind(kind).to_device(device),
        })
    }

    /// The calibrated attention of the rows `q` (`[1, heads, rows, dim]`).
    fn attention(&self, q: &Tensor, keys: &Tensor, values: &Tensor) -> Tensor {
        Tensor::scaled_dot_product_attention(q, &(keys * &self.factor), values, Some(&self.mask), 0.0, false, None, true)
    }
}
