//! The block products against the f32 product of the dequantised matrix.

use super::*;
use crate::formats::quant::dequantize;

/// Random GGML bytes of `rows * cols / 32` blocks of type `t` (scales kept small and finite).
fn random_blocks(t: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let (_, block_bytes) = t.block();
    let mut out = Vec::new();
    for _ in 0..rows * cols / 32 {
        let scale = f16::from_f32((next() % 1000) as f32 / 20000.0 + 0.001).to_le_bytes();
        out.extend(scale);
        if t == GgmlType::Q4_1 {
            out.extend(f16::from_f32(-((next() % 1000) as f32) / 10000.0).to_le_bytes());
        }
        while out.len() % block_bytes as usize != 0 {
            out.push(next() as u8);
        }
    }
    out
}

fn reference(w: &[f32], x: &[f32], m: usize, rows: usize, cols: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * rows];
    for r in 0..m {
        for n in 0..rows {
            y[r * rows + n] = (0..cols).map(|k| f64::from(x[r * cols + k]) * f64::from(w[n * cols + k])).sum::<f64>() as f32;
        }
    }
    y
}

fn check(t: GgmlType, rows: usize, cols: usize, m: usize, kernel: Kernel) {
    let bytes = random_blocks(t, rows, cols, (rows * 31 + cols + m) as u64);
    let w = dequantize(t, &bytes).unwrap();
    let matrix = BlockMatrix::from_ggml(t, &bytes, rows, cols).unwrap();
    let x: Vec<f32> = (0..m * cols).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let mut y = vec![f32::NAN; m * rows];
    matrix.matmul_on(&x, m, &mut y, kernel);
    let want = reference(&w, &x, m, rows, cols);
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-3);
    for (i, (got, want)) in y.iter().zip(&want).enumerate() {
        assert!((got - want).abs() <= 1e-5 * scale, "{t:?} {rows}x{cols} m={m} {kernel:?}: y[{i}] = {got}, want {want}");
    }
}

#[test]
fn every_format_matches_the_dequantised_product() {
    let kernels: Vec<Kernel> = [Kernel::Portable, Kernel::Avx2, Kernel::Avx512].into_iter().filter(|k| k.available()).collect();
    eprintln!("kernels on this CPU: {kernels:?}");
    for t in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        for &(rows, cols) in &[(1, 32), (37, 64), (200, 96), (576, 576)] {
            // Every tile: 1-4 (narrow), 8 (wide), 16 (AVX-512), and mixes of them.
            for m in [1, 2, 3, 5, 8, 13, 16, 29, 60] {
                for &k in &kernels {
                    check(t, rows, cols, m, k);
                }
            }
        }
    }
}

#[test]
fn blocks_expand_exactly_as_dequantize() {
    for t in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        let bytes = random_blocks(t, 3, 64, 9);
        let matrix = BlockMatrix::from_ggml(t, &bytes, 3, 64).unwrap();
        let all: Vec<f32> = (0..6).flat_map(|i| matrix.block_f32(i)).collect();
        assert_eq!(all, dequantize(t, &bytes).unwrap(), "{t:?}");
    }
}

#[test]
fn stacking_and_selecting_rows_keep_the_rows() {
    let t = GgmlType::Q4_1;
    let (a, b) = (random_blocks(t, 4, 64, 1), random_blocks(t, 2, 64, 2));
    let stacked = BlockMatrix::concat(vec![BlockMatrix::from_ggml(t, &a, 4, 64).unwrap(), BlockMatrix::from_ggml(t, &b, 2, 64).unwrap()]).unwrap();
    assert_eq!((stacked.rows(), stacked.cols()), (6, 64));
    let mut want = dequantize(t, &a).unwrap();
    want.extend(dequantize(t, &b).unwrap());
    let picked = stacked.select_rows(&[5, 0]);
    let got: Vec<f32> = (0..4).flat_map(|i| picked.block_f32(i)).collect();
    assert_eq!(&got[..64], &want[5 * 64..6 * 64]);
    assert_eq!(&got[64..], &want[..64]);
    // Mixed formats or widths are not stacked.
    let q8 = BlockMatrix::from_ggml(GgmlType::Q8_0, &random_blocks(GgmlType::Q8_0, 1, 64, 3), 1, 64).unwrap();
    assert!(BlockMatrix::concat(vec![BlockMatrix::from_ggml(t, &a, 4, 64).unwrap(), q8]).is_none());
}

#[test]
fn other_types_and_wrong_sizes_are_refused() {
    assert!(BlockMatrix::from_ggml(GgmlType::Q6_K, &[0; 210], 1, 256).is_none());
    assert!(BlockMatrix::from_ggml(GgmlType::Q4_1, &[0; 20], 2, 32).is_none());
    assert!(BlockMatrix::from_ggml(GgmlType::Q4_1, &[0; 20], 1, 48).is_none());
}
