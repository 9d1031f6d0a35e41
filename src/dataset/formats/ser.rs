//! FEI / Thermo Fisher TIA series files (`.ser`, with an `.emi` beside them): 2-D data elements.
//!
//! Header (little-endian): u16 byte order `0x4949`, u16 series id `0x0197`, u16 version (`0x0210`: 32-bit
//! offsets, `0x0220`: 64-bit), u32 data type id (`0x4122` = 2-D elements), u32 tag type, u32 total and
//! u32 valid number of elements, the offset of the offset array, u32 number of dimensions, then the
//! dimension records (u32 size, ...). Each element at its offset: f64, f64, i32 calibration for x and
//! for y, u16 data type (1 u8, 2 u16, 3 u32, 4 i8, 5 i16, 6 i32, 7 f32, 8 f64), u32 width, u32 height,
//! then the pixels, rows as stored (file order: TIA viewers flip them for display).

use crate::dataset::io::{decode_pixels, decoded_dtype};
use crate::dataset::{Axis, BufferPool, ByteOrder, Calibration, DType, Dataset, DatasetSpec, Geometry, int_option};
use crate::error::{Error, Result};
use crate::geometry::Shape;
use arrow::buffer::Buffer;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// A TIA series of 2-D frames.
#[derive(Debug)]
pub struct SerDataset {
    spec: DatasetSpec,
    geometry: Geometry,
    path: String,
    file: File,
    /// Offset of each frame's pixels.
    offsets: Vec<u64>,
    stored: DType,
    version: u16,
    calibration: Calibration,
    sync_offset: i64,
}

const ELEMENT_HEADER: u64 = 50;

fn read_at(file: &File, path: &str, at: u64, len: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; len];
    file.read_exact_at(&mut b, at)
        .map_err(|_| Error::format(path, format!("truncated: cannot read {len} bytes at {at}")))?;
    Ok(b)
}

