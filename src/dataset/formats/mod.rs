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

/// The trimmed inner text of the first element `<name ...>text</name>` at or after byte `from` of
/// `xml`, and where it ends (the acquisition XML of TopSpin and EMPAD files: flat enough that a
/// search serves, no XML library needed).
pub(crate) fn xml_element<'a>(xml: &'a str, name: &str, from: usize) -> Option<(&'a str, usize)> {
    let open = xml.get(from..)?.find(&format!("<{name}"))? + from;
    let start = xml[open..].find('>')? + open + 1;
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some((xml[start..end].trim(), end))
}
