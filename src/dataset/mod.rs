//! Datasets: geometry, dtype and reading of frames, one file per format in [`formats`].
//!
//! A [`Dataset`] hands out *frame stacks*: the decoded pixels of runs of frames as one contiguous
//! Arrow buffer in the dataset's native dtype — zero-copy from a memory map where the file is aligned
//! and native-endian, read with `pread` into pooled buffers otherwise.

mod calibration;
mod corrections;
mod dtype;
pub mod formats;
mod io;
mod spec;

pub use calibration::{Axis, Calibration};
pub use corrections::Corrected;
pub use dtype::{ByteOrder, DType, Pixel};
pub use io::BufferPool;
pub use spec::{DatasetSpec, KEYS, Key};

use crate::error::{Error, Result};
use crate::geometry::Shape;
use arrow::buffer::Buffer;
use std::fmt::Debug;
use std::sync::Arc;

/// What a dataset holds: scan shape, frame shape and the native (decoded) pixel type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The scan (nav) shape.
    pub nav: Shape,
    /// The frame (sig) shape.
    pub sig: Shape,
    /// The pixel type after decoding.
    pub dtype: DType,
}

impl Geometry {
    /// Bytes of one decoded frame.
    pub fn frame_bytes(&self) -> usize {
        self.sig.size() * self.dtype.size()
    }
    /// Number of frames.
    pub fn n_frames(&self) -> usize {
        self.nav.size()
    }
}

