//! Quantum Detectors Merlin MIB files: frames with an ASCII header each.
//!
//! Each frame is `header_size` bytes of comma-separated ASCII (`MQ1,<seq>,<header size>,<chips>,
//! <width>,<height>,<U08|U16|U32|R64>,<layout>,...,MQ1A,<time>,<exposure>,<counter depth>,...`) followed
//! by the pixels: U08/U16/U32 big-endian as the Merlin software assembled them, or R64 (RAW): 1 bit per
//! pixel, each 64-pixel run of a row stored as 8 bytes in reversed byte order with the bits LSB first;
//! a RAW quad frame is one 1024-pixel-wide row per detector row, `[chip4 | chip3 | chip2 | chip1]`,
//! assembled to 512×512 with chip 1 top left, chip 2 top right, chips 3 and 4 bottom left and right
//! rotated by 180°. A file stores no scan shape: `nav` defaults to the frame count (1-D). A glob reads a
//! series of files in sorted order.

use crate::dataset::io::{IoMode, expand_paths, pixels_mut};
use crate::dataset::{BufferPool, DType, Dataset, DatasetSpec, Geometry, int_option};
use crate::error::{Error, Result};
use crate::geometry::Shape;
use arrow::buffer::Buffer;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

/// Pixel encoding of a MIB frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MibPixels {
    /// 8-bit.
    U08,
    /// 16-bit big-endian.
    U16,
    /// 32-bit big-endian.
    U32,
    /// RAW, 1 bit per pixel (counter depth 1).
    R64,
}

/// The header of a MIB frame.
#[derive(Clone, Debug, PartialEq)]
pub struct MibHeader {
    /// Bytes of the header.
    pub header_size: usize,
    /// Number of chips (1 or 4).
    pub chips: usize,
    /// Width and height as stored.
    pub width: usize,
    /// Rows as stored.
    pub height: usize,
    /// Pixel encoding.
    pub pixels: MibPixels,
    /// Chip layout (`1x1`, `2x2`).
    pub layout: String,
    /// Counter depth in bits.
    pub depth: usize,
}

