//! One file per format.

pub mod app5;
pub mod blo;
pub mod empad;
pub mod hdf5;
pub mod memory;
pub mod mib;
pub mod mrc;
pub mod npy;
pub mod raw;
pub mod ser;
pub mod synthetic;

use super::{DatasetSpec, Geometry};
use crate::error::{Error, Result};
use crate::geometry::Shape;

/// Applies a `nav=` reinterpretation to `geometry`: the new nav shape must hold the same number
/// of frames (unless `sync_offset` pads or drops frames).
pub(crate) fn reinterpret_nav(spec: &DatasetSpec, mut geometry: Geometry, path: &str) -> Result<Geometry> {
    if let Some(nav) = spec.get("nav") {
        let nav = Shape::parse(nav)?;
        if nav.size() != geometry.nav.size() && spec.get("sync_offset").is_none() {
            return Err(Error::Shape(format!(
                "{path}: nav={nav} has {} frames but the file holds {} frames ({})",
                nav.size(),
                geometry.nav.size(),
                geometry.nav
            )));
        }
        geometry.nav = nav;
    }
    Ok(geometry)
}
