//! Matrix products read straight from GGML's 32-element blocks (Q4_0, Q4_1, Q8_0) on the CPU.
//!
//! Decoding one token multiplies one row by every weight matrix, so its time is the time to
//! read the weights: SmolLM2-135M dequantised to f32 is 540 MB per token, its Q4_1 blocks about
//! 85 MB. For up to four rows of `x` a block's product is `d·Σ q·x + m·Σ x` (the product with
//! the dequantised block `q·d + m`, scale factored out: fewest instructions per row); from
//! eight rows on each block is expanded once exactly as [`crate::formats::quant::dequantize`] expands
//! it and multiplied with eight rows (the expansion shared by more rows). Either differs from
//! the product with the dequantised f32 matrix only in f32 rounding (the tests hold it to
//! 1e-5). With AVX-512 the eight-row tiles go through `blocks_avx512.rs` (two weight rows per
//! pass); the portable path (no AVX2) expands blocks as `dequantize` does.

use std::ffi::{c_int, c_uint, c_void};
use std::ops::Range;
use std::sync::OnceLock;

use half::f16;

use crate::formats::quant::GgmlType;

const BLOCK: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Q4_0,
    Q4_1,
    Q8_0,
}

impl Format {
    /// Bytes of quantised values per block.
    fn quant_bytes(self) -> usize {
        match self {
            Self::Q8_0 => 32,
            Self::Q4_0 | Self::Q4_1 => 16,
        }
    }
}