impl MibHeader {
    /// Parses a frame header (the first `header_size` bytes of the frame).
    pub fn parse(bytes: &[u8], path: &str) -> Result<Self> {
        let bad = |m: String| Error::format(path, m);
        if !bytes.starts_with(b"MQ1,") {
            return Err(bad("not a Merlin MIB file (a frame does not start with 'MQ1,')".into()));
        }
        let text = String::from_utf8_lossy(bytes);
        let f: Vec<&str> = text.split(',').map(str::trim).collect();
        if f.len() < 8 {
            return Err(bad("MIB header too short".into()));
        }
        let num = |i: usize, what: &str| -> Result<usize> {
            f.get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(format!("MIB header: bad {what} '{}'", f.get(i).unwrap_or(&""))))
        };
        let pixels = match f[6] {
            "U08" => MibPixels::U08,
            "U16" => MibPixels::U16,
            "U32" => MibPixels::U32,
            "R64" => MibPixels::R64,
            other => return Err(bad(format!("MIB header: unknown pixel type '{other}'"))),
        };
        let depth =
            f.iter().position(|v| *v == "MQ1A").and_then(|i| f.get(i + 3)).and_then(|v| v.parse().ok()).unwrap_or(
                match pixels {
                    MibPixels::U08 => 8,
                    MibPixels::U16 => 12,
                    MibPixels::U32 => 24,
                    MibPixels::R64 => 1,
                },
            );
        let h = MibHeader {
            header_size: num(2, "header size")?,
            chips: num(3, "chip count")?,
            width: num(4, "width")?,
            height: num(5, "height")?,
            pixels,
            layout: f[7].to_string(),
            depth,
        };
        if h.width == 0 || h.height == 0 || h.header_size < 8 {
            return Err(bad(format!("MIB header: bad frame geometry {}x{}", h.width, h.height)));
        }
        if pixels == MibPixels::R64 {
            if depth != 1 {
                return Err(Error::Unsupported(format!(
                    "{path}: RAW (R64) MIB with counter depth {depth}; only 1-bit RAW is read"
                )));
            }
            if !h.width.is_multiple_of(64) {
                return Err(bad(format!("RAW MIB width {} is not a multiple of 64", h.width)));
            }
            if h.chips == 4 && (h.layout != "2x2" || h.width != 4 * h.height) {
                return Err(Error::Unsupported(format!(
                    "{path}: RAW quad layout '{}' {}x{}",
                    h.layout, h.width, h.height
                )));
            }
        }
        Ok(h)
    }

    /// Bytes of a frame's pixels on disk.
    pub fn data_bytes(&self) -> usize {
        let n = self.width * self.height;
        match self.pixels {
            MibPixels::U08 => n,
            MibPixels::U16 => 2 * n,
            MibPixels::U32 => 4 * n,
            MibPixels::R64 => n / 8,
        }
    }

    /// Bytes of a whole frame (header and pixels).
    pub fn frame_bytes(&self) -> usize {
        self.header_size + self.data_bytes()
    }

    /// The decoded frame shape and pixel type.
    pub fn sig_and_dtype(&self) -> (Shape, DType) {
        match self.pixels {
            MibPixels::U08 => (Shape::new(vec![self.height, self.width]), DType::U8),
            MibPixels::U16 => (Shape::new(vec![self.height, self.width]), DType::U16),
            MibPixels::U32 => (Shape::new(vec![self.height, self.width]), DType::U32),
            MibPixels::R64 if self.chips == 4 => (Shape::new(vec![2 * self.height, self.width / 2]), DType::U8),
            MibPixels::R64 => (Shape::new(vec![self.height, self.width]), DType::U8),
        }
    }

    /// Decodes one frame's pixels (`data`, without its header) into `out` (native bytes).
    fn decode(&self, data: &[u8], out: &mut [u8]) {
        match self.pixels {
            MibPixels::U08 => out.copy_from_slice(data),
            // big-endian on disk; typed loops so that the compiler vectorises the byte swap
            MibPixels::U16 => {
                for (o, d) in pixels_mut::<u16>(out).iter_mut().zip(data.chunks_exact(2)) {
                    *o = u16::from_be_bytes([d[0], d[1]]);
                }
            }
            MibPixels::U32 => {
                for (o, d) in pixels_mut::<u32>(out).iter_mut().zip(data.chunks_exact(4)) {
                    *o = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                }
            }
            MibPixels::R64 => {
                let (w, h) = (self.width, self.height);
                // unpack to (h, w): each 8-byte word reversed, bits LSB first
                let pixel = |r: usize, c: usize| -> u8 {
                    let word = (r * w + c) / 64;
                    let k = c % 64;
                    (data[word * 8 + 7 - k / 8] >> (k % 8)) & 1
                };
                if self.chips == 4 {
                    let n = h; // chip side
                    let side = 2 * n;
                    for r in 0..h {
                        for j in 0..n {
                            // raw row: [chip4 | chip3 | chip2 | chip1]
                            out[r * side + j] = pixel(r, 3 * n + j); // chip 1, top left
                            out[r * side + n + j] = pixel(r, 2 * n + j); // chip 2, top right
                            out[(side - 1 - r) * side + (n - 1 - j)] = pixel(r, n + j); // chip 3, bottom left, 180°
                            out[(side - 1 - r) * side + (side - 1 - j)] = pixel(r, j); // chip 4, bottom right, 180°
                        }
                    }
                } else {
                    for r in 0..h {
                        for c in 0..w {
                            out[r * w + c] = pixel(r, c);
                        }
                    }
                }
            }
        }
    }
}

/// One file of a series: frames are read with `pread` (straight into place for U08/U16/U32, through
/// a scratch buffer for RAW), or decoded from a memory map with `io=mmap`.
#[derive(Debug)]
struct MibFile {
    path: String,
    file: File,
    map: Option<memmap2::Mmap>,
}

/// A Merlin MIB file or series.
#[derive(Debug)]
pub struct MibDataset {
    spec: DatasetSpec,
    geometry: Geometry,
    header: MibHeader,
    files: Vec<MibFile>,
    /// First frame of each file, and the total at the end.
    starts: Vec<usize>,
    sync_offset: i64,
    /// Fields of the `.hdr` acquisition header, if there is one.
    hdr: Vec<(String, String)>,
}

