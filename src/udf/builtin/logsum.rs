//! `udf_logsum`: the sum of the logarithms of the frames (LiberTEM's LogsumUDF).

use crate::dataset::{DType, Pixel};
use crate::udf::{Buffers, Meta, Method, Tile, Udf, UdfDoc, Views};

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
    fn method(&self) -> Method {
        Method::Frame
    }
    fn process_frame<T: Pixel>(&mut self, frame: &Tile<'_, T>, out: &mut Views<'_>) -> crate::Result<()> {
        let px = frame.data();
        let min = px.iter().map(|v| v.to_f64()).fold(f64::INFINITY, f64::min);
        let out = out.sig("logsum");
        if matches!(T::DTYPE, DType::U8 | DType::U16) {
            // 8- and 16-bit counts: x - min + 1 is an integer in 1..=65536, its log a table lookup
            let table = ln_table();
            let min = min as usize;
            for (o, &x) in out.iter_mut().zip(px) {
                *o += table[x.to_f64() as usize - min + 1];
            }
        } else {
            for (o, &x) in out.iter_mut().zip(px) {
                *o += (x.to_f64() - min + 1.0).ln();
            }
        }
        Ok(())
    }
}

/// `ln(k)` for `k` in `0..=65536` (512 KiB, made once).
fn ln_table() -> &'static [f64] {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=65536u32).map(|k| (k as f64).ln()).collect())
}