/// A `[rows, cols]` matrix kept as GGML blocks along its rows, scales widened to f32.
pub(crate) struct BlockMatrix {
    format: Format,
    rows: usize,
    cols: usize,
    /// `d` of every block, row-major (`rows * cols / 32`).
    scales: Vec<f32>,
    /// `m` of every block (Q4_1 only).
    mins: Vec<f32>,
    /// The quantised values, `quant_bytes` per block.
    quants: Vec<u8>,
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The 32 quantised values at `q` (one block of `$m`'s format) as four vectors of eight f32
/// (Q4_0 already offset by -8), not yet scaled.
#[cfg(target_arch = "x86_64")]
macro_rules! widen_block {
    ($m:expr, $q:expr) => {{
        let q = $q;
        let widen = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
        match $m.format {
            Format::Q8_0 => {
                let (a, c) = (_mm_loadu_si128(q as *const __m128i), _mm_loadu_si128(q.add(16) as *const __m128i));
                [widen(a), widen(_mm_srli_si128::<8>(a)), widen(c), widen(_mm_srli_si128::<8>(c))]
            }
            Format::Q4_0 | Format::Q4_1 => {
                let raw = _mm_loadu_si128(q as *const __m128i);
                let mask = _mm_set1_epi8(0x0f);
                let mut lo = _mm_and_si128(raw, mask);
                let mut hi = _mm_and_si128(_mm_srli_epi16::<4>(raw), mask);
                if $m.format == Format::Q4_0 {
                    lo = _mm_sub_epi8(lo, _mm_set1_epi8(8));
                    hi = _mm_sub_epi8(hi, _mm_set1_epi8(8));
                }
                [widen(lo), widen(_mm_srli_si128::<8>(lo)), widen(hi), widen(_mm_srli_si128::<8>(hi))]
            }
        }
    }};
}

impl BlockMatrix {
    /// From the GGML bytes of a `[rows, cols]` matrix; `None` for any other type, or when the
    /// bytes do not hold exactly that many blocks.
    pub(crate) fn from_ggml(t: GgmlType, bytes: &[u8], rows: usize, cols: usize) -> Option<Self> {
        let format = match t {
            GgmlType::Q4_0 => Format::Q4_0,
            GgmlType::Q4_1 => Format::Q4_1,
            GgmlType::Q8_0 => Format::Q8_0,
            _ => return None,
        };
        let block_bytes = t.block().1 as usize;
        let blocks = rows * cols / BLOCK;
        if !cols.is_multiple_of(BLOCK) || rows == 0 || bytes.len() != blocks * block_bytes {
            return None;
        }
        let header = block_bytes - format.quant_bytes();
        let mut m = Self { format, rows, cols, scales: Vec::with_capacity(blocks), mins: Vec::new(), quants: Vec::with_capacity(blocks * format.quant_bytes()) };
        for b in bytes.chunks_exact(block_bytes) {
            m.scales.push(f16_at(b, 0));
            if format == Format::Q4_1 {
                m.mins.push(f16_at(b, 2));
            }
            m.quants.extend_from_slice(&b[header..]);
        }
        Some(m)
    }

    /// Rows.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held (scales, mins and quantised values).
    pub(crate) fn bytes(&self) -> usize {
        (self.scales.len() + self.mins.len()) * 4 + self.quants.len()
    }

    fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// The matrices stacked along their rows; `None` unless all share format and width.
    pub(crate) fn concat(parts: Vec<BlockMatrix>) -> Option<Self> {
        let first = parts.first()?;
        let (format, cols) = (first.format, first.cols);
        if parts.iter().any(|p| p.format != format || p.cols != cols) {
            return None;
        }
        let mut all = Self { format, rows: 0, cols, scales: Vec::new(), mins: Vec::new(), quants: Vec::new() };
        for p in parts {
            all.rows += p.rows;
            all.scales.extend(p.scales);
            all.mins.extend(p.mins);
            all.quants.extend(p.quants);
        }
        Some(all)
    }

    /// A matrix whose row `i` is row `source[i]` of this one.
    pub(crate) fn select_rows(&self, source: &[usize]) -> Self {
        let (nb, qb) = (self.blocks_per_row(), self.format.quant_bytes());
        let mut out = Self { format: self.format, rows: source.len(), cols: self.cols, scales: Vec::new(), mins: Vec::new(), quants: Vec::new() };
        for &r in source {
            out.scales.extend_from_slice(&self.scales[r * nb..(r + 1) * nb]);
            if self.format == Format::Q4_1 {
                out.mins.extend_from_slice(&self.mins[r * nb..(r + 1) * nb]);
            }
            out.quants.extend_from_slice(&self.quants[r * nb * qb..(r + 1) * nb * qb]);
        }
        out
    }

    /// Block `i` (row-major over the whole matrix) as f32, as `dequantize` gives it.
    fn block_f32(&self, i: usize) -> [f32; BLOCK] {
        let q = &self.quants[i * self.format.quant_bytes()..(i + 1) * self.format.quant_bytes()];
        let d = self.scales[i];
        let mut w = [0f32; BLOCK];
        match self.format {
            Format::Q4_0 | Format::Q4_1 => {
                for (j, &byte) in q.iter().enumerate() {
                    if self.format == Format::Q4_0 {
                        w[j] = ((byte & 0x0f) as i32 - 8) as f32 * d;
                        w[j + 16] = ((byte >> 4) as i32 - 8) as f32 * d;
                    } else {
                        let m = self.mins[i];
                        w[j] = (byte & 0x0f) as f32 * d + m;
                        w[j + 16] = (byte >> 4) as f32 * d + m;
                    }
                }
            }
            Format::Q8_0 => {
                for (j, &byte) in q.iter().enumerate() {
                    w[j] = byte as i8 as f32 * d;
                }
            }
        }
        w
    }

    /// `y = x · selfᵀ`: `x` is `[m, cols]` and `y` `[m, rows]`, both row-major. Rows are split
    /// between libtorch's own OpenMP threads (see [`parallel`]).
    pub(crate) fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        self.matmul_on(x, m, y, Kernel::best());
    }

    /// As [`BlockMatrix::matmul`], through `kernel` (which must be available: [`Kernel::available`]).
    fn matmul_on(&self, x: &[f32], m: usize, y: &mut [f32], kernel: Kernel) {
        assert!(x.len() == m * self.cols && y.len() == m * self.rows, "matmul: x or y has the wrong length");
        let out = OutPtr(y.as_mut_ptr());
        // Σx per block, for the tiles of fewer than eight rows (Q4_1's `m·Σx` term).
        let sums: Vec<f32> = if self.format == Format::Q4_1 && m % 8 != 0 { x.chunks_exact(BLOCK).map(|c| c.iter().sum()).collect() } else { Vec::new() };
        let tile = |left: usize| if left >= 8 { 8 } else { left.min(4) };
        parallel(self.rows, &|rows: Range<usize>| {
            let out = &out;
            let mut i = 0;
            while i < m {
                let tile = tile(m - i);
                // SAFETY: each call writes only columns `rows` of y, and the calls' ranges are
                // disjoint; x and y lengths are checked above; the kernel's CPU features were
                // detected (`Kernel::available`).
                unsafe {
                    match (kernel, tile) {
                        #[cfg(target_arch = "x86_64")]
                        (Kernel::Avx512, 8) => self.rows_avx512_pairs::<8>(x, i, out.0, rows.clone()),
                        (Kernel::Portable, _) => self.rows_scalar(x, i, tile, out.0, rows.clone()),
                        (_, 8) => self.rows_avx2_wide::<8>(x, i, out.0, rows.clone()),
                        (_, 4) => self.rows_avx2::<4>(x, &sums, i, out.0, rows.clone()),
                        (_, 3) => self.rows_avx2::<3>(x, &sums, i, out.0, rows.clone()),
                        (_, 2) => self.rows_avx2::<2>(x, &sums, i, out.0, rows.clone()),
                        (_, _) => self.rows_avx2::<1>(x, &sums, i, out.0, rows.clone()),
                    }
                }
                i += tile;
            }
        });
    }

    /// The portable path: block by block through [`BlockMatrix::block_f32`].
    unsafe fn rows_scalar(&self, x: &[f32], m0: usize, tile: usize, y: *mut f32, rows: Range<usize>) {
        let nb = self.blocks_per_row();
        for n in rows {
            for r in m0..m0 + tile {
                let mut sum = 0f32;
                for b in 0..nb {
                    let w = self.block_f32(n * nb + b);
                    let xs = &x[r * self.cols + b * BLOCK..][..BLOCK];
                    sum += w.iter().zip(xs).map(|(w, x)| w * x).sum::<f32>();
                }
                *y.add(r * self.rows + n) = sum;
            }
        }
    }

    /// Rows `rows` of `y` for the `MT` rows of `x` from `m0`. Per block the quantised values
    /// are widened to f32 and multiplied with `x` first and scaled once:
    /// `Σ (q·d + m)·x = d·Σ q·x + m·Σ x` (`sums` holds `Σ x` of every block of `x`, Q4_1 only).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_avx2<const MT: usize>(&self, x: &[f32], sums: &[f32], m0: usize, y: *mut f32, rows: Range<usize>) {
        use std::arch::x86_64::*;
        let (nb, qb) = (self.blocks_per_row(), self.format.quant_bytes());
        let xp = x.as_ptr();
        for n in rows {
            let mut acc = [[_mm256_setzero_ps(); 2]; MT];
            for b in 0..nb {
                let i = n * nb + b;
                let q = self.quants.as_ptr().add(i * qb);
                let w = widen_block!(self, q);
                let d = _mm256_set1_ps(*self.scales.get_unchecked(i));
                for (t, acc) in acc.iter_mut().enumerate() {
                    let xb = xp.add((m0 + t) * self.cols + b * BLOCK);
                    let s0 = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xb.add(16)), _mm256_mul_ps(w[0], _mm256_loadu_ps(xb)));
                    let s1 = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xb.add(24)), _mm256_mul_ps(w[1], _mm256_loadu_ps(xb.add(8))));
                    acc[0] = _mm256_fmadd_ps(s0, d, acc[0]);
                    acc[1] = _mm256_fmadd_ps(s1, d, acc[1]);
                }
            }
            for (t, a) in acc.iter().enumerate() {
                let s = _mm256_add_ps(a[0], a[1]);
                let v = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
                let v = _mm_hadd_ps(v, v);
                let mut total = _mm_cvtss_f32(_mm_hadd_ps(v, v));
                if self.format == Format::Q4_1 {
                    let (mins, xs) = (&self.mins[n * nb..(n + 1) * nb], &sums[(m0 + t) * nb..(m0 + t + 1) * nb]);
                    total += mins.iter().zip(xs).map(|(m, s)| m * s).sum::<f32>();
                }
                *y.add((m0 + t) * self.rows + n) = total;
            }
        }
    }

    /// Rows `rows` of `y` for the eight rows of `x` from `m0`: each block expanded once, exactly
    /// as `dequantize` does (`q·d + m`), then multiplied with eight rows (one accumulator each),
    /// which spreads the expansion over more rows than [`BlockMatrix::rows_avx2`] can.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_avx2_wide<const MT: usize>(&self, x: &[f32], m0: usize, y: *mut f32, rows: Range<usize>) {
        use std::arch::x86_64::*;
        let (nb, qb) = (self.blocks_per_row(), self.format.quant_bytes());
        let xp = x.as_ptr();
        for n in rows {
            let mut acc = [_mm256_setzero_ps(); MT];
            for b in 0..nb {
                let i = n * nb + b;
                let mut w = widen_block!(self, self.quants.as_ptr().add(i * qb));
                let d = _mm256_set1_ps(*self.scales.get_unchecked(i));
                for v in &mut w {
                    *v = _mm256_mul_ps(*v, d);
                }
                if self.format == Format::Q4_1 {
                    let m = _mm256_set1_ps(*self.mins.get_unchecked(i));
                    for v in &mut w {
                        *v = _mm256_add_ps(*v, m);
                    }
                }
                for (t, acc) in acc.iter_mut().enumerate() {
                    let xb = xp.add((m0 + t) * self.cols + b * BLOCK);
                    for (j, w) in w.iter().enumerate() {
                        *acc = _mm256_fmadd_ps(*w, _mm256_loadu_ps(xb.add(8 * j)), *acc);
                    }
                }
            }
            for (t, a) in acc.iter().enumerate() {
                let v = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps::<1>(*a));
                let v = _mm_hadd_ps(v, v);
                *y.add((m0 + t) * self.rows + n) = _mm_cvtss_f32(_mm_hadd_ps(v, v));
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn rows_avx2_wide<const MT: usize>(&self, x: &[f32], m0: usize, y: *mut f32, rows: Range<usize>) {
        self.rows_scalar(x, m0, MT, y, rows)
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn rows_avx2<const MT: usize>(&self, x: &[f32], _sums: &[f32], m0: usize, y: *mut f32, rows: Range<usize>) {
        self.rows_scalar(x, m0, MT, y, rows)
    }
}

/// The output pointer shared by the chunks (each writes its own columns).
struct OutPtr(*mut f32);
// SAFETY: the chunks of one `matmul` write disjoint elements and finish before it returns.
unsafe impl Sync for OutPtr {}

/// The kernels of the block products, by the CPU features they need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// Any CPU: blocks expanded one at a time.
    Portable,
    /// AVX2 and FMA: eight-lane vectors, up to eight rows of `x` per pass.
    Avx2,
    /// AVX-512F (and AVX2, FMA): sixteen-lane vectors, two weight rows by eight rows of `x`
    /// per pass; tiles of fewer than eight rows use the AVX2 kernel.
    Avx512,
}