impl SerDataset {
    /// Opens a .ser file of 2-D elements.
    pub fn open(spec: &DatasetSpec) -> Result<Self> {
        let path = spec.path.clone().ok_or_else(|| Error::Spec("format ser needs a path".into()))?;
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let h = read_at(&file, &path, 0, 34)?;
        let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        if u16_at(&h, 0) != 0x4949 || u16_at(&h, 2) != 0x0197 {
            return Err(Error::format(&path, "not a TIA .ser file (byte order / series id mismatch)"));
        }
        let version = u16_at(&h, 4);
        if u32_at(&h, 6) != 0x4122 {
            return Err(Error::Unsupported(format!(
                "{path}: TIA series of 1-D elements (data type 0x{:x})",
                u32_at(&h, 6)
            )));
        }
        let valid = u32_at(&h, 18) as usize;
        let (offset_array, dims_at, wide) = match version {
            0x0210 => (u32_at(&h, 22) as u64, 26, false),
            0x0220 => (u64::from_le_bytes(h[22..30].try_into().expect("8 bytes")), 30, true),
            v => return Err(Error::Unsupported(format!("{path}: TIA .ser version 0x{v:x}"))),
        };
        if valid == 0 {
            return Err(Error::format(&path, "the series holds no element"));
        }
        let ndims = u32_at(&h, dims_at) as usize;
        let width = if wide { 8 } else { 4 };
        let raw = read_at(&file, &path, offset_array, valid * width)?;
        let offsets: Vec<u64> = raw
            .chunks_exact(width)
            .map(|c| if wide { u64::from_le_bytes(c.try_into().expect("8")) } else { u32_at(c, 0) as u64 })
            .collect();
        let e = read_at(&file, &path, offsets[0], ELEMENT_HEADER as usize)?;
        let stored = match u16_at(&e, 40) {
            1 => DType::U8,
            2 => DType::U16,
            3 => DType::U32,
            4 => DType::I8,
            5 => DType::I16,
            6 => DType::I32,
            7 => DType::F32,
            8 => DType::F64,
            t => return Err(Error::Unsupported(format!("{path}: TIA data type {t}"))),
        };
        let (w, hgt) = (u32_at(&e, 42) as usize, u32_at(&e, 46) as usize);
        let frame_bytes = (w * hgt * stored.size()) as u64;
        for (i, &o) in offsets.iter().enumerate() {
            if o + ELEMENT_HEADER + frame_bytes > size {
                return Err(Error::format(
                    &path,
                    format!("truncated: element {i} at {o} runs past the end ({size} bytes)"),
                ));
            }
        }
        // the tags (acquisition time, stage position) follow the elements: a file cut short loses them
        let total = u32_at(&h, 14) as usize;
        let tag_size = match u32_at(&h, 10) {
            0x4152 => 6,
            0x4142 => 22,
            _ => 0,
        };
        if tag_size > 0 {
            let raw = read_at(&file, &path, offset_array + (total * width) as u64, valid * width)?;
            for (i, c) in raw.chunks_exact(width).enumerate() {
                let o = if wide { u64::from_le_bytes(c.try_into().expect("8")) } else { u32_at(c, 0) as u64 };
                if o + tag_size > size {
                    return Err(Error::format(
                        &path,
                        format!("truncated: the tag of element {i} at {o} runs past the end ({size} bytes)"),
                    ));
                }
            }
        }
        // nav: the dimension sizes (first dimension fastest), if they account for every element
        let mut dims = Vec::new();
        let mut nav_axes = Vec::new();
        let mut at = dims_at as u64 + 4;
        let f64_at = |b: &[u8], o: usize| f64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        for _ in 0..ndims {
            // size, calibration offset, delta, element, description, units
            let d = read_at(&file, &path, at, 32)?;
            dims.push(u32_at(&d, 0) as usize);
            let desc = u32_at(&d, 24) as u64;
            let name = String::from_utf8_lossy(&read_at(&file, &path, at + 28, desc as usize)?).trim().to_string();
            let units = u32_at(&read_at(&file, &path, at + 28 + desc, 4)?, 0) as u64;
            let unit =
                String::from_utf8_lossy(&read_at(&file, &path, at + 32 + desc, units as usize)?).trim().to_string();
            nav_axes.push(Axis { name, scale: f64_at(&d, 12), offset: f64_at(&d, 4), units: unit });
            at += 28 + desc + 4 + units;
        }
        dims.reverse();
        nav_axes.reverse();
        // the element's own calibration: x then y (TIA does not store its units; metres for images)
        let mut calibration = Calibration { nav: nav_axes, ..Default::default() };
        calibration.sig = vec![
            Axis { name: "y".into(), scale: f64_at(&e, 28), offset: f64_at(&e, 20), units: String::new() },
            Axis { name: "x".into(), scale: f64_at(&e, 8), offset: f64_at(&e, 0), units: String::new() },
        ];
        let nav = if dims.iter().product::<usize>() == valid {
            Shape::new(dims)
        } else {
            calibration.nav.clear();
            Shape::new(vec![valid])
        };
        if spec.get("nav").is_some() {
            calibration.nav.clear();
        }
        let geometry = Geometry { nav, sig: Shape::new(vec![hgt, w]), dtype: decoded_dtype(stored) };
        let geometry = super::reinterpret_nav(spec, geometry, &path)?;
        let offsets = offsets.iter().map(|o| o + ELEMENT_HEADER).collect();
        let sync_offset = int_option(spec, "sync_offset")?.unwrap_or(0);
        Ok(SerDataset { spec: spec.clone(), geometry, path, file, offsets, stored, version, calibration, sync_offset })
    }
}

impl Dataset for SerDataset {
    fn spec(&self) -> &DatasetSpec {
        &self.spec
    }
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer> {
        let px = self.geometry.sig.size();
        let (sb, db) = (self.stored.size(), self.geometry.dtype.size());
        let mut raw = vec![0u8; px * sb];
        let starts = [0, self.offsets.len()];
        pool.read_spans(runs, &starts, self.sync_offset, px * db, |_, first, count, out| {
            for (f, dst) in (first..first + count).zip(out.chunks_exact_mut(px * db)) {
                self.file.read_exact_at(&mut raw, self.offsets[f]).map_err(|e| Error::io(&self.path, e))?;
                decode_pixels(&raw, self.stored, ByteOrder::Little, dst, self.geometry.dtype)?;
            }
            Ok(())
        })
    }
    fn calibration(&self) -> Calibration {
        self.calibration.clone()
    }
    fn describe(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("TIA version".into(), format!("0x{:x}", self.version)),
            ("stored dtype".into(), self.stored.to_string()),
        ];
        out.extend(self.calibration.describe());
        out
    }
}
