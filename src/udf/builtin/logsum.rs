//! `udf_logsum`: the sum of the logarithms of the frames (LiberTEM's LogsumUDF).

use crate::dataset::{DType, Pixel};
use crate::udf::{Buffers, Meta, SmallUint, Tile, Udf, UdfDoc, Views, add_by_fours, same_type_frames, simd};
use std::ops::Range;

/// Sum over frames of `log(frame - min(frame) + 1)` (LiberTEM's LogsumUDF): a sum that brings out
/// faint features next to a bright central beam. `min(frame)` is the frame's smallest pixel.
///
/// ```sql
/// SELECT udf_logsum(tile) FROM scan
/// -- {logsum: tensor[sig_y, sig_x] float32}
/// ```
#[derive(Clone, Debug, Default)]
pub struct LogSum;

impl Udf for LogSum {
    fn name(&self) -> &str {
        "udf_logsum"
    }
    fn doc(&self) -> Option<UdfDoc> {
        Some(UdfDoc {
            description: "Sum over frames of log(frame - min(frame) + 1) (LiberTEM LogsumUDF). Result: {logsum: sig-shaped}",
            syntax: "udf_logsum(tile)",
            example: "SELECT udf_logsum(tile) FROM scan",
            args: &[],
        })
    }
    fn buffers(&self, _meta: &Meta) -> crate::Result<Buffers> {
        Ok(Buffers::new().sig("logsum", DType::F32))
    }
    fn process_tile<T: Pixel>(&mut self, tile: &Tile<'_, T>, out: &mut Views<'_>) -> crate::Result<()> {
        let frames: Vec<&[T]> = tile.frames().collect();
        let mins = frame_mins(&frames);
        let out = out.sig("logsum");
        // block by block of pixels, so that the block's sums stay in L1 while every frame passes
        for (b, out) in out.chunks_mut(BLOCK).enumerate() {
            logsum_block(&frames, &mins, b * BLOCK, out);
        }
        Ok(())
    }
}

/// Pixels per block of the sums: they stay in L1 while every frame of the batch passes.
const BLOCK: usize = 512;

simd::multiversion! {
    /// Adds `ln(x - min + 1)` of pixels `start..start + out.len()` of every frame (with its `min`)
    /// into `out`.
    fn logsum_block<T: Pixel>(frames: &[&[T]], mins: &[f64], start: usize, out: &mut [f64]) {
        let px = start..start + out.len();
        if let Some(frames) = same_type_frames::<T, u16>(frames) {
            let table = ln1p_table();
            add_by_fours(frames, px, out, |k| mins[k] as u32, |x, min| lookup(table, x, min));
        } else if let Some(frames) = same_type_frames::<T, u8>(frames) {
            let table = ln1p_table();
            add_by_fours(frames, px, out, |k| mins[k] as u32, |x, min| lookup(table, x, min));
        } else if let Some(frames) = same_type_frames::<T, f32>(frames) {
            // float32 frames: the log in float32 (the result's precision), summed in f64
            add_logs_f32(frames, mins, px, out);
        } else {
            add_by_fours(frames, px, out, |k| mins[k], |x, min| ln_from_one(x.to_f64() - min + 1.0));
        }
    }
}

/// `ln(x - min + 1)` of an 8- or 16-bit count: `x - min + 1` is an integer in `1..=65536`, its log
/// `table[x - min]`. The integer index masked to 16 bits (no float round trip, no range check) lets the
/// loop vectorise (gathers).
#[inline(always)]
fn lookup<U: SmallUint>(table: &[f64; 65536], x: U, min: u32) -> f64 {
    table[(x.into().wrapping_sub(min) & 0xffff) as usize]
}

/// `ln(x - min + 1)` of float32 frames added into `out` (pixels `px`): four frames' logs added in f32
/// into a float32 block first, as a loop of float32 alone runs 16 lanes wide (one that also adds into
/// the f64 sums runs 8 wide); then the block is added into the f64 sums.
#[inline(always)]
fn add_logs_f32(frames: &[&[f32]], mins: &[f64], px: Range<usize>, out: &mut [f64]) {
    let quads = frames.len() / 4 * 4;
    let mut tmp = [0f32; BLOCK];
    for (cb, out) in out.chunks_mut(BLOCK).enumerate() {
        let px = px.start + cb * BLOCK..px.start + cb * BLOCK + out.len();
        let tmp = &mut tmp[..out.len()];
        for k in (0..quads).step_by(4) {
            let (a, b) = (&frames[k][px.clone()], &frames[k + 1][px.clone()]);
            let (c, d) = (&frames[k + 2][px.clone()], &frames[k + 3][px.clone()]);
            // x − min + 1 as x + (1 − min): one rounding and one add per pixel instead of two
            let m: [f32; 4] = std::array::from_fn(|j| (1.0 - mins[k + j]) as f32);
            for (i, t) in tmp.iter_mut().enumerate() {
                let (la, lb) = (ln_from_one_f32(a[i] + m[0]), ln_from_one_f32(b[i] + m[1]));
                let (lc, ld) = (ln_from_one_f32(c[i] + m[2]), ln_from_one_f32(d[i] + m[3]));
                *t = (la + lb) + (lc + ld);
            }
            for (o, &t) in out.iter_mut().zip(tmp.iter()) {
                *o += t as f64;
            }
        }
        let rest = &frames[quads..];
        add_by_fours(rest, px, out, |k| (1.0 - mins[quads + k]) as f32, |x, c| ln_from_one_f32(x + c) as f64);
    }
}

