//! `udf_stddev`: per-pixel mean, variance and standard deviation over frames (LiberTEM's StdDevUDF).

use crate::dataset::{DType, Pixel};
use crate::udf::{Buffers, Meta, SmallUint, Tile, U32_CHUNK, Udf, UdfDoc, Views, add_by_fours, same_type_frames, simd};

/// Mean, population variance and standard deviation of every detector pixel over the frames
/// (LiberTEM's StdDevUDF):
/// `mean = sum / n`, `var = varsum / n` with `varsum = Σ (x - mean)²`, `std = √var`.
///
/// Each batch is reduced with a two-pass sum of squares, and partial results are combined with
/// Chan et al.'s formula `varsum = varsum_a + varsum_b + (mean_a - mean_b)² · n_a n_b / (n_a + n_b)`,
/// which stays accurate where `Σx² - (Σx)²/n` would cancel.
///
/// ```sql
/// SELECT udf_stddev(tile) FROM scan
/// -- {sum, varsum, num_frames, var, std, mean}: sig-shaped float64, num_frames int64 [1]
/// ```
#[derive(Clone, Debug, Default)]
pub struct StdDev;

/// Merges the partial result `(nb, sb, vb)` (count, sums, varsums) into `(na, sa, va)` with Chan's
/// formula; the caller adds `nb` to `na` afterwards.
fn combine(na: f64, sa: &mut [f64], va: &mut [f64], nb: f64, sb: &[f64], vb: &[f64]) {
    if nb == 0.0 {
        return;
    }
    if na == 0.0 {
        sa.copy_from_slice(sb);
        va.copy_from_slice(vb);
        return;
    }
    let w = na * nb / (na + nb);
    let (ia, ib) = (1.0 / na, 1.0 / nb);
    for ((s, v), (&s2, &v2)) in sa.iter_mut().zip(va.iter_mut()).zip(sb.iter().zip(vb)) {
        let delta = s2 * ib - *s * ia;
        *v += v2 + delta * delta * w;
        *s += s2;
    }
}

/// Pixels per block: a block's sums (2 × 4 KiB) stay in L1 while every frame of the batch passes.
const BLOCK: usize = 512;

simd::multiversion! {
    /// Sum and sum of squared deviations of one block of pixels (`start..start + s.len()`, at most
    /// [`BLOCK`]) over `frames`.
    fn block_moments<T: Pixel>(frames: &[&[T]], start: usize, s: &mut [f64], v: &mut [f64]) {
        assert!(s.len() <= BLOCK && v.len() == s.len(), "a block has at most {BLOCK} pixels");
        let n = frames.len();
        let end = start + s.len();
        if matches!(T::DTYPE, DType::U8 | DType::U16 | DType::I16) {
            // small integers: Σx and Σx² are exact in f64 for a batch (n < 2^21 frames), so one pass
            // gives n·Σx² − (Σx)² exactly: constant pixels give exactly 0
            // four frames per pass over the block's sums: a quarter of the loads and stores of them
            let mut quads = frames.chunks_exact(4);
            for q in &mut quads {
                let (a, b, c, d) = (&q[0][start..end], &q[1][start..end], &q[2][start..end], &q[3][start..end]);
                for (i, (s, v)) in s.iter_mut().zip(v.iter_mut()).enumerate() {
                    let (a, b, c, d) = (a[i].to_f64(), b[i].to_f64(), c[i].to_f64(), d[i].to_f64());
                    *s += (a + b) + (c + d);
                    *v += (a * a + b * b) + (c * c + d * d);
                }
            }
            for frame in quads.remainder() {
                for ((s, v), &x) in s.iter_mut().zip(v.iter_mut()).zip(&frame[start..end]) {
                    let x = x.to_f64();
                    *s += x;
                    *v += x * x;
                }
            }
            if n <= 1024 {
                // n·Σx² < n²·2^32 ≤ 2^52 and (Σx)² likewise: exact in f64, and so is their difference
                // (vectorises, unlike the integer conversions below)
                let nf = n as f64;
                for (v, &s) in v.iter_mut().zip(s.iter()) {
                    *v = (nf * *v - s * s) / nf;
                }
            } else if n < 1 << 15 {
                // |Σx| < 2^31 and n·Σx² < 2^62: i64 holds both products
                for (v, &s) in v.iter_mut().zip(s.iter()) {
                    let (q, s) = (*v as i64, s as i64);
                    *v = (n as i64 * q - s * s) as f64 / n as f64;
                }
            } else {
                for (v, &s) in v.iter_mut().zip(s.iter()) {
                    let (q, s) = (*v as i128, s as i128);
                    *v = (n as i128 * q - s * s) as f64 / n as f64;
                }
            }
        } else {
            // two passes over the block's frames (still in cache for the second)
            add_by_fours(frames, start..end, s, |_| (), |x, ()| x.to_f64());
            let inv = 1.0 / n as f64;
            let mut mean = [0f64; BLOCK];
            for (m, &s) in mean.iter_mut().zip(s.iter()) {
                *m = s * inv;
            }
            let mean = &mean[..s.len()];
            let mut quads = frames.chunks_exact(4);
            for q in &mut quads {
                let (a, b, c, d) = (&q[0][start..end], &q[1][start..end], &q[2][start..end], &q[3][start..end]);
                for (i, (v, &m)) in v.iter_mut().zip(mean).enumerate() {
                    let (a, b, c, d) = (a[i].to_f64() - m, b[i].to_f64() - m, c[i].to_f64() - m, d[i].to_f64() - m);
                    *v += (a * a + b * b) + (c * c + d * d);
                }
            }
            for frame in quads.remainder() {
                for ((v, &m), &x) in v.iter_mut().zip(mean).zip(&frame[start..end]) {
                    let d = x.to_f64() - m;
                    *v += d * d;
                }
            }
        }
    }
}

