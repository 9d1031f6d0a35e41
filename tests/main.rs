//! Tessera's integration tests: one crate (one link of DataFusion), one module per area.

mod common;
mod errors;
mod export;
mod formats;
mod hdf5;
mod oracle;
mod realdata;
mod roi;
mod slt;
mod udfs;