/// A 4D-STEM dataset that can be read frame by frame.
pub trait Dataset: Send + Sync + Debug {
    /// The spec that opens this dataset again.
    fn spec(&self) -> &DatasetSpec;
    /// Scan shape, frame shape and pixel type.
    fn geometry(&self) -> &Geometry;
    /// Reads the frames of `runs` (`(first nav index, count)`, in order) into one contiguous buffer
    /// of decoded pixels in native byte order, `frames × sig` elements long.
    fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer>;
    /// Frames per natural read unit (an HDF5 chunk, say): the scan cuts partitions and batches at
    /// multiples of it where it can, so that no unit is read or decoded twice.
    fn frame_alignment(&self) -> usize {
        1
    }
    /// Whether [`Dataset::read`] of one run of frames lends the file's own pages (a memory map)
    /// instead of copying them. The scan then reads longer batches: a copy is best read while it is
    /// still in cache, a mapped batch has no copy to keep there (see
    /// [`MAPPED_BATCH_BYTES`](crate::scan::MAPPED_BATCH_BYTES)).
    fn maps_frames(&self) -> bool {
        false
    }
    /// The physical calibration the file records (scan step, pixel size, ...); empty by default.
    fn calibration(&self) -> Calibration {
        Calibration::default()
    }
    /// Name and value of what the file says about itself (for `tessera info`).
    fn describe(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// Opens the dataset a spec describes.
///
/// ```
/// use tessera::dataset::{open, DatasetSpec};
/// let ds = open(&DatasetSpec::parse("synthetic,nav=4x4,sig=16x16,dtype=uint16").unwrap()).unwrap();
/// assert_eq!(ds.geometry().nav.dims(), &[4, 4]);
/// ```
pub fn open(spec: &DatasetSpec) -> Result<Arc<dyn Dataset>> {
    let format = match &spec.format {
        Some(f) => f.to_ascii_lowercase(),
        None => detect(spec)?,
    };
    for key in spec.options.keys() {
        let k = KEYS.iter().find(|k| k.name == key).expect("keys are checked when set");
        if k.formats != "*" && !k.formats.split(", ").any(|f| f == format) {
            return Err(Error::Spec(format!(
                "key '{key}' does not apply to format '{format}' (it applies to: {})",
                k.formats
            )));
        }
    }
    // the opened dataset's spec names its format, so that it reopens without detection
    let spec = &DatasetSpec { format: Some(format.clone()), ..spec.clone() };
    let ds: Arc<dyn Dataset> = match format.as_str() {
        "raw" => Arc::new(formats::raw::RawDataset::open(spec)?),
        "npy" => Arc::new(formats::npy::NpyDataset::open(spec)?),
        "mib" => Arc::new(formats::mib::MibDataset::open(spec)?),
        "blo" => Arc::new(formats::blo::BloDataset::open(spec)?),
        "mrc" => Arc::new(formats::mrc::MrcDataset::open(spec)?),
        "ser" => Arc::new(formats::ser::SerDataset::open(spec)?),
        "hdf5" => Arc::new(formats::hdf5::Hdf5Dataset::open(spec)?),
        "empad" => Arc::new(formats::empad::EmpadDataset::open(spec)?),
        "app5" => Arc::new(formats::app5::App5Dataset::open(spec)?),
        "synthetic" => Arc::new(formats::synthetic::SyntheticDataset::open(spec)?),
        "memory" => {
            return Err(Error::Spec(
                "an in-memory dataset cannot be opened from a spec; register the array instead".into(),
            ));
        }
        other => {
            return Err(Error::Spec(format!(
                "unknown format '{other}' (known: raw, npy, mib, blo, mrc, ser, hdf5, app5, empad, synthetic)"
            )));
        }
    };
    Corrected::wrap(ds, spec)
}

/// Detects the format of a spec without `format=`: `.npy` by magic bytes, otherwise raw when the
/// shape keys are given.
fn detect(spec: &DatasetSpec) -> Result<String> {
    let Some(path) = &spec.path else { return Ok("synthetic".into()) };
    let lower = path.to_ascii_lowercase();
    if path.contains(['*', '?', '[']) && lower.ends_with(".mib") {
        return Ok("mib".into());
    }
    let mut magic = [0u8; 8];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        f.read(&mut magic).map_err(|e| Error::io(path, e))?
    };
    if n >= 6 && &magic[..6] == b"\x93NUMPY" {
        return Ok("npy".into());
    }
    if magic.starts_with(b"MQ1,") || lower.ends_with(".mib") {
        return Ok("mib".into());
    }
    if magic.starts_with(b"IMGBLO") || lower.ends_with(".blo") {
        return Ok("blo".into());
    }
    if n == 8 && &magic == b"\x89HDF\r\n\x1a\n" {
        return Ok(if lower.ends_with(".app5") { "app5" } else { "hdf5" }.into());
    }
    if lower.ends_with(".app5") {
        return Ok("app5".into());
    }
    if [".h5", ".hdf5", ".hdf", ".emd", ".nxs"].iter().any(|e| lower.ends_with(e)) {
        return Ok("hdf5".into());
    }
    if lower.ends_with(".xml") {
        let head = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if String::from_utf8_lossy(&head[..head.len().min(4096)]).contains("<raw_file") {
            return Ok("empad".into());
        }
        return Err(Error::format(path, "an .xml file that is not an EMPAD acquisition (no <raw_file>)"));
    }
    if lower.ends_with(".ser") {
        return Ok("ser".into());
    }
    if lower.ends_with(".mrc") {
        return Ok("mrc".into());
    }
    if lower.ends_with(".npy") {
        return Err(Error::format(path, "has the .npy extension but not the NumPy magic bytes"));
    }
    if spec.get("sig").is_some() && spec.get("dtype").is_some() {
        return Ok("raw".into());
    }
    Err(Error::format(
        path,
        "format not recognised; for a headerless raw file give format=raw with nav=, sig= and dtype=",
    ))
}

/// Reads a required option and parses it.
pub(crate) fn required<'a>(spec: &'a DatasetSpec, key: &str, format: &str) -> Result<&'a str> {
    spec.get(key).ok_or_else(|| Error::Spec(format!("format {format} needs '{key}='")))
}

/// Parses an integer option.
pub(crate) fn int_option(spec: &DatasetSpec, key: &str) -> Result<Option<i64>> {
    spec.get(key).map(|v| v.parse::<i64>().map_err(|_| Error::Spec(format!("{key}={v}: not an integer")))).transpose()
}