impl Kernel {
    /// Whether this CPU runs `self`.
    fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            match self {
                Self::Portable => true,
                Self::Avx2 => avx2,
                Self::Avx512 => avx2 && is_x86_feature_detected!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Self::Portable
        }
    }

    /// The fastest kernel this CPU runs (detected once).
    fn best() -> Self {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| [Self::Avx512, Self::Avx2].into_iter().find(|k| k.available()).unwrap_or(Self::Portable))
    }
}

type GompParallel = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint);
type OmpInt = unsafe extern "C" fn() -> c_int;

/// libgomp's entry points, found in the process (libtorch brings libgomp); `None` without it.
fn openmp() -> Option<(GompParallel, OmpInt, OmpInt)> {
    static OPENMP: OnceLock<Option<(GompParallel, OmpInt, OmpInt)>> = OnceLock::new();
    *OPENMP.get_or_init(|| {
        // SAFETY: dlsym on the global namespace with NUL-terminated names; the symbols, when
        // present, have these signatures (libgomp's ABI since GCC 4.9).
        unsafe {
            let find = |name: &[u8]| libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast());
            let (p, n, t) = (find(b"GOMP_parallel\0"), find(b"omp_get_num_threads\0"), find(b"omp_get_thread_num\0"));
            if p.is_null() || n.is_null() || t.is_null() {
                tracing::debug!("no OpenMP runtime found: block products run on one thread");
                return None;
            }
            Some((std::mem::transmute::<*mut c_void, GompParallel>(p), std::mem::transmute::<*mut c_void, OmpInt>(n), std::mem::transmute::<*mut c_void, OmpInt>(t)))
        }
    })
}

