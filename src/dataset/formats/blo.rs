//! NanoMegas ASTAR blockfiles (`.blo`): a header, a virtual bright-field image, then the frames, each
//! a 6-byte header (`0xAA 0x55` + u32 frame number) and `DP_SZ × DP_SZ` u8 pixels.
//!
//! Header (little-endian): `IMGBLO`, u16 magic, u32 offset of the VBF image, u32 offset of the frames,
//! u32, u16 `DP_SZ`, u16 rotation, u16 `NX`, u16 `NY`, u16 scan rotation, f64 `SX`, f64 `SY` (scan step,
//! nm), ... The scan is `(NY, NX)`.

use crate::dataset::{Axis, BufferPool, Calibration, DType, Dataset, DatasetSpec, Geometry, int_option};
use crate::error::{Error, Result};
use crate::geometry::Shape;
use arrow::buffer::Buffer;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// A blockfile.
#[derive(Debug)]
pub struct BloDataset {
    spec: DatasetSpec,
    geometry: Geometry,
    path: String,
    file: File,
    data_offset: u64,
    /// Frames in the file.
    frames: usize,
    sync_offset: i64,
    calibration: Calibration,
}

const FRAME_HEADER: usize = 6;

impl BloDataset {
    /// Opens a blockfile; checks that it holds every frame its header announces.
    pub fn open(spec: &DatasetSpec) -> Result<Self> {
        let path = spec.path.clone().ok_or_else(|| Error::Spec("format blo needs a path".into()))?;
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut h = [0u8; 64];
        if size < h.len() as u64 {
            return Err(Error::format(&path, format!("truncated: {size} bytes, less than the 64-byte header")));
        }
        file.read_exact_at(&mut h, 0).map_err(|e| Error::io(&path, e))?;
        if &h[..6] != b"IMGBLO" {
            return Err(Error::format(&path, "not a blockfile (magic 'IMGBLO' missing)"));
        }
        let u16_at = |o: usize| u16::from_le_bytes([h[o], h[o + 1]]) as usize;
        let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]) as u64;
        let f64_at = |o: usize| f64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
        let data_offset = u32_at(12);
        let (dp, nx, ny) = (u16_at(20), u16_at(24), u16_at(26));
        if dp == 0 || nx == 0 || ny == 0 {
            return Err(Error::format(&path, format!("blockfile header: bad geometry DP_SZ={dp}, NX={nx}, NY={ny}")));
        }
        let need = data_offset + ((FRAME_HEADER + dp * dp) * nx * ny) as u64;
        if size < need {
            return Err(Error::format(
                &path,
                format!("truncated: {nx}x{ny} frames of {dp}x{dp} need {need} bytes, the file has {size}"),
            ));
        }
        let geometry = Geometry { nav: Shape::new(vec![ny, nx]), sig: Shape::new(vec![dp, dp]), dtype: DType::U8 };
        let geometry = super::reinterpret_nav(spec, geometry, &path)?;
        // header: SX, SY (scan step, nm) at 30 and 38, SDP (diffraction pixels per nm⁻¹) at 50
        let (sx, sy, sdp) = (f64_at(30), f64_at(38), u16_at(50));
        let mut calibration =
            Calibration { nav: vec![Axis::new("y", sy, "nm"), Axis::new("x", sx, "nm")], ..Default::default() };
        if sdp > 0 {
            let k = 1.0 / sdp as f64;
            calibration.sig = vec![Axis::new("ky", k, "1/nm"), Axis::new("kx", k, "1/nm")];
        }
        Ok(BloDataset {
            spec: spec.clone(),
            geometry,
            path,
            file,
            data_offset,
            frames: nx * ny,
            sync_offset: int_option(spec, "sync_offset")?.unwrap_or(0),
            calibration,
        })
    }
}

impl Dataset for BloDataset {
    fn spec(&self) -> &DatasetSpec {
        &self.spec
    }
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer> {
        let px = self.geometry.frame_bytes();
        let stride = FRAME_HEADER + px;
        let mut scratch = Vec::new();
        pool.read_spans(runs, &[0, self.frames], self.sync_offset, px, |_, start, count, out| {
            scratch.resize(count * stride, 0);
            let at = self.data_offset + (start * stride) as u64;
            self.file.read_exact_at(&mut scratch, at).map_err(|e| Error::io(&self.path, e))?;
            for ((j, raw), dst) in scratch.chunks_exact(stride).enumerate().zip(out.chunks_exact_mut(px)) {
                if raw[..2] != [0xAA, 0x55] {
                    return Err(Error::format(
                        &self.path,
                        format!("frame {} has no 0xAA55 frame header: corrupted file?", start + j),
                    ));
                }
                dst.copy_from_slice(&raw[FRAME_HEADER..]);
            }
            Ok(())
        })
    }
    fn calibration(&self) -> Calibration {
        self.calibration.clone()
    }
    fn describe(&self) -> Vec<(String, String)> {
        self.calibration.describe()
    }
}
