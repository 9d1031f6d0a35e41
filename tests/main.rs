//! Tessera's integration tests: one crate (one link of DataFusion), one module per area.

#[cfg(feature = "ballista")]
mod cluster;
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
