//! `udf_apply_masks`: virtual detectors — the dot product of each frame with each mask
//! (LiberTEM's ApplyMasksUDF).

use crate::dataset::Pixel;
use crate::error::Error;
use crate::udf::masks::{MaskStack, RunWindow, column_prefix, specs_from_field};
use crate::udf::{
    Args, Buffers, Meta, RunLane, Tile, Udf, UdfDoc, Views, frames_with_next, prefetch_l2, prefetch_l2_at, same_type,
    simd, tail_window,
};
use std::sync::Arc;

/// `intensity[nav, m] = Σ_p frame_nav[p] · mask_m[p]` for every mask of the stack (LiberTEM's
/// ApplyMasksUDF). Masks with few non-zero pixels (at most a quarter) are evaluated sparsely.
///
/// ```sql
/// SELECT udf_apply_masks(tile, masks('ring(15.5, 15.5, 6, 14)', 'disk(15.5, 15.5, 4)')) FROM scan
/// -- {intensity: tensor[nav_y, nav_x, 2], valid}
/// ```
#[derive(Clone, Debug, Default)]
pub struct ApplyMasks {
    stack: Option<Arc<MaskStack>>,
}

impl ApplyMasks {
    /// The UDF with a mask stack given from Rust.
    pub fn new(stack: MaskStack) -> Self {
        ApplyMasks { stack: Some(Arc::new(stack)) }
    }
    fn stack(&self) -> crate::Result<&MaskStack> {
        self.stack.as_deref().ok_or_else(|| {
            Error::udf("udf_apply_masks", "no masks given: udf_apply_masks(tile, masks('disk(16, 16, 8)'))")
        })
    }
}

impl Udf for ApplyMasks {
    fn name(&self) -> &str {
        "udf_apply_masks"
    }
    fn doc(&self) -> Option<UdfDoc> {
        Some(UdfDoc {
            description: "Virtual detectors: the dot product of each frame with each mask (LiberTEM ApplyMasksUDF). \
                          Result: {intensity: nav-shaped × n_masks, valid}",
            syntax: "udf_apply_masks(tile, masks('ring(cy, cx, ri, ro)' | 'disk(cy, cx, r)' | 'point(y, x)' | \
                     'rect(y0, x0, h, w)' | 'polygon(y0 x0, y1 x1, ...)' | 'npy(path)', ...))",
            example: "SELECT udf_apply_masks(tile, masks('ring(63.5, 63.5, 20, 40)', 'disk(63.5, 63.5, 10)')) FROM scan",
            args: &[
                ("masks", "masks('spec', ...): one mask per spec string; an .npy stack adds all its masks"),
                ("shifts", "optional per-frame (dy, dx) to move the masks by, e.g. aux('shifts.npy', nav_index)"),
            ],
        })
    }
    fn params(&self) -> &'static [&'static str] {
        &["masks", "shifts"]
    }
    fn configure(&self, meta: &Meta, args: &Args) -> crate::Result<Self> {
        let Some((field, _)) = args.get("masks") else {
            return match &self.stack {
                Some(s) if s.sig_size == meta.sig.size() => Ok(self.clone()),
                Some(s) => Err(Error::udf(
                    self.name(),
                    format!(
                        "masks: the stack has {} pixels per mask, the frames {} ({})",
                        s.sig_size,
                        meta.sig.size(),
                        meta.sig
                    ),
                )),
                None => Err(Error::udf(self.name(), "needs masks: udf_apply_masks(tile, masks('disk(16, 16, 8)'))")),
            };
        };
        let specs = specs_from_field(field).map_err(|e| Error::udf(self.name(), e.to_string()))?;
        let stack = MaskStack::shared(&specs, &meta.sig).map_err(|e| Error::udf(self.name(), e.to_string()))?;
        Ok(ApplyMasks { stack: Some(stack) })
    }
    fn buffers(&self, meta: &Meta) -> crate::Result<Buffers> {
        Ok(Buffers::new().nav_extra("intensity", &[self.stack()?.n], meta.input_dtype.float_result()))
    }
    fn process_tile<T: Pixel>(&mut self, tile: &Tile<'_, T>, out: &mut Views<'_>) -> crate::Result<()> {
        let stack = self.stack.as_deref().expect("configured before processing");
        let out = out.nav("intensity");
        if let Some(shifts) = tile.aux_f64("shifts")? {
            return apply_shifted(stack, tile, &shifts, out);
        }
        apply_stack(stack, tile.data(), tile.sig_size(), out);
        Ok(())
    }
}

