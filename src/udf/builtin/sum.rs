//! `udf_sum`: the sum of all frames (LiberTEM's SumUDF).

use crate::dataset::{DType, Pixel};
use crate::udf::{Buffers, Meta, Tile, Udf, UdfDoc, Views};

/// Sum of all frames, keeping the signal dimensions (LiberTEM's SumUDF):
/// `intensity[y, x] = Σ_frames frame[y, x]`.
///
/// ```sql
/// SELECT udf_sum(tile) FROM scan WHERE nav_y BETWEEN 4 AND 11
/// -- {intensity: tensor[sig_y, sig_x]}
/// ```
///
/// 8- and 16-bit frames are summed exactly in u32 per pixel across batches, and added to the f64
/// result before u32 could overflow and when the partition ends: the f64 sums are read and written
/// once per 65 536 frames instead of once per batch.
#[derive(Clone, Debug, Default)]
pub struct Sum {
    pending: Vec<u32>,
    pending_frames: usize,
}

/// Frames of 16-bit counts whose sum fits u32 (65 535 · 65 537 < 2^32).
const MAX_PENDING: usize = 65536;

impl Sum {
    /// The UDF.
    pub fn new() -> Self {
        Sum::default()
    }
    /// Adds the pending u32 sums to `intensity`.
    fn flush(&mut self, intensity: &mut [f64]) {
        if self.pending_frames > 0 {
            for (o, p) in intensity.iter_mut().zip(&mut self.pending) {
                *o += *p as f64;
                *p = 0;
            }
            self.pending_frames = 0;
        }
    }
}

impl Udf for Sum {
    fn name(&self) -> &str {
        "udf_sum"
    }
    fn doc(&self) -> Option<UdfDoc> {
        Some(UdfDoc {
            description: "Sum of all frames (LiberTEM SumUDF): intensity[y, x] = Σ frames. Result: {intensity: sig-shaped}",
            syntax: "udf_sum(tile)",
            example: "SELECT udf_sum(tile) FROM scan WHERE nav_y BETWEEN 4 AND 11",
            args: &[],
        })
    }
    fn buffers(&self, meta: &Meta) -> crate::Result<Buffers> {
        Ok(Buffers::new().sig("intensity", meta.input_dtype.float_result()))
    }
    fn process_tile<T: Pixel>(&mut self, tile: &Tile<'_, T>, out: &mut Views<'_>) -> crate::Result<()> {
        let n = tile.n_frames();
        if matches!(T::DTYPE, DType::U8 | DType::U16) && n <= MAX_PENDING {
            if self.pending_frames + n > MAX_PENDING {
                self.flush(out.sig("intensity"));
            }
            if self.pending.is_empty() {
                self.pending = vec![0; tile.sig_size()];
            }
            if tile.add_small_frames_into(&mut self.pending) {
                self.pending_frames += n;
                return Ok(());
            }
        }
        tile.sum_frames_into(out.sig("intensity"));
        Ok(())
    }
    fn postprocess(&mut self, _meta: &Meta, out: &mut Views<'_>) -> crate::Result<()> {
        self.flush(out.sig("intensity"));
        Ok(())
    }
    // merge: the default adds the partitions' sums.
}
