//! # Tessera
//!
//! A 4D-STEM processing engine on Apache Arrow and DataFusion. A dataset — a scan of diffraction
//! frames, `(nav_y, nav_x, sig_y, sig_x)` — is a DataFusion table with one row per frame; a
//! user-defined function in LiberTEM's model is an aggregate function; a region of interest is a
//! `WHERE` clause on the nav columns, pushed into the scan so that frames outside it are never read.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tessera::Result<()> {
//! use tessera::{Context, dataset::DatasetSpec};
//! let ctx = Context::new()?;
//! ctx.register_spec("scan", DatasetSpec::parse("synthetic,nav=16x16,sig=32x32,dtype=uint16")?)?;
//! let batches = ctx
//!     .sql("SELECT udf_sum(tile), udf_sum_sig(tile) FROM scan WHERE nav_y BETWEEN 4 AND 11")
//!     .await?
//!     .collect()
//!     .await?;
//! assert_eq!(batches[0].num_columns(), 2);
//! # Ok(()) }
//! ```
//!
//! Modules: [`geometry`] (shapes, ROI), [`dataset`] (formats), [`scan`] (the table provider),
//! [`udf`] (the UDF model and built-ins), [`tensor`] (Arrow's tensor type), [`export`],
//! [`display`] (readable summaries of results), [`progress`] (running queries, cancellation, live
//! partial results), `cluster` (the same SQL on an Apache DataFusion Ballista cluster; feature
//! `ballista`).
#![deny(missing_docs)]

#[cfg(feature = "ballista")]
pub mod cluster;
mod context;
pub mod dataset;
pub mod display;
mod error;
pub mod export;
pub mod geometry;
pub mod progress;
pub mod scan;
pub mod tensor;
pub mod udf;

pub use context::{Context, Registries, default_config, register};
pub use error::{Error, Result};