simd::multiversion! {
    /// Adds `Σ_p frame[p] · mask_m[p]` of every frame (`sig_size` pixels each, consecutive in `data`)
    /// to its row of `out` (`n` masks per frame).
    fn apply_stack<T: Pixel>(stack: &MaskStack, data: &[T], sig_size: usize, out: &mut [f64]) {
        let n = stack.n;
        // binary masks: their runs in frame order, one sequential pass over each frame for all masks.
        // Many short runs (narrow rings) cost more in per-run overhead than in pixels: for 16-bit
        // counts, running sums down the frame's columns (one vector add per row) then make each
        // vertical run two lookups (`column_runs`, set where that pays). Float frames: the runs cut
        // into 16-pixel windows, the same steps for each (`add_windows`)
        let mut prefix: Vec<u32> = Vec::new();
        let (mut lanes16, mut lanes8): (Vec<[u32; 16]>, Vec<[f64; 8]>) = (Vec::new(), Vec::new());
        for ((frame, next), res) in frames_with_next(data, sig_size).zip(out.chunks_exact_mut(n)) {
            if stack.runs.is_some() {
                match (same_type::<T, u16>(frame), &stack.column_runs) {
                    (Some(frame), Some(column_runs)) => {
                        column_prefix(frame, stack.width, &mut prefix);
                        add_column_runs(&prefix, column_runs, res);
                    }
                    // (floats: running sums in f64 were measured slower than direct sums of the
                    // runs; the f64 sums of a 256×256 frame no longer fit in L2 beside the frames)
                    _ => match (same_type::<T, u16>(frame), same_type::<T, u8>(frame)) {
                        (Some(frame), _) if frame.len() <= 65536 => {
                            let next = same_type::<T, u16>(next).unwrap_or_default();
                            add_runs(frame, next, &stack.ordered_runs, u32::from, &mut lanes16, res)
                        }
                        (_, Some(frame)) if frame.len() <= 65536 => {
                            let next = same_type::<T, u8>(next).unwrap_or_default();
                            add_runs(frame, next, &stack.ordered_runs, u32::from, &mut lanes16, res)
                        }
                        _ if stack.windows.is_empty() => {
                            add_runs(frame, next, &stack.ordered_runs, T::to_f64, &mut lanes8, res)
                        }
                        _ => add_windows(frame, next, &stack.windows, &mut lanes8, res),
                    },
                }
                continue;
            }
            match &stack.sparse {
                Some(sparse) => {
                    for (r, mask) in res.iter_mut().zip(sparse) {
                        *r += mask.iter().map(|&(p, w)| frame[p as usize].to_f64() * w as f64).sum::<f64>();
                    }
                }
                None => {
                    for (r, mask) in res.iter_mut().zip(stack.dense.chunks_exact(stack.sig_size)) {
                        *r += dot(frame, mask);
                    }
                }
            }
        }
    }
}

/// Adds each mask's sum over its runs `(first pixel, length, mask)` of `frame` (in frame order) to its
/// entry of `res`. Each mask sums into its own `W` lanes (`lanes`: scratch space), reduced once per
/// frame: a run costs its whole windows of `W` pixels plus one window for its tail, whose lanes past
/// the run are masked out (the window moves back to stay inside the frame at its end). No horizontal
/// sum and no scalar remainder loop per run, which dominated for the rings' runs of tens of pixels.
/// u32 lanes are exact for 8/16-bit counts on frames of up to 65 536 pixels: a lane takes at most
/// one pixel per window, and there are at most that many windows. Each run also asks for its pixels
/// of the `next` frame (empty for none) to be brought into L2 (see [`prefetch_l2`]).
#[inline(always)]
fn add_runs<T: Copy, A: RunLane, const W: usize>(
    frame: &[T],
    next: &[T],
    runs: &[(u32, u32, u32)],
    widen: impl Fn(T) -> A,
    lanes: &mut Vec<[A; W]>,
    res: &mut [f64],
) {
    if frame.len() < W {
        for &(p, l, m) in runs {
            let sum = frame[p as usize..(p + l) as usize].iter().fold(A::default(), |s, &x| s + widen(x));
            res[m as usize] += A::total(&[sum]);
        }
        return;
    }
    lanes.clear();
    lanes.resize(res.len(), [A::default(); W]);
    let (mut current, mut acc) = (usize::MAX, [A::default(); W]);
    for &(p, l, m) in runs {
        let (p, l, m) = (p as usize, l as usize, m as usize);
        prefetch_l2(next, p, l);
        // consecutive runs of the same mask keep its lanes in registers
        if m != current {
            if current != usize::MAX {
                lanes[current] = acc;
            }
            (current, acc) = (m, lanes[m]);
        }
        let whole = l / W * W;
        for c in frame[p..p + whole].chunks_exact(W) {
            for k in 0..W {
                acc[k] = acc[k] + widen(c[k]);
            }
        }
        let tail = l - whole;
        if tail > 0 {
            let (window, inside, _) = tail_window::<T, W>(frame, p + whole, tail);
            for k in 0..W {
                acc[k] = acc[k] + widen(window[k]).keep(inside[k]);
            }
        }
    }
    if current != usize::MAX {
        lanes[current] = acc;
    }
    for (r, acc) in res.iter_mut().zip(lanes.iter()) {
        *r += A::total(acc);
    }
}