impl MibDataset {
    /// Opens a MIB file (or a glob of them); checks that every file holds whole frames of the first
    /// frame's geometry.
    pub fn open(spec: &DatasetSpec) -> Result<Self> {
        let path = spec.path.as_deref().ok_or_else(|| Error::Spec("format mib needs a path".into()))?;
        let paths = expand_paths(path)?;
        let mut head = vec![0u8; 768];
        let first = &paths[0];
        let n = File::open(first).and_then(|mut f| f.read(&mut head)).map_err(|e| Error::io(first, e))?;
        if n == 0 {
            return Err(Error::format(first, "empty file (0 bytes)"));
        }
        let header = MibHeader::parse(&head[..n], first)?;
        if n < header.header_size {
            return Err(Error::format(
                first,
                format!("truncated: {n} bytes, less than one {}-byte header", header.header_size),
            ));
        }
        let frame = header.frame_bytes() as u64;
        let mut files = Vec::new();
        let io = IoMode::parse(spec.get("io"))?;
        let mut starts = vec![0];
        for p in &paths {
            let f = File::open(p).map_err(|e| Error::io(p, e))?;
            let size = f.metadata().map_err(|e| Error::io(p, e))?.len();
            if size == 0 || !size.is_multiple_of(frame) {
                return Err(Error::format(
                    p,
                    format!(
                        "{size} bytes are not a whole number of {frame}-byte frames ({} B header + {} B of {:?} pixels): truncated?",
                        header.header_size,
                        header.data_bytes(),
                        header.pixels
                    ),
                ));
            }
            let k = (size / frame) as usize;
            starts.push(starts.last().expect("non-empty") + k);
            // frames are read in place with pread by default (measured a little faster than decoding
            // from a map, and safe against files that shrink while read); io=mmap decodes from a map
            let map = match io {
                // SAFETY: the file's size was checked above; a file truncated by another process while
                // mapped raises SIGBUS (the reason pread is the default here).
                IoMode::Mmap => Some(unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io(p, e))?),
                _ => None,
            };
            files.push(MibFile { path: p.clone(), file: f, map });
        }
        let total = *starts.last().expect("non-empty");
        let sync_offset = int_option(spec, "sync_offset")?.unwrap_or(0);
        let hdr = read_hdr(first);
        let nav = match (spec.get("nav"), hdr_scan(&hdr)) {
            (Some(n), _) => Shape::parse(n)?,
            // the scan shape, where the acquisition software wrote it and it accounts for the frames
            (None, Some((y, x))) if y * x == total => Shape::new(vec![y, x]),
            _ => Shape::new(vec![total]),
        };
        if sync_offset == 0 && nav.size() != total {
            return Err(Error::Shape(format!(
                "{path}: nav={nav} has {} frames but the file(s) hold {total}",
                nav.size()
            )));
        }
        let (sig, dtype) = header.sig_and_dtype();
        Ok(MibDataset {
            spec: spec.clone(),
            geometry: Geometry { nav, sig, dtype },
            header,
            files,
            starts,
            sync_offset,
            hdr,
        })
    }
}