simd::multiversion! {
    /// Adds Σx and Σx² of pixels `start..start + s.len()` of every frame into `s` and `q`, in u32
    /// lanes that wrap on overflow, four frames per pass; returns the bitwise OR of every count (a bound
    /// of the largest), from which the caller decides whether the lanes can have wrapped.
    fn sums_u32<U: SmallUint>(frames: &[&[U]], start: usize, s: &mut [u32], q: &mut [u32]) -> u32 {
        const W: usize = 16;
        let len = s.len();
        assert_eq!(q.len(), len, "as many squares as sums");
        // the OR of every count, lane by lane (a register)
        let mut bits = [0u32; W];
        let whole = len / W * W;
        let quads = frames.len() / 4 * 4;
        for k in (0..quads).step_by(4) {
            let [a, b, c, d] = [0, 1, 2, 3].map(|j| &frames[k + j][start..start + len]);
            for i0 in (0..whole).step_by(W) {
                // fixed-size pieces: straight-line vector code, no bounds checks inside
                let r = i0..i0 + W;
                let [a, b, c, d]: [&[U; W]; 4] = [a, b, c, d].map(|f| f[r.clone()].try_into().expect("W pixels"));
                let sc: &mut [u32; W] = (&mut s[r.clone()]).try_into().expect("W pixels");
                let qc: &mut [u32; W] = (&mut q[r]).try_into().expect("W pixels");
                for j in 0..W {
                    let (a, b, c, d): (u32, u32, u32, u32) = (a[j].into(), b[j].into(), c[j].into(), d[j].into());
                    sc[j] = sc[j].wrapping_add((a + b) + (c + d));
                    qc[j] = qc[j].wrapping_add((a * a).wrapping_add(b * b).wrapping_add((c * c).wrapping_add(d * d)));
                    bits[j] |= (a | b) | (c | d);
                }
            }
            for i in whole..len {
                for x in [a[i], b[i], c[i], d[i]] {
                    bits[0] |= add_count(&mut s[i], &mut q[i], x.into());
                }
            }
        }
        for frame in &frames[quads..] {
            for (i, &x) in frame[start..start + len].iter().enumerate() {
                bits[0] |= add_count(&mut s[i], &mut q[i], x.into());
            }
        }
        bits.iter().fold(0, |acc, &b| acc | b)
    }
}

