//! Physical calibration of a dataset's axes, where the file has it: the scan step and the detector
//! pixel size with their units, and other acquisition values (camera length, scan rotation, beam
//! energy). It travels as JSON in the `tile` field's metadata (`tessera.calibration`) and from there
//! onto every result tensor: `dim_names` in the tensor's extension metadata and `tessera.axes` (one
//! entry per dimension) beside it.

use serde::{Deserialize, Serialize};

/// One calibrated axis: coordinate of pixel `i` = `offset + i × scale`, in `units`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// The axis name (`y`, `x`, `ky`, `Qx`, ...).
    pub name: String,
    /// Step per pixel.
    pub scale: f64,
    /// Coordinate of the first pixel.
    pub offset: f64,
    /// Units of `scale` and `offset` (`nm`, `1/nm`, `mrad`, ...); empty when unknown.
    pub units: String,
}

impl Axis {
    /// An axis of `scale` `units` per pixel, starting at 0.
    pub fn new(name: &str, scale: f64, units: &str) -> Self {
        Axis { name: name.into(), scale, offset: 0.0, units: units.into() }
    }
}

/// The calibration of a dataset: its scan axes, its detector axes (outermost first, as the shapes),
/// and other named values. Empty where the file says nothing.
///
/// ```
/// use tessera::dataset::{Axis, Calibration};
/// let c = Calibration { nav: vec![Axis::new("y", 0.5, "nm"), Axis::new("x", 0.5, "nm")], ..Default::default() };
/// let back = Calibration::from_json(&c.to_json()).unwrap();
/// assert_eq!(back, c);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// One axis per scan dimension, or none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nav: Vec<Axis>,
    /// One axis per frame dimension, or none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sig: Vec<Axis>,
    /// Other values: camera length, scan rotation, high tension, ... (name, value with units).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<(String, String)>,
}

impl Calibration {
    /// Whether the file gave no calibration at all.
    pub fn is_empty(&self) -> bool {
        self.nav.is_empty() && self.sig.is_empty() && self.extra.is_empty()
    }
    /// As JSON (the `tessera.calibration` metadata value).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("calibration serialises")
    }
    /// From JSON written by [`Calibration::to_json`].
    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
    /// Keeps the axes only where there is one per dimension of `nav` and `sig` (a `nav=`
    /// reinterpretation makes the file's scan axes meaningless).
    pub fn fit(mut self, nav_dims: usize, sig_dims: usize) -> Self {
        if self.nav.len() != nav_dims {
            self.nav.clear();
        }
        if self.sig.len() != sig_dims {
            self.sig.clear();
        }
        self
    }
    /// Lines for `tessera info`.
    pub fn describe(&self) -> Vec<(String, String)> {
        let axis = |kind: &str, a: &Axis| {
            (format!("{kind} axis {}", a.name), format!("{} {} per pixel (from {})", a.scale, a.units, a.offset))
        };
        let mut out: Vec<(String, String)> = self.nav.iter().map(|a| axis("scan", a)).collect();
        out.extend(self.sig.iter().map(|a| axis("detector", a)));
        out.extend(self.extra.iter().cloned());
        out
    }
}