/// Runs `f` on contiguous, disjoint parts of `0..len` covering it, one part per thread of
/// libtorch's OpenMP team (libtorch's intra-op thread count). The same threads run libtorch's
/// own parallel kernels, so none of them spins waiting while another pool works.
fn parallel(len: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
    let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).clamp(1, len.div_ceil(16).max(1));
    let Some((gomp_parallel, num_threads, thread_num)) = openmp().filter(|_| threads > 1) else {
        f(0..len);
        return;
    };
    struct Job<'a> {
        len: usize,
        f: &'a (dyn Fn(Range<usize>) + Sync),
        num_threads: OmpInt,
        thread_num: OmpInt,
    }
    extern "C" fn run(data: *mut c_void) {
        // SAFETY: `data` is the `Job` below, alive until GOMP_parallel returns.
        let job = unsafe { &*(data as *const Job) };
        let (n, t) = unsafe { ((job.num_threads)().max(1) as usize, (job.thread_num)().max(0) as usize) };
        let part = job.len.div_ceil(n);
        let range = (t * part).min(job.len)..((t + 1) * part).min(job.len);
        if !range.is_empty() && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.f)(range))).is_err() {
            std::process::abort(); // a panic must not unwind into C
        }
    }
    let job = Job { len, f, num_threads, thread_num };
    // SAFETY: `run` reads `job` only during this call; GOMP_parallel returns after every thread
    // of the team has finished it.
    unsafe { gomp_parallel(run, &job as *const Job as *mut c_void, threads as c_uint, 0) };
}

#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests;