/// Adds one count `x` to a pixel's wrapping u32 Σx and Σx²; returns `x` (for the caller's bound).
#[inline(always)]
fn add_count(s: &mut u32, q: &mut u32, x: u32) -> u32 {
    (*s, *q) = (s.wrapping_add(x), q.wrapping_add(x * x));
    x
}

/// The batch's moments of 8/16-bit counts from Σx and Σx² in u32 lanes (twice the lanes of f64, no
/// conversion per frame), merged into the running result (`na` frames so far) chunk by chunk of
/// [`U32_CHUNK`] pixels. Exact and the same values as [`block_moments`] where `n · max² < 2^32` (and
/// `n ≤ 2^20`, so that the f64 products below are exact too), which counting data of up to a few
/// thousand counts per pixel and batch meets. Returns the number of pixels done: all, or the chunks
/// before the first whose counts could have wrapped (the caller does the rest in f64).
fn narrow_moments<U: SmallUint>(frames: &[&[U]], na: f64, sum: &mut [f64], varsum: &mut [f64]) -> usize {
    let n = frames.len();
    let nf = n as f64;
    let (mut s32, mut q32) = (vec![0u32; U32_CHUNK.min(sum.len())], vec![0u32; U32_CHUNK.min(sum.len())]);
    for (c, (sa, va)) in sum.chunks_mut(U32_CHUNK).zip(varsum.chunks_mut(U32_CHUNK)).enumerate() {
        let (s32, q32) = (&mut s32[..sa.len()], &mut q32[..sa.len()]);
        s32.fill(0);
        q32.fill(0);
        let bound = sums_u32(frames, c * U32_CHUNK, s32, q32) as u64;
        if n > 1 << 20 || n as u64 * bound * bound >= 1 << 32 {
            return c * U32_CHUNK;
        }
        let blocks = sa.chunks_mut(BLOCK).zip(va.chunks_mut(BLOCK)).zip(s32.chunks(BLOCK).zip(q32.chunks(BLOCK)));
        for ((sa, va), (s32, q32)) in blocks {
            let (mut s, mut v) = ([0f64; BLOCK], [0f64; BLOCK]);
            let (s, v) = (&mut s[..sa.len()], &mut v[..sa.len()]);
            for ((s, v), (&s32, &q32)) in s.iter_mut().zip(v.iter_mut()).zip(s32.iter().zip(q32)) {
                // n·Σx² < n·2^32 ≤ 2^52 and (Σx)² ≤ n·(n·max²) likewise: exact, as in the f64 path
                *s = s32 as f64;
                *v = (nf * q32 as f64 - *s * *s) / nf;
            }
            combine(na, sa, va, nf, s, v);
        }
    }
    sum.len()
}