/// Adds each mask's sum over its run windows (see [`RunWindow`]) of a float frame to its entry of
/// `res`. Each mask sums into its own 8 f64 lanes (`lanes`: scratch space), reduced once per frame:
/// lane `k` of a window takes its pixels `k` and `8 + k` where their bits are set. The lanes stay in
/// registers across consecutive windows of the same mask. Each window also asks for the same pixels
/// of the `next` frame (empty for none) to be brought into L2: the masks read a frame in short
/// pieces, which the hardware prefetcher follows less far ahead than a whole frame's stream.
/// Float32 frames on AVX-512 take [`add_windows_f32_avx512`], which does the same additions in the
/// same order.
#[inline(always)]
fn add_windows<T: Pixel>(frame: &[T], next: &[T], windows: &[RunWindow], lanes: &mut Vec<[f64; 8]>, res: &mut [f64]) {
    lanes.clear();
    lanes.resize(res.len(), [0.0; 8]);
    #[cfg(target_arch = "x86_64")]
    if let (Some(frame), Some(next)) = (same_type::<T, f32>(frame), same_type::<T, f32>(next))
        && simd::level() == simd::Level::Avx512
    {
        // SAFETY: the level is reported only where the CPU has AVX-512 (`simd::level`).
        unsafe { add_windows_f32_avx512(frame, next, windows, lanes) };
    } else {
        add_windows_lanes(frame, next, windows, lanes);
    }
    #[cfg(not(target_arch = "x86_64"))]
    add_windows_lanes(frame, next, windows, lanes);
    for (r, acc) in res.iter_mut().zip(lanes.iter()) {
        *r += f64::total(acc);
    }
}

/// The portable body of [`add_windows`]: `lanes` holds one zeroed entry per mask.
#[inline(always)]
fn add_windows_lanes<T: Pixel>(frame: &[T], next: &[T], windows: &[RunWindow], lanes: &mut [[f64; 8]]) {
    let (mut current, mut acc) = (usize::MAX, [0f64; 8]);
    for w in windows {
        prefetch_l2_at(next, w.p as usize);
        let x: &[T; 16] = frame[w.p as usize..w.p as usize + 16].try_into().expect("16 pixels");
        // the set bits are lo .. lo + len: one unsigned compare per lane (vectorizes; a bit test
        // per lane does not)
        let (lo, len) = (w.bits.trailing_zeros(), w.bits.count_ones());
        let mut v = [0f64; 8];
        for k in 0..8 {
            let (a, b) = (x[k].to_f64(), x[k + 8].to_f64());
            v[k] = a.keep((k as u32).wrapping_sub(lo) < len) + b.keep((k as u32 + 8).wrapping_sub(lo) < len);
        }
        let m = w.m as usize;
        if m != current {
            if current != usize::MAX {
                lanes[current] = acc;
            }
            (current, acc) = (m, lanes[m]);
        }
        for k in 0..8 {
            acc[k] += v[k];
        }
    }
    if current != usize::MAX {
        lanes[current] = acc;
    }
}

