//! `udf_sum`: the sum of all frames (LiberTEM's SumUDF).

use crate::dataset::Pixel;
use crate::udf::{Buffers, Meta, Tile, Udf, UdfDoc, Views};

/// Sum of all frames, keeping the signal dimensions (LiberTEM's SumUDF):
/// `intensity[y, x] = Σ_frames frame[y, x]`.
///
/// ```sql
/// SELECT udf_sum(tile) FROM scan WHERE nav_y BETWEEN 4 AND 11
/// -- {intensity: tensor[sig_y, sig_x]}
/// ```
#[derive(Clone, Debug, Default)]
pub struct Sum;

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
        tile.sum_frames_into(out.sig("intensity"));
        Ok(())
    }
    // merge: the default adds the partitions' sums.
}