simd::multiversion! {
    /// The smallest pixel of each frame.
    fn frame_mins<T: Pixel>(frames: &[&[T]]) -> Vec<f64> {
        let mut mins = Vec::with_capacity(frames.len());
        for f in frames {
            mins.push(min_f64(f));
        }
        mins
    }
}

/// The smallest pixel of a frame as f64 (NaN pixels are skipped, as `f64::min` does), compared in
/// the pixels' own type (16-bit counts: 32 per AVX-512 instruction, no conversion).
#[inline(always)]
fn min_f64<T: Pixel>(xs: &[T]) -> f64 {
    const LANES: usize = 32;
    // the type's largest value (+∞ for floats): from_f64 saturates
    let mut lanes = [T::from_f64(f64::INFINITY); LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..LANES {
            // a compare-and-select (vectorises); NaN compares false and is skipped
            lanes[k] = if c[k] < lanes[k] { c[k] } else { lanes[k] };
        }
    }
    rest.iter().chain(&lanes).map(|v| v.to_f64()).fold(f64::INFINITY, f64::min)
}

/// `ln(x)` for `x ≥ 1` in float32 (and NaN, +∞), branch-free; within 2 units in the last place
/// (1.84 at worst over a sweep of every 97th float from 1 to 3·10³⁸): one division, a degree-2
/// polynomial, and no compare or select except the one for NaN and ∞.
///
/// `x = 2^e · m` with `m` in `[√½, √2)` by musl's integer reduction (an add moves the binade's
/// boundary to √2: no compare, no select). With `f = m − 1` and `s₂ = 2f / (2 + f)`,
/// `ln(1 + f) = 2·atanh(s₂/2) = s₂ + s₂·z·Q(z)`, `z = s₂²`, where `Q` is a degree-2 minimax fit of the
/// atanh series' remainder on `z ∈ [0, 0.118]` (its own relative error below 10⁻⁹, far under float32's
/// rounding); `ln x = e·ln 2 + ln(1 + f)`.
// the fitted coefficients, rounded to the nearest float by the compiler
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn ln_from_one_f32(x: f32) -> f32 {
    const Q: [f32; 3] = [0.083_333_470_402_463_47, 0.012_492_984_255_466_758, 0.002_333_710_622_475_364_8];
    let ix = x.to_bits().wrapping_add(0x3f80_0000 - 0x3f35_04f3);
    let e = ((ix >> 23) as i32 - 0x7f) as f32;
    let m = f32::from_bits((ix & 0x007f_ffff) + 0x3f35_04f3);
    let f = m - 1.0;
    let s2 = (f + f) / (2.0 + f);
    let z = s2 * s2;
    let q = Q[0] + z * (Q[1] + z * Q[2]);
    let r = e * std::f32::consts::LN_2 + (s2 + (s2 * z) * q);
    // NaN and +∞ pass through (their exponent bits would otherwise read as a number)
    if x.is_finite() { r } else { x }
}