impl Udf for StdDev {
    fn name(&self) -> &str {
        "udf_stddev"
    }
    fn doc(&self) -> Option<UdfDoc> {
        Some(UdfDoc {
            description: "Per-pixel mean, population variance and standard deviation over frames (LiberTEM StdDevUDF). \
                          Result: {sum, varsum, num_frames, var, std, mean}",
            syntax: "udf_stddev(tile)",
            example: "SELECT udf_stddev(tile)['std'] FROM scan",
            args: &[],
        })
    }
    fn buffers(&self, _meta: &Meta) -> crate::Result<Buffers> {
        Ok(Buffers::new()
            .sig("sum", DType::F64)
            .sig("varsum", DType::F64)
            .single("num_frames", &[1], DType::I64)
            .sig("var", DType::F64)
            .result_only()
            .sig("std", DType::F64)
            .result_only()
            .sig("mean", DType::F64)
            .result_only())
    }
    fn process_tile<T: Pixel>(&mut self, tile: &Tile<'_, T>, out: &mut Views<'_>) -> crate::Result<()> {
        let frames: Vec<&[T]> = tile.frames().collect();
        let nb = frames.len() as f64;
        let [num, sum, varsum] = out.many(["num_frames", "sum", "varsum"]);
        let na = num[0];
        // 8/16-bit counts in u32 lanes where they cannot overflow
        let done = if let Some(f) = same_type_frames::<T, u16>(&frames) {
            narrow_moments(f, na, sum, varsum)
        } else if let Some(f) = same_type_frames::<T, u8>(&frames) {
            narrow_moments(f, na, sum, varsum)
        } else {
            0
        };
        // the rest block by block of pixels: the batch's moments of a block, merged into the running result
        let rest = sum[done..].chunks_mut(BLOCK).zip(varsum[done..].chunks_mut(BLOCK));
        for (b, (sa, va)) in rest.enumerate() {
            let (mut s, mut v) = ([0f64; BLOCK], [0f64; BLOCK]);
            let (s, v) = (&mut s[..sa.len()], &mut v[..sa.len()]);
            block_moments(&frames, done + b * BLOCK, s, v);
            combine(na, sa, va, nb, s, v);
        }
        num[0] = na + nb;
        Ok(())
    }
    fn merge(&self, dest: &mut Views<'_>, src: &mut Views<'_>) -> crate::Result<()> {
        let [nb, sb, vb] = src.many(["num_frames", "sum", "varsum"]);
        let [na, sa, va] = dest.many(["num_frames", "sum", "varsum"]);
        combine(na[0], sa, va, nb[0], sb, vb);
        na[0] += nb[0];
        Ok(())
    }
    fn get_results(&self, _meta: &Meta, bufs: &mut Views<'_>) -> crate::Result<()> {
        let n = bufs.single("num_frames")[0];
        let sum = bufs.sig("sum").to_vec();
        let varsum = bufs.sig("varsum").to_vec();
        for (m, s) in bufs.sig("mean").iter_mut().zip(&sum) {
            *m = s / n;
        }
        for (v, s) in bufs.sig("var").iter_mut().zip(&varsum) {
            *v = s / n;
        }
        for (sd, s) in bufs.sig("std").iter_mut().zip(&varsum) {
            *sd = (s / n).sqrt();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::simd::{same_at_every_level, test_values};

    #[test]
    fn moments_agree_at_every_level() {
        let v = test_values(9 * 600, 4000);
        let f: Vec<f32> = v.iter().map(|&x| x as f32 * 0.5 + 1000.0).collect();
        let ff: Vec<&[f32]> = f.chunks(600).collect();
        // counts below 4000 (u32 lanes: 9 · 4095² < 2^32) and up to 64000 (they could wrap: f64)
        for scale in [1u32, 16] {
            let u: Vec<u16> = v.iter().map(|&x| (x * scale) as u16).collect();
            let fu: Vec<&[u16]> = u.chunks(600).collect();
            let (su, vu, sf, vf, narrow) = same_at_every_level(|| {
                let (mut su, mut vu, mut sf, mut vf) = (vec![0.0; 500], vec![0.0; 500], vec![0.0; 500], vec![0.0; 500]);
                block_moments(&fu, 0, &mut su, &mut vu);
                block_moments(&ff, 0, &mut sf, &mut vf);
                let (mut sn, mut vn) = (vec![0.0; 500], vec![0.0; 500]);
                let done = narrow_moments(&fu, 0.0, &mut sn, &mut vn);
                (su, vu, sf, vf, (done, sn, vn))
            });
            if scale == 1 {
                assert_eq!(narrow, (500, su.clone(), vu.clone()), "u32 and f64 lanes give the same values");
            } else {
                assert_eq!(narrow.0, 0, "counts that could wrap u32 lanes are left to f64");
            }
            for p in 0..500 {
                let xs: Vec<f64> = fu.iter().map(|fr| fr[p] as f64).collect();
                let mean = xs.iter().sum::<f64>() / 9.0;
                let var: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
                assert_eq!(su[p], mean * 9.0);
                assert!((vu[p] - var).abs() <= 1e-9 * var.max(1.0), "u16 pixel {p}");
                if scale == 1 {
                    assert!((sf[p] - (mean * 4.5 + 9000.0)).abs() <= 1e-6);
                    assert!(
                        (vf[p] - var / 4.0).abs() <= 1e-6 * var.max(1.0),
                        "f32 pixel {p}: {} vs {}",
                        vf[p],
                        var / 4.0
                    );
                }
            }
        }
    }
}
