//! `udf_sum_sig`: the sum of each frame (LiberTEM's SumSigUDF).

use crate::dataset::Pixel;
use crate::udf::{Buffers, Meta, Tile, Udf, UdfDoc, Views};

/// Sum over the signal dimensions of each frame (LiberTEM's SumSigUDF):
/// `intensity[nav] = Σ_{y,x} frame_nav[y, x]` — a virtual bright field over the whole detector.
///
/// ```sql
/// SELECT udf_sum_sig(tile) FROM scan
/// -- {intensity: tensor[nav_y, nav_x], valid: tensor[nav_y, nav_x]}
/// ```
#[derive(Clone, Debug, Default)]
pub struct SumSig;

impl Udf for SumSig {
    fn name(&self) -> &str {
        "udf_sum_sig"
    }
    fn doc(&self) -> Option<UdfDoc> {
        Some(UdfDoc {
            description: "Sum of each frame (LiberTEM SumSigUDF): a bright-field image. Result: {intensity: nav-shaped, valid}",
            syntax: "udf_sum_sig(tile)",
            example: "SELECT udf_sum_sig(tile) FROM scan",
            args: &[],
        })
    }
    fn buffers(&self, meta: &Meta) -> crate::Result<Buffers> {
        Ok(Buffers::new().nav("intensity", meta.input_dtype.float_result()))
    }
    fn process_tile<T: Pixel>(&mut self, tile: &Tile<'_, T>, out: &mut Views<'_>) -> crate::Result<()> {
        tile.sum_each_frame_into(out.nav("intensity"));
        Ok(())
    }
}
