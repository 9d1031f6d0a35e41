//! NumPy `.npy` files (format versions 1, 2 and 3, C order).
//!
//! The header is a Python dict literal: `{'descr': '<u2', 'fortran_order': False, 'shape': (16, 16, 32, 32), }`.
//! The last two axes are the frame (sig) shape, the others the scan (nav) shape; a 3-D array is a 1-D
//! scan. `nav=` reinterprets the scan shape.

use super::reinterpret_nav;
use crate::dataset::io::{FrameFiles, IoMode, decoded_dtype};
use crate::dataset::{BufferPool, ByteOrder, DType, Dataset, DatasetSpec, Geometry, int_option};
use crate::error::{Error, Result};
use crate::geometry::Shape;
use arrow::buffer::Buffer;
use std::io::Read;

/// The parsed header of an .npy file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: DType,
    /// Byte order of the elements.
    pub order: ByteOrder,
    /// Array shape.
    pub shape: Vec<usize>,
    /// Byte offset of the data.
    pub data_offset: u64,
    /// Format version (1, 2 or 3).
    pub version: u8,
}

impl NpyHeader {
    /// Reads and parses the header of `path`.
    pub fn read(path: &str) -> Result<Self> {
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut pre = [0u8; 12];
        let n = read_up_to(&mut f, &mut pre).map_err(|e| Error::io(path, e))?;
        if n < 10 || &pre[..6] != b"\x93NUMPY" {
            return Err(Error::format(path, "not a NumPy .npy file (magic bytes missing)"));
        }
        let version = pre[6];
        let (hlen, start) = match version {
            1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10usize),
            2 | 3 => {
                if n < 12 {
                    return Err(Error::format(path, "truncated .npy header"));
                }
                (u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize, 12usize)
            }
            v => return Err(Error::format(path, format!("unsupported .npy format version {v}"))),
        };
        let mut header = vec![0u8; hlen];
        let already = n.saturating_sub(start).min(hlen);
        header[..already].copy_from_slice(&pre[start..start + already]);
        f.read_exact(&mut header[already..])
            .map_err(|_| Error::format(path, format!("truncated .npy header (expected {hlen} bytes)")))?;
        let text = String::from_utf8_lossy(&header).into_owned();
        Self::parse_dict(&text, (start + hlen) as u64, version).map_err(|m| Error::format(path, m))
    }

    fn parse_dict(text: &str, data_offset: u64, version: u8) -> std::result::Result<Self, String> {
        let value_of = |key: &str| -> std::result::Result<&str, String> {
            let pat_sq = format!("'{key}'");
            let i = text.find(&pat_sq).ok_or_else(|| format!("npy header lacks '{key}': {text}"))?;
            let rest = &text[i + pat_sq.len()..];
            let rest = rest.trim_start().strip_prefix(':').ok_or("bad npy header")?.trim_start();
            Ok(rest)
        };
        let descr = value_of("descr")?;
        let descr = descr
            .strip_prefix('\'')
            .and_then(|d| d.split('\'').next())
            .ok_or_else(|| format!("npy descr is not a simple dtype: {descr}"))?;
        let (dtype, order) = DType::parse(descr).map_err(|e| format!("npy dtype: {e}"))?;
        let order = if dtype.size() == 1 { ByteOrder::NATIVE } else { order };
        let fortran = value_of("fortran_order")?;
        if fortran.starts_with("True") {
            return Err("the array is stored in Fortran order; Tessera reads C-order .npy files \
                        (save with np.ascontiguousarray)"
                .into());
        }
        let shape = value_of("shape")?;
        let shape = shape.strip_prefix('(').ok_or("npy shape is not a tuple")?;
        let shape = &shape[..shape.find(')').ok_or("npy shape is not a tuple")?];
        let dims: std::result::Result<Vec<usize>, String> = shape
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_end_matches('L').parse::<usize>().map_err(|_| format!("bad npy shape entry '{s}'")))
            .collect();
        Ok(NpyHeader { dtype, order, shape: dims?, data_offset, version })
    }
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

/// A 4D-STEM stack in an .npy file.
#[derive(Debug)]
pub struct NpyDataset {
    spec: DatasetSpec,
    geometry: Geometry,
    header: NpyHeader,
    file: FrameFiles,
}