/// [`add_windows_lanes`] of a float32 frame with AVX-512: a window's bits are the lane masks of two
/// zero-masking conversions to f64 (no compare per lane; a masked-out pixel, NaN included, adds
/// +0.0, as `keep` makes it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
fn add_windows_f32_avx512(frame: &[f32], next: &[f32], windows: &[RunWindow], lanes: &mut [[f64; 8]]) {
    use std::arch::x86_64::*;
    let (mut current, mut acc) = (usize::MAX, _mm512_setzero_pd());
    for w in windows {
        prefetch_l2_at(next, w.p as usize);
        let x = &frame[w.p as usize..w.p as usize + 16];
        // SAFETY: `x` holds 16 f32 (the slice is bounds-checked); unaligned loads of 8 each.
        let (a, b) = unsafe { (_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(x.as_ptr().add(8))) };
        let v = _mm512_add_pd(_mm512_maskz_cvtps_pd(w.bits as u8, a), _mm512_maskz_cvtps_pd((w.bits >> 8) as u8, b));
        let m = w.m as usize;
        if m != current {
            if current != usize::MAX {
                // SAFETY: `lanes[current]` is 8 f64 (bounds-checked index); an unaligned store.
                unsafe { _mm512_storeu_pd(lanes[current].as_mut_ptr(), acc) };
            }
            current = m;
            // SAFETY: as above, an unaligned load of the 8 f64 of `lanes[m]`.
            acc = unsafe { _mm512_loadu_pd(lanes[m].as_ptr()) };
        }
        acc = _mm512_add_pd(acc, v);
    }
    if current != usize::MAX {
        // SAFETY: as above.
        unsafe { _mm512_storeu_pd(lanes[current].as_mut_ptr(), acc) };
    }
}

/// Adds each mask's sum over its vertical runs (`column_runs`, indices into the column running sums
/// `prefix`) to its entry of `res`; mask by mask, in a register, so that no chain of stores and
/// reloads of `res` forms. Exact: a mask's sum over a frame of 16-bit counts stays below 2^32.
#[inline(always)]
fn add_column_runs(prefix: &[u32], column_runs: &[Vec<(u32, u32)>], res: &mut [f64]) {
    for (r, runs) in res.iter_mut().zip(column_runs) {
        let mut acc = 0u32;
        for &(a, b) in runs {
            acc += prefix[b as usize] - prefix[a as usize];
        }
        *r += acc as f64;
    }
}

/// Applies the masks moved by each frame's integer shift `(dy, dx)` (rounded):
/// `Σ_p mask[p] · frame[p + shift]`, pixels shifted out of the frame dropped.
fn apply_shifted<T: Pixel>(
    stack: &MaskStack,
    tile: &Tile<'_, T>,
    shifts: &[f64],
    out: &mut [f64],
) -> crate::Result<()> {
    let (sy, sx) = {
        let v = tile.view3();
        (v.shape()[1] as i64, v.shape()[2] as i64)
    };
    if shifts.len() != 2 * tile.n_frames() {
        return Err(Error::udf(
            "udf_apply_masks",
            "shifts must be two values (dy, dx) per frame, e.g. aux('shifts.npy', nav_index)",
        ));
    }
    for ((frame, res), s) in tile.frames().zip(out.chunks_exact_mut(stack.n)).zip(shifts.chunks_exact(2)) {
        let (dy, dx) = (s[0].round() as i64, s[1].round() as i64);
        for (r, mask) in res.iter_mut().zip(stack.dense.chunks_exact(stack.sig_size)) {
            let mut acc = 0.0;
            for (p, &w) in mask.iter().enumerate().filter(|(_, w)| **w != 0.0) {
                let (y, x) = (p as i64 / sx + dy, p as i64 % sx + dx);
                if (0..sy).contains(&y) && (0..sx).contains(&x) {
                    acc += frame[(y * sx + x) as usize].to_f64() * w as f64;
                }
            }
            *r += acc;
        }
    }
    Ok(())
}