impl MibDataset {
    /// Reads frames `local..local + k` of `file` into `out` with one `pread` per frame and no
    /// intermediate buffer: frame `j`'s header lands in the last bytes of frame `j - 1`'s place,
    /// which is filled afterwards (frames go last to first), then its pixels are byte-swapped in
    /// place while still in cache.
    fn read_in_place(&self, file: &File, path: &str, local: usize, k: usize, out: &mut [u8]) -> Result<()> {
        let (hs, data) = (self.header.header_size, self.header.data_bytes());
        let fb = hs + data;
        let mut first_header = vec![0u8; hs];
        for j in (0..k).rev() {
            let at = ((local + j) * fb) as u64;
            let header: &[u8] = if j * data >= hs {
                let dst = &mut out[j * data - hs..(j + 1) * data];
                file.read_exact_at(dst, at).map_err(|e| Error::io(path, e))?;
                &out[j * data - hs..j * data]
            } else {
                // no room before the first frames: their headers go to a small buffer
                file.read_exact_at(&mut first_header, at).map_err(|e| Error::io(path, e))?;
                file.read_exact_at(&mut out[j * data..(j + 1) * data], at + hs as u64)
                    .map_err(|e| Error::io(path, e))?;
                &first_header
            };
            if !header.starts_with(b"MQ1,") {
                return Err(Error::format(path, format!("frame {} has no MIB header: corrupted file?", local + j)));
            }
            let frame = &mut out[j * data..(j + 1) * data];
            match self.header.pixels {
                MibPixels::U16 => pixels_mut::<u16>(frame).iter_mut().for_each(|v| *v = u16::from_be(*v)),
                MibPixels::U32 => pixels_mut::<u32>(frame).iter_mut().for_each(|v| *v = u32::from_be(*v)),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The acquisition header (`.hdr`) beside the first MIB file: the same name with `.hdr`, or without a
/// trailing `_<number>` (series files are numbered). `Key (units):\tvalue` lines; none if absent.
fn read_hdr(mib: &str) -> Vec<(String, String)> {
    let p = std::path::Path::new(mib);
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let base = stem.rsplit_once('_').filter(|(_, n)| n.bytes().all(|b| b.is_ascii_digit())).map(|(b, _)| b);
    let text = [Some(stem), base]
        .into_iter()
        .flatten()
        .find_map(|s| std::fs::read(p.with_file_name(format!("{s}.hdr"))).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty() && !k.starts_with("HDR"))
        .collect()
}

/// `ScanY × ScanX` from a header, if it has them.
fn hdr_scan(hdr: &[(String, String)]) -> Option<(usize, usize)> {
    let get = |key: &str| hdr.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.parse::<usize>().ok());
    Some((get("ScanY")?, get("ScanX")?)).filter(|&(y, x)| y > 0 && x > 0)
}

impl Dataset for MibDataset {
    fn spec(&self) -> &DatasetSpec {
        &self.spec
    }
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer> {
        let out_frame = self.geometry.frame_bytes();
        let fb = self.header.frame_bytes();
        let mut scratch = Vec::new();
        // pixels stored as decoded (U08/U16/U32): read each frame straight into its place
        let in_place = self.header.pixels != MibPixels::R64 && self.header.data_bytes() == out_frame;
        pool.read_spans(runs, &self.starts, self.sync_offset, out_frame, |fi, local, k, out| {
            let MibFile { path, file, map } = &self.files[fi];
            if map.is_none() && in_place {
                return self.read_in_place(file, path, local, k, out);
            }
            let frames = match map {
                Some(m) => &m[local * fb..(local + k) * fb],
                None => {
                    // one read for the run of frames, headers included
                    scratch.resize(k * fb, 0);
                    file.read_exact_at(&mut scratch, (local * fb) as u64).map_err(|e| Error::io(path, e))?;
                    &scratch[..]
                }
            };
            for ((j, raw), dst) in frames.chunks_exact(fb).enumerate().zip(out.chunks_exact_mut(out_frame)) {
                if !raw.starts_with(b"MQ1,") {
                    return Err(Error::format(path, format!("frame {} has no MIB header: corrupted file?", local + j)));
                }
                self.header.decode(&raw[self.header.header_size..], dst);
            }
            Ok(())
        })
    }
    fn describe(&self) -> Vec<(String, String)> {
        let h = &self.header;
        let mut out = vec![
            ("files".into(), self.files.len().to_string()),
            ("frames in files".into(), self.starts.last().expect("non-empty").to_string()),
            ("pixels".into(), format!("{:?}, counter depth {}", h.pixels, h.depth)),
            ("chips".into(), format!("{} ({})", h.chips, h.layout)),
            ("header".into(), format!("{} bytes per frame", h.header_size)),
        ];
        // the acquisition settings a user looks for first
        for key in [
            "Frames in Acquisition (Number)",
            "Frames per Trigger (Number)",
            "Counter Depth (number)",
            "ScanX",
            "ScanY",
            "Time and Date Stamp (day, mnth, yr, hr, min, s)",
            "Gain Mode",
            "Threshold 0 (keV)",
        ] {
            if let Some((k, v)) = self.hdr.iter().find(|(k, _)| k.as_str() == key) {
                out.push((format!(".hdr {k}"), v.clone()));
            }
        }
        out
    }
}