/// `ln(x)` for `x ≥ 1` (and NaN, +∞), branch-free so that a loop of it vectorises; within one unit
/// in the last place of `f64::ln`.
///
/// `x = 2^e · m` with `m` in `[√½, √2)`; with `f = m − 1` and `s = f / (2 + f)`,
/// `ln(1 + f) = 2·atanh(s) = f − f²/2 + s·(f²/2 + R(s²))`, where `R` is the minimax polynomial of
/// the classic fdlibm `log` (its coefficients below); `ln x = e·ln 2 + ln(1 + f)`, with `ln 2` split in
/// a high part exact in multiplication by `e` and a low part.
// the coefficients as published (decimal), rounded to the nearest float by the compiler
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn ln_from_one(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238_164_9e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
    const LG: [f64; 7] = [
        6.666_666_666_666_735_13e-1,
        3.999_999_999_940_941_908e-1,
        2.857_142_874_366_239_149e-1,
        2.222_219_843_214_978_396e-1,
        1.818_357_216_161_805_012e-1,
        1.531_383_769_920_937_332e-1,
        1.479_819_860_511_658_591e-1,
    ];
    let bits = x.to_bits();
    let exp = ((bits >> 52) as i32) - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    // m in [1, 2): fold [√2, 2) onto [√½, 1)
    let big = m > std::f64::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = (exp + big as i32) as f64;
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG[1] + w * (LG[3] + w * LG[5]));
    let t2 = z * (LG[0] + w * (LG[2] + w * (LG[4] + w * LG[6])));
    let hfsq = 0.5 * f * f;
    let r = e * LN2_HI - ((hfsq - (s * (hfsq + t1 + t2) + e * LN2_LO)) - f);
    // NaN and +∞ pass through (their exponent bits would otherwise read as a number)
    if x.is_finite() { r } else { x }
}

/// `ln(k + 1)` for `k` in `0..65536`: [`ln_table`] from 1 on.
#[inline(always)]
fn ln1p_table() -> &'static [f64; 65536] {
    ln_table()[1..].try_into().expect("the table has 65 537 entries")
}

/// `ln(k)` for `k` in `0..=65536` (512 KiB, made once).
fn ln_table() -> &'static [f64] {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=65536u32).map(|k| (k as f64).ln()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_at_every_level() {
        use crate::udf::simd::{same_at_every_level, test_values};
        let v = test_values(8 * 700, 5000);
        let u: Vec<u16> = v.iter().map(|&x| x as u16 + 3).collect();
        let f: Vec<f32> = v.iter().map(|&x| x as f32 * 0.25 - 7.0).collect();
        let d: Vec<f64> = f.iter().map(|&x| x as f64).collect();
        {
            let (frames, data) = (u.chunks(700).collect::<Vec<_>>(), &u);
            let mins = same_at_every_level(|| frame_mins(&frames));
            assert_eq!(mins[0], data[..700].iter().copied().min().unwrap() as f64);
            let got = same_at_every_level(|| {
                let mut out = vec![0.0; 600];
                logsum_block(&frames, &mins, 50, &mut out);
                out
            });
            let want: f64 = frames.iter().zip(&mins).map(|(fr, m)| (fr[50] as f64 - m + 1.0).ln()).sum();
            assert!((got[0] - want).abs() < 1e-9 * want.abs());
        }
        let (ff, fd): (Vec<&[f32]>, Vec<&[f64]>) = (f.chunks(700).collect(), d.chunks(700).collect());
        let mins = same_at_every_level(|| frame_mins(&ff));
        let (gf, gd) = same_at_every_level(|| {
            let (mut a, mut b) = (vec![0.0; 700], vec![0.0; 700]);
            logsum_block(&ff, &mins, 0, &mut a);
            logsum_block(&fd, &mins, 0, &mut b);
            (a, b)
        });
        for (a, b) in gf.iter().zip(&gd) {
            // float32 logs against float64 ones: float32 precision
            assert!((a - b).abs() <= 8.0 * 4.0 * f32::EPSILON as f64 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn ln_from_one_matches_std() {
        // integers, powers of two and their neighbours, and a geometric sweep up to f64::MAX
        let mut xs: Vec<f64> = (1..=70000).map(f64::from).collect();
        for k in 0..1024 {
            let p = 2f64.powi(k);
            xs.extend([p, f64::from_bits(p.to_bits() + 1), f64::from_bits(p.to_bits().saturating_sub(1)).max(1.0)]);
        }
        let mut x = 1.0f64;
        while x.is_finite() {
            xs.push(x);
            x *= 1.000_37;
        }
        for &x in &xs {
            let (got, want) = (ln_from_one(x), x.ln());
            assert!((got - want).abs() <= 2.0 * f64::EPSILON * want.abs(), "ln({x}) = {got}, std: {want}");
        }
        for &x in xs.iter().filter(|x| **x < f32::MAX as f64) {
            let x = x as f32;
            let (got, want) = (ln_from_one_f32(x), x.ln());
            assert!((got - want).abs() <= 2.0 * f32::EPSILON * want.abs(), "ln({x}) = {got}, std: {want}");
        }
        assert_eq!(ln_from_one_f32(1.0), 0.0);
        assert!(ln_from_one_f32(f32::NAN).is_nan());
        assert_eq!(ln_from_one_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(ln_from_one(1.0), 0.0);
        assert!(ln_from_one(f64::NAN).is_nan());
        assert_eq!(ln_from_one(f64::INFINITY), f64::INFINITY);
    }
}