impl NpyDataset {
    /// Opens an .npy file of 3 or more dimensions.
    pub fn open(spec: &DatasetSpec) -> Result<Self> {
        let path = spec.path.as_deref().ok_or_else(|| Error::Spec("format npy needs a path".into()))?;
        let header = NpyHeader::read(path)?;
        if header.shape.len() < 3 {
            return Err(Error::format(
                path,
                format!("array of shape {:?} is not a 4D-STEM stack (need nav axes + 2 sig axes)", header.shape),
            ));
        }
        let k = header.shape.len() - 2;
        let geometry = Geometry {
            nav: Shape::new(header.shape[..k].to_vec()),
            sig: Shape::new(header.shape[k..].to_vec()),
            dtype: decoded_dtype(header.dtype),
        };
        let file_geometry = geometry.clone();
        let geometry = reinterpret_nav(spec, geometry, path)?;
        let sync_offset = int_option(spec, "sync_offset")?.unwrap_or(0);
        let io = IoMode::parse(spec.get("io"))?;
        // the file must hold exactly the array its header announces; sync_offset then shifts frames
        let (offset, dtype, order) = (header.data_offset, header.dtype, header.order);
        let file = FrameFiles::open_whole(path, offset, dtype, order, &file_geometry, &geometry, sync_offset, io)?;
        Ok(NpyDataset { spec: spec.clone(), geometry, header, file })
    }
}

impl Dataset for NpyDataset {
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
            ("npy version".into(), self.header.version.to_string()),
            ("array shape".into(), format!("{:?}", self.header.shape)),
            ("stored dtype".into(), format!("{} ({:?} endian)", self.header.dtype, self.header.order)),
            ("data offset".into(), self.header.data_offset.to_string()),
            ("zero-copy mmap".into(), self.file.is_mapped().to_string()),
        ]
    }
}

/// Reads the whole array of an .npy file as f64 values (C order), whatever its element type.
pub fn read_npy_f64(path: &str, header: &NpyHeader) -> Result<Vec<f64>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let n: usize = header.shape.iter().product();
    let w = header.dtype.size();
    let start = header.data_offset as usize;
    let data = bytes.get(start..start + n * w).ok_or_else(|| {
        Error::format(
            path,
            format!("truncated: expected {} bytes of data, the file has {}", n * w, bytes.len().saturating_sub(start)),
        )
    })?;
    let mut out = Vec::with_capacity(n);
    for chunk in data.chunks_exact(w) {
        let mut b = [0u8; 8];
        b[..w].copy_from_slice(chunk);
        if header.order != ByteOrder::NATIVE {
            b[..w].reverse();
        }
        out.push(match header.dtype {
            DType::U8 => b[0] as f64,
            DType::I8 => b[0] as i8 as f64,
            DType::U16 => u16::from_ne_bytes([b[0], b[1]]) as f64,
            DType::I16 => i16::from_ne_bytes([b[0], b[1]]) as f64,
            DType::U32 => u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f64,
            DType::I32 => i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f64,
            DType::F32 => f32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f64,
            DType::U64 => u64::from_ne_bytes(b) as f64,
            DType::I64 => i64::from_ne_bytes(b) as f64,
            DType::F64 => f64::from_ne_bytes(b),
        });
    }
    Ok(out)
}

/// Writes an array as .npy (version 1, C order, little-endian) — used by tests and exporters.
pub fn write_npy(path: &std::path::Path, dtype: DType, shape: &[usize], data: &[u8]) -> Result<()> {
    let descr = match dtype.size() {
        1 => format!("|{}", short(dtype)),
        _ => format!("<{}", short(dtype)),
    };
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    std::fs::write(path, out).map_err(|e| Error::io(path.display(), e))
}

fn short(dtype: DType) -> &'static str {
    match dtype {
        DType::U8 => "u1",
        DType::U16 => "u2",
        DType::U32 => "u4",
        DType::U64 => "u8",
        DType::I8 => "i1",
        DType::I16 => "i2",
        DType::I32 => "i4",
        DType::I64 => "i8",
        DType::F32 => "f4",
        DType::F64 => "f8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_dict() {
        let h =
            NpyHeader::parse_dict("{'descr': '>u2', 'fortran_order': False, 'shape': (2, 3, 4, 5), }", 128, 1).unwrap();
        assert_eq!(h.shape, vec![2, 3, 4, 5]);
        assert_eq!((h.dtype, h.order), (DType::U16, ByteOrder::Big));
        let f = NpyHeader::parse_dict("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 128, 1);
        assert!(f.unwrap_err().contains("Fortran"));
    }
}
