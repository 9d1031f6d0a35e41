//! Built-in UDFs, one file each, as LiberTEM's `udf/` folder.
//!
//! | SQL name | LiberTEM | buffers | result dtype |
//! |---|---|---|---|
//! | `udf_sum` | SumUDF | `intensity`: sig | `result_type(input, float32)` |
//! | `udf_sum_sig` | SumSigUDF | `intensity`: nav | `result_type(input, float32)` |
//! | `udf_stddev` | StdDevUDF | `sum`, `varsum`, `var`, `std`, `mean`: sig; `num_frames`: single \[1\] | float64; num_frames int64 |
//! | `udf_logsum` | LogsumUDF | `logsum`: sig | float32 |
//! | `udf_apply_masks` | ApplyMasksUDF | `intensity`: nav × n_masks | `result_type(input, float32)` |
//! | `udf_com` | CoMUDF | `raw_com`, `raw_shifts`, `field`: nav × 2; `field_y`, `field_x`, `magnitude`, `divergence`, `curl`: nav; `regression`: single \[3, 2\] | `result_type(input, float32)`; regression float64 |
//! | `udf_fem` | FEMUDF | `intensity`: nav | float32 |
//! | `udf_crystallinity` | CrystallinityUDF | `intensity`: nav | float32 |
//! | `udf_radial_fourier` | RadialFourierAnalysis | `real`, `imag`, `absolute`, `phase`: nav × n_bins × orders | float32 |
//!
//! LiberTEM 0.16 returns CoM's derived buffers as float64 when no ROI is given and as their declared
//! dtype with a ROI; Tessera always returns the declared dtype, so a result's dtype never depends on
//! the ROI.
//!
//! `result_type(input, float32)` is float32 for u8/u16/i16/f32 data and float64 for u32/i32/f64, as
//! numpy's promotion rules and LiberTEM 0.16 give.

mod com;
mod crystallinity;
mod fem;
mod logsum;
mod masks;
mod radial_fourier;
mod stddev;
mod sum;
mod sum_sig;

pub use com::CenterOfMass;
pub use crystallinity::Crystallinity;
pub use fem::Fem;
pub use logsum::LogSum;
pub use masks::ApplyMasks;
pub use radial_fourier::RadialFourier;
pub use stddev::StdDev;
pub use sum::Sum;
pub use sum_sig::SumSig;

use datafusion::logical_expr::AggregateUDF;

/// Every built-in as a DataFusion aggregate function.
pub fn all() -> Vec<AggregateUDF> {
    vec![
        super::aggregate(Sum::default()),
        super::aggregate(SumSig),
        super::aggregate(StdDev),
        super::aggregate(LogSum),
        super::aggregate(ApplyMasks::default()),
        super::aggregate(CenterOfMass::default()),
        super::aggregate(Fem::default()),
        super::aggregate(Crystallinity::default()),
        super::aggregate(RadialFourier::default()),
    ]
}
