//! `udf_stddev`: per-pixel mean, variance and standard deviation over frames (LiberTEM's StdDevUDF).

use crate::dataset::{DType, Pixel};
use crate::udf::{Buffers, Meta, Tile, Udf, UdfDoc, Views};

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
pub struct StdDev {
    /// Per-batch scratch: sum and sum of squared deviations.
    scratch: (Vec<f64>, Vec<f64>),
}

/// Merges `(nb, sb, vb)` into `(na, sa, va)` (counts, sums, varsums) with Chan's formula.
fn combine(na: &mut f64, sa: &mut [f64], va: &mut [f64], nb: f64, sb: &[f64], vb: &[f64]) {
    if nb == 0.0 {
        return;
    }
    if *na == 0.0 {
        sa.copy_from_slice(sb);
        va.copy_from_slice(vb);
        *na = nb;
        return;
    }
    let n = *na + nb;
    let w = *na * nb / n;
    for ((s, v), (&s2, &v2)) in sa.iter_mut().zip(va.iter_mut()).zip(sb.iter().zip(vb)) {
        let delta = s2 / nb - *s / *na;
        *v += v2 + delta * delta * w;
        *s += s2;
    }
    *na = n;
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
        let n = tile.n_frames();
        let size = tile.sig_size();
        let (sum, var) = &mut self.scratch;
        sum.clear();
        sum.resize(size, 0.0);
        var.clear();
        var.resize(size, 0.0);
        let inv = 1.0 / n as f64;
        if matches!(T::DTYPE, DType::U8 | DType::U16 | DType::I16) {
            // small integers: Σx and Σx² are exact in f64 for a batch, so one pass gives the batch's
            // sum of squared deviations Σx² − (Σx)²/n without the cancellation floats would suffer
            for frame in tile.frames() {
                for ((s, v), &x) in sum.iter_mut().zip(var.iter_mut()).zip(frame) {
                    let x = x.to_f64();
                    *s += x;
                    *v += x * x;
                }
            }
            for (v, &s) in var.iter_mut().zip(sum.iter()) {
                // n·Σx² − (Σx)² in integers (both sums are exact integers), so constant pixels give 0
                let (q, s) = (*v as i128, s as i128);
                *v = (n as i128 * q - s * s) as f64 * inv;
            }
        } else {
            tile.sum_frames_into(sum);
            for frame in tile.frames() {
                for ((v, &s), &x) in var.iter_mut().zip(sum.iter()).zip(frame) {
                    let d = x.to_f64() - s * inv;
                    *v += d * d;
                }
            }
        }
        let mut na = out.single("num_frames")[0];
        let (sa, va) = (out.sig("sum").to_vec(), out.sig("varsum").to_vec());
        let (mut sa, mut va) = (sa, va);
        combine(&mut na, &mut sa, &mut va, n as f64, sum, var);
        out.sig("sum").copy_from_slice(&sa);
        out.sig("varsum").copy_from_slice(&va);
        out.single("num_frames")[0] = na;
        Ok(())
    }
    fn merge(&self, dest: &mut Views<'_>, src: &mut Views<'_>) -> crate::Result<()> {
        let nb = src.single("num_frames")[0];
        let (sb, vb) = (src.sig("sum").to_vec(), src.sig("varsum").to_vec());
        let mut na = dest.single("num_frames")[0];
        let (mut sa, mut va) = (dest.sig("sum").to_vec(), dest.sig("varsum").to_vec());
        combine(&mut na, &mut sa, &mut va, nb, &sb, &vb);
        dest.sig("sum").copy_from_slice(&sa);
        dest.sig("varsum").copy_from_slice(&va);
        dest.single("num_frames")[0] = na;
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
