//! EMPAD (Cornell/Thermo Fisher pixel array detector): an `.xml` acquisition file that names a `.raw`
//! file of little-endian float32 frames, 130 rows of 128 pixels each, of which the last 2 rows are
//! per-frame metadata (dropped: the frame is 128 × 128).
//!
//! The XML gives the scan: `<type>scan</type>` (or no type) with `<scan_parameters mode="acquire">`
//! holding `<scan_resolution_x>`/`<scan_resolution_y>`, or `<type>series</type>` with `<count>`. Some
//! files hold the frames of the `mode="search"` parameters instead; as LiberTEM does, the shape whose
//! size matches the .raw file is taken. Opening the `.raw` directly needs `nav=`.

use crate::dataset::{BufferPool, DType, Dataset, DatasetSpec, Geometry, int_option};
use crate::error::{Error, Result};
use crate::geometry::Shape;
use arrow::buffer::Buffer;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const ROWS: usize = 130;
const COLS: usize = 128;
const SIG_ROWS: usize = 128;
const RAW_FRAME: usize = ROWS * COLS * 4;

/// An EMPAD acquisition.
#[derive(Debug)]
pub struct EmpadDataset {
    spec: DatasetSpec,
    geometry: Geometry,
    raw: String,
    file: File,
    /// 0 and the number of frames in the .raw file.
    starts: [usize; 2],
    sync_offset: i64,
}

/// The scan shape of a `<scan_parameters mode="...">` block.
fn scan_shape(xml: &str, mode: &str) -> Option<Shape> {
    let at = xml.find(&format!("<scan_parameters mode=\"{mode}\""))?;
    let x = super::xml_element(xml, "scan_resolution_x", at)?.0.parse().ok()?;
    let y = super::xml_element(xml, "scan_resolution_y", at)?.0.parse().ok()?;
    Some(Shape::new(vec![y, x]))
}

/// The .raw file and the candidate scan shapes an EMPAD .xml names.
fn read_xml(path: &str) -> Result<(String, Vec<Shape>)> {
    let xml = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let at = xml.find("<raw_file").ok_or_else(|| Error::format(path, "no <raw_file filename=...> element"))?;
    let name = xml[at..]
        .split_once("filename=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(n, _)| n)
        .ok_or_else(|| Error::format(path, "<raw_file> has no filename attribute"))?;
    // the name may carry the acquisition machine's directory: the .raw lies next to the .xml
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let raw = Path::new(path).with_file_name(base).to_string_lossy().into_owned();
    let shapes = match super::xml_element(&xml, "type", 0).map(|t| t.0) {
        None | Some("scan") => ["acquire", "search"].iter().filter_map(|m| scan_shape(&xml, m)).collect(),
        Some("series") => {
            let n = super::xml_element(&xml, "count", 0).and_then(|t| t.0.parse().ok());
            n.map(|n: usize| vec![Shape::new(vec![n])]).unwrap_or_default()
        }
        Some(other) => return Err(Error::Unsupported(format!("{path}: EMPAD acquisition type '{other}'"))),
    };
    if shapes.is_empty() {
        return Err(Error::format(path, "no scan shape (scan_resolution_x/y or count) in the EMPAD .xml"));
    }
    Ok((raw, shapes))
}

impl EmpadDataset {
    /// Opens an EMPAD acquisition from its `.xml` (or its `.raw` with `nav=`).
    pub fn open(spec: &DatasetSpec) -> Result<Self> {
        let path = spec.path.clone().ok_or_else(|| Error::Spec("format empad needs a path".into()))?;
        let (raw, shapes) =
            if path.to_ascii_lowercase().ends_with(".xml") { read_xml(&path)? } else { (path.clone(), Vec::new()) };
        let file = File::open(&raw).map_err(|e| Error::io(&raw, e))?;
        let size = file.metadata().map_err(|e| Error::io(&raw, e))?.len() as usize;
        if size == 0 || !size.is_multiple_of(RAW_FRAME) {
            return Err(Error::format(
                &raw,
                format!(
                    "{size} bytes are not a whole number of {RAW_FRAME}-byte EMPAD frames (130 × 128 float32): truncated?"
                ),
            ));
        }
        let frames = size / RAW_FRAME;
        let from_xml = shapes.iter().find(|s| s.size() == frames).cloned();
        let nav = match (spec.get("nav"), from_xml) {
            (Some(n), _) => Shape::parse(n)?,
            (None, Some(s)) => s,
            (None, None) if shapes.is_empty() => {
                return Err(Error::Spec(format!("{raw}: an EMPAD .raw needs nav= (or open the .xml)")));
            }
            (None, None) => {
                return Err(Error::format(
                    &raw,
                    format!("holds {frames} frames; the .xml says {} (truncated?)", shapes[0]),
                ));
            }
        };
        let sync_offset = int_option(spec, "sync_offset")?.unwrap_or(0);
        if sync_offset == 0 && nav.size() != frames {
            return Err(Error::Shape(format!("{raw}: nav={nav} has {} frames, the file {frames}", nav.size())));
        }
        let geometry = Geometry { nav, sig: Shape::new(vec![SIG_ROWS, COLS]), dtype: DType::F32 };
        Ok(EmpadDataset { spec: spec.clone(), geometry, raw, file, starts: [0, frames], sync_offset })
    }
}

impl Dataset for EmpadDataset {
    fn spec(&self) -> &DatasetSpec {
        &self.spec
    }
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer> {
        let fb = self.geometry.frame_bytes();
        let mut scratch = Vec::new();
        pool.read_spans(runs, &self.starts, self.sync_offset, fb, |_, local, k, out| {
            // one read for the run, metadata rows included; then keep the pixel rows
            scratch.resize(k * RAW_FRAME, 0);
            self.file.read_exact_at(&mut scratch, (local * RAW_FRAME) as u64).map_err(|e| Error::io(&self.raw, e))?;
            for (frame, dst) in scratch.chunks_exact(RAW_FRAME).zip(out.chunks_exact_mut(fb)) {
                dst.copy_from_slice(&frame[..fb]);
                if cfg!(target_endian = "big") {
                    dst.chunks_exact_mut(4).for_each(|c| c.reverse());
                }
            }
            Ok(())
        })
    }
    fn describe(&self) -> Vec<(String, String)> {
        vec![
            ("raw file".into(), self.raw.clone()),
            ("frames in file".into(), self.starts[1].to_string()),
            ("stored frame".into(), "130 × 128 float32 (2 metadata rows dropped)".into()),
        ]
    }
}
