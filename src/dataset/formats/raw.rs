//! Headerless raw files: frames back to back in C order, any pixel dtype and byte order.

use crate::dataset::io::{FrameFiles, IoMode, decoded_dtype, expand_paths};
use crate::dataset::{BufferPool, DType, Dataset, DatasetSpec, Geometry, int_option, required};
use crate::error::{Error, Result};
use crate::geometry::Shape;
use arrow::buffer::Buffer;

/// A raw file, or a series of raw files given as a glob whose frames are concatenated in sorted path
/// order: `format=raw,nav=..,sig=..,dtype=..[,offset=..][,sync_offset=..]` (the offset applies to each
/// file).
#[derive(Debug)]
pub struct RawDataset {
    spec: DatasetSpec,
    geometry: Geometry,
    file: FrameFiles,
    stored: (DType, crate::dataset::ByteOrder),
}

impl RawDataset {
    /// Opens a raw file (or series); the size must match nav × sig × dtype (+ offset).
    pub fn open(spec: &DatasetSpec) -> Result<Self> {
        let path = spec.path.as_deref().ok_or_else(|| Error::Spec("format raw needs a path".into()))?;
        let nav = Shape::parse(required(spec, "nav", "raw")?)?;
        let sig = Shape::parse(required(spec, "sig", "raw")?)?;
        let (stored, order) = DType::parse(required(spec, "dtype", "raw")?)?;
        let offset = int_option(spec, "offset")?.unwrap_or(0);
        if offset < 0 {
            return Err(Error::Spec(format!("offset={offset}: must be >= 0")));
        }
        let sync_offset = int_option(spec, "sync_offset")?.unwrap_or(0);
        let geometry = Geometry { nav, sig, dtype: decoded_dtype(stored) };
        let io = IoMode::parse(spec.get("io"))?;
        let file = FrameFiles::open(&expand_paths(path)?, offset as u64, stored, order, &geometry, sync_offset, io)?;
        Ok(RawDataset { spec: spec.clone(), geometry, file, stored: (stored, order) })
    }
}

impl Dataset for RawDataset {
    fn spec(&self) -> &DatasetSpec {
        &self.spec
    }
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer> {
        self.file.read(runs, pool)
    }
    fn maps_frames(&self) -> bool {
        self.file.maps_frames()
    }
    fn describe(&self) -> Vec<(String, String)> {
        vec![
            ("stored dtype".into(), format!("{} ({:?} endian)", self.stored.0, self.stored.1)),
            ("files".into(), self.file.n_files().to_string()),
            ("frames in files".into(), self.file.file_frames().to_string()),
            ("zero-copy mmap".into(), self.file.is_mapped().to_string()),
        ]
    }
}