/// Dot product in f64 with independent lanes (vectorizes).
#[inline(always)]
fn dot<T: Pixel>(frame: &[T], mask: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let (fc, mc) = (frame.chunks_exact(8), mask.chunks_exact(8));
    let (fr, mr) = (fc.remainder(), mc.remainder());
    for (f, m) in fc.zip(mc) {
        for k in 0..8 {
            lanes[k] += f[k].to_f64() * m[k] as f64;
        }
    }
    let mut s: f64 = lanes.iter().sum();
    for (f, m) in fr.iter().zip(mr) {
        s += f.to_f64() * *m as f64;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Shape;
    use crate::udf::masks::MaskSpec;
    use crate::udf::simd::{same_at_every_level, test_values};

    #[test]
    fn kernels_agree_at_every_level() {
        let sig = Shape::new(vec![40, 50]);
        let specs: Vec<MaskSpec> = ["ring(20, 25, 3, 15)", "disk(10, 10, 6)", "ring(20, 25, 0, 2)"]
            .iter()
            .map(|s| MaskSpec::parse(s).unwrap())
            .collect();
        let binary = MaskStack::build(&specs, &sig).unwrap();
        let weights: Vec<f32> = test_values(2 * 2000, 7).iter().map(|&w| w as f32 - 2.5).collect();
        let dense = MaskStack::from_dense(weights, 2000);
        // narrow rings: many short runs, summed from running sums down the columns for u16
        let rings: Vec<MaskSpec> =
            (0..8).map(|k| MaskSpec::parse(&format!("ring(20, 25, {}, {})", 2 * k, 2 * k + 2)).unwrap()).collect();
        let narrow = MaskStack::build(&rings, &sig).unwrap();
        assert!(narrow.ordered_runs.len() * 16 > 2000, "the narrow rings take the running-sum path");
        let v = test_values(6 * 2000, 4000);
        let u: Vec<u16> = v.iter().map(|&x| x as u16).collect();
        let f: Vec<f32> = v.iter().map(|&x| x as f32 * 0.5).collect();
        for stack in [&binary, &dense, &narrow] {
            let (a, b) = same_at_every_level(|| {
                let (mut a, mut b) = (vec![0.0; 6 * stack.n], vec![0.0; 6 * stack.n]);
                apply_stack(stack, &u, 2000, &mut a);
                apply_stack(stack, &f, 2000, &mut b);
                (a, b)
            });
            for (i, (a, b)) in a.iter().zip(&b).enumerate() {
                let (frame, m) = (i / stack.n, i % stack.n);
                let mask = &stack.dense[m * 2000..(m + 1) * 2000];
                let want: f64 =
                    u[frame * 2000..(frame + 1) * 2000].iter().zip(mask).map(|(&x, &w)| x as f64 * w as f64).sum();
                assert!((a - want).abs() <= 1e-9 * want.abs().max(1.0), "u16 frame {frame} mask {m}: {a} vs {want}");
                assert!((b - want * 0.5).abs() <= 1e-9 * want.abs().max(1.0), "f32 frame {frame} mask {m}");
            }
        }
    }

    #[test]
    fn runs_at_the_frame_end_and_on_tiny_frames() {
        // binary masks with runs whose tails lie in the last 16 pixels (the window moves back), one of
        // more than 16 pixels, and frames smaller than a window
        for sig in [9usize, 100] {
            let mut dense = vec![0f32; 3 * sig];
            for p in [sig - 5, sig - 4, sig - 3, sig - 2, sig - 1, 0, 1] {
                dense[p] = 1.0;
            }
            for p in (sig / 3)..sig {
                dense[sig + p] = 1.0;
            }
            dense[2 * sig + sig / 2] = 1.0;
            let stack = MaskStack::from_dense(dense.clone(), sig);
            assert!(stack.runs.is_some());
            let v = test_values(4 * sig, 60000);
            let u: Vec<u16> = v.iter().map(|&x| x as u16).collect();
            let f: Vec<f32> = v.iter().map(|&x| x as f32 * 0.25).collect();
            let (a, b) = same_at_every_level(|| {
                let (mut a, mut b) = (vec![0.0; 4 * 3], vec![0.0; 4 * 3]);
                apply_stack(&stack, &u, sig, &mut a);
                apply_stack(&stack, &f, sig, &mut b);
                (a, b)
            });
            for (i, (a, b)) in a.iter().zip(&b).enumerate() {
                let (frame, m) = (i / 3, i % 3);
                let want: f64 = u[frame * sig..(frame + 1) * sig]
                    .iter()
                    .zip(&dense[m * sig..(m + 1) * sig])
                    .map(|(&x, &w)| x as f64 * w as f64)
                    .sum();
                assert_eq!(*a, want, "u16 sig {sig} frame {frame} mask {m}");
                assert!((b - want * 0.25).abs() <= 1e-12 * want.max(1.0), "f32 sig {sig} frame {frame} mask {m}");
            }
        }
    }
}
