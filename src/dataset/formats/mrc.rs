//! MRC stacks, including Direct Electron 4D-STEM movies (`<name>_movie.mrc` with `<name>_info.txt`).
//!
//! A 1024-byte header (little-endian int32 `nx, ny, nz, mode`, ..., `nsymbt` at byte 92), an extended
//! header of `nsymbt` bytes, then `nz` frames of `ny` rows × `nx` columns. Modes: 0 int8, 1 int16,
//! 2 float32, 6 uint16. The scan shape comes from `nav=`, else from the Direct Electron info file
//! (`Scan - Size X/Y`), else it is the frame count.

use crate::dataset::io::{FrameFiles, IoMode, decoded_dtype};
use crate::dataset::{BufferPool, ByteOrder, DType, Dataset, DatasetSpec, Geometry, int_option};
use crate::error::{Error, Result};
use crate::geometry::Shape;
use arrow::buffer::Buffer;
use std::os::unix::fs::FileExt;

/// An MRC stack.
#[derive(Debug)]
pub struct MrcDataset {
    spec: DatasetSpec,
    geometry: Geometry,
    file: FrameFiles,
    mode: i32,
    info: Option<String>,
}

/// The scan shape from a Direct Electron info file, if there is one next to the movie.
fn de_scan_shape(path: &str) -> Option<(Shape, String)> {
    let info = path.strip_suffix("_movie.mrc").map(|p| format!("{p}_info.txt"))?;
    let text = std::fs::read_to_string(&info).ok()?;
    let value = |key: &str| -> Option<usize> {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().parse().ok()).flatten()
        })
    };
    Some((Shape::new(vec![value("Scan - Size Y")?, value("Scan - Size X")?]), info))
}

impl MrcDataset {
    /// Opens an MRC file.
    pub fn open(spec: &DatasetSpec) -> Result<Self> {
        let path = spec.path.clone().ok_or_else(|| Error::Spec("format mrc needs a path".into()))?;
        let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut h = [0u8; 1024];
        f.read_exact_at(&mut h, 0)
            .map_err(|_| Error::format(&path, "truncated: less than the 1024-byte MRC header"))?;
        let i32_at = |o: usize| i32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
        let (nx, ny, nz, mode, nsymbt) = (i32_at(0), i32_at(4), i32_at(8), i32_at(12), i32_at(92));
        if nx <= 0 || ny <= 0 || nz <= 0 || nsymbt < 0 {
            return Err(Error::format(&path, format!("MRC header: bad sizes nx={nx} ny={ny} nz={nz} nsymbt={nsymbt}")));
        }
        let stored = match mode {
            0 => DType::I8,
            1 => DType::I16,
            2 => DType::F32,
            6 => DType::U16,
            other => return Err(Error::Unsupported(format!("{path}: MRC mode {other} (read: 0, 1, 2, 6)"))),
        };
        let frames = nz as usize;
        let (nav, info) = match spec.get("nav") {
            Some(n) => (Shape::parse(n)?, None),
            None => match de_scan_shape(&path) {
                Some((s, info)) if s.size() == frames => (s, Some(info)),
                _ => (Shape::new(vec![frames]), None),
            },
        };
        let sync_offset = int_option(spec, "sync_offset")?.unwrap_or(0);
        if sync_offset == 0 && nav.size() != frames {
            return Err(Error::Shape(format!("{path}: nav={nav} has {} frames, the file {frames}", nav.size())));
        }
        let geometry = Geometry { nav, sig: Shape::new(vec![ny as usize, nx as usize]), dtype: decoded_dtype(stored) };
        let offset = 1024 + nsymbt as u64;
        let file_geometry = Geometry { nav: Shape::new(vec![frames]), ..geometry.clone() };
        // the file must hold exactly its nz frames; sync_offset then shifts them
        let (order, io) = (ByteOrder::Little, IoMode::parse(spec.get("io"))?);
        let file = FrameFiles::open_whole(&path, offset, stored, order, &file_geometry, &geometry, sync_offset, io)?;
        Ok(MrcDataset { spec: spec.clone(), geometry, file, mode, info })
    }
}

impl Dataset for MrcDataset {
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
        let mut d = vec![("MRC mode".into(), self.mode.to_string())];
        if let Some(info) = &self.info {
            d.push(("scan shape from".into(), info.clone()));
        }
        d
    }
}
