//! HDF5 files: any dataset of 3 or more dimensions (the last two are the frame), contiguous or chunked,
//! with the gzip, shuffle, LZ4 and bitshuffle+LZ4 (DECTRIS) filters.
//!
//! The dataset is `ds_path=` or found automatically:
//! - DECTRIS master files (ARINA, QUADRO, EIGER): `entry/data/data_000001`, `data_000002`, ... are
//!   external links to data files; their frames are concatenated in order.
//! - EMD 1.0 (py4DSTEM / emdfile): the largest `data` of a group with `emd_group_type = array`.
//! - Otherwise the largest dataset with at least 3 dimensions.
//!
//! Dimensions before the last two are the scan; `nav=` reinterprets them. The scan splits partitions
//! and batches at chunk boundaries ([`Dataset::frame_alignment`]) so that no chunk is decoded twice.
//!
//! # Why a pure-Rust reader
//! Tessera reads HDF5 with the pure-Rust `hdf5-reader` crate, not with bindings to the HDF Group's
//! C library: a fresh machine builds it with nothing installed (the C library needs either a system
//! package or CMake to build it from source, and the DECTRIS bitshuffle filter as a plugin besides).
//! Both were compared on the real files of `../shared/realdata` and on files written by
//! h5py/hdf5plugin (`scripts/make_hdf5.py`); see `benches/HDF5.md` for the numbers. The bitshuffle
//! filter is implemented in [`bitshuffle`].

pub mod bitshuffle;
mod chunks;

use crate::dataset::ByteOrder;
use crate::dataset::io::{FrameFiles, IoMode, as_bytes, decoded_dtype, pixels_mut, widen};
use crate::dataset::{Axis, BufferPool, Calibration, DType, Dataset, DatasetSpec, Geometry, int_option};
use crate::error::{Error, Result};
use crate::geometry::Shape;
use arrow::buffer::Buffer;
use hdf5_reader::messages::filter_pipeline::FilterDescription;
use hdf5_reader::messages::layout::DataLayout;
use hdf5_reader::{FilterRegistry, Hdf5File, OpenOptions, SliceInfo, SliceInfoElem};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One HDF5 dataset (or several concatenated, for DECTRIS data files) read as 4D-STEM frames.
pub struct Hdf5Dataset {
    spec: DatasetSpec,
    geometry: Geometry,
    path: String,
    /// What was read: the dataset path(s), as found.
    ds_path: String,
    parts: Vec<Part>,
    /// First frame of each part, then the total.
    starts: Vec<usize>,
    sync_offset: i64,
    stored: DType,
    alignment: usize,
    /// A contiguous dataset is read directly (mmap zero-copy or pread), like a raw file.
    direct: Option<FrameFiles>,
    /// Calibration found in the file.
    calibration: Calibration,
}

/// One HDF5 dataset holding a run of frames: `nav dims × sig`.
struct Part {
    ds: hdf5_reader::Dataset,
    nav: Vec<usize>,
    /// Direct chunk reads, where the chunks hold whole frames.
    chunks: Option<chunks::FrameChunks>,
}

impl std::fmt::Debug for Hdf5Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hdf5Dataset").field("path", &self.path).field("ds_path", &self.ds_path).finish()
    }
}

/// The filters Tessera reads: HDF5's own (gzip, shuffle, fletcher32, szip, nbit, scaleoffset), LZ4
/// and bitshuffle+LZ4.
fn registry() -> FilterRegistry {
    let mut filters = FilterRegistry::new();
    filters.register(
        bitshuffle::FILTER_BITSHUFFLE,
        Box::new(|desc, data, elem_size| {
            // client data: major, minor, element size, block size, compression (2 = LZ4)
            match desc.client_data.get(4) {
                Some(2) => bitshuffle::decode(data, elem_size).map_err(hdf5_reader::error::Error::FilterError),
                c => Err(hdf5_reader::error::Error::UnsupportedFilter(format!(
                    "bitshuffle with compression {} (only LZ4 = 2 is read)",
                    c.map_or("none".into(), |c| c.to_string())
                ))),
            }
        }),
    );
    filters
}

/// The file that holds dataset `name` of `file` (at `path`) and its path there: another file when
/// the last link of `name` is an external link (DECTRIS master → data files).
fn locate(file: &Hdf5File, path: &str, name: &str) -> Result<(String, Hdf5File, String)> {
    use hdf5_reader::messages::HdfMessage;
    use hdf5_reader::messages::link::LinkTarget;
    let name = name.trim_matches('/');
    let (parent, leaf) = name.rsplit_once('/').unwrap_or(("", name));
    let group = if parent.is_empty() { file.root_group() } else { file.group(parent) };
    if let Ok(group) = group
        && let Ok(header) = file.get_or_parse_header(group.address())
    {
        for m in &header.messages {
            if let HdfMessage::Link(l) = m
                && l.name == leaf
                && let LinkTarget::External { filename, path: target } = &l.target
            {
                let dir = Path::new(path).parent().map(Path::to_path_buf).unwrap_or_default();
                let other = dir.join(filename).to_string_lossy().into_owned();
                let f = open_file(&other)?;
                return Ok((other, f, target.clone()));
            }
        }
    }
    Ok((path.to_string(), file.clone(), name.to_string()))
}

/// Whether the object header at `ds`'s address in `file` describes `ds` (so that the layout read
/// from it is `ds`'s): false for a dataset reached through a link into another file.
fn header_is_own(file: &Hdf5File, ds: &hdf5_reader::Dataset) -> bool {
    use hdf5_reader::messages::HdfMessage;
    file.get_or_parse_header(ds.address())
        .is_ok_and(|h| h.messages.iter().any(|m| matches!(m, HdfMessage::Dataspace(d) if d.dims == ds.shape())))
}

/// Opens an HDF5 file with Tessera's filters (bitshuffle+LZ4 besides the built-in ones) and external
/// links resolved next to the file.
pub(crate) fn open_file(path: &str) -> Result<Hdf5File> {
    let filters = registry();
    let dir = Path::new(path).parent().map(Path::to_path_buf).unwrap_or_default();
    let options = OpenOptions::default()
        .with_filter_registry(filters)
        .with_external_link_resolver(Arc::new(LinkResolver { dir, opened: Default::default() }));
    let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if size == 0 {
        return Err(Error::format(path, "empty file"));
    }
    let file = Hdf5File::open_with_options(path, options).map_err(|e| h5_error(path, e))?;
    // as the HDF5 library does: a file shorter than its superblock's end-of-file address was cut short
    let sb = file.superblock();
    let eof = sb.base_address.saturating_add(sb.eof_address);
    if eof > size {
        return Err(Error::format(path, format!("truncated: {size} bytes, the HDF5 superblock says {eof}")));
    }
    Ok(file)
}

/// Opens the targets of external links (DECTRIS master → data files) next to the linking file, with
/// the same filters, once each.
struct LinkResolver {
    dir: PathBuf,
    opened: Mutex<HashMap<String, Hdf5File>>,
}

impl hdf5_reader::ExternalLinkResolver for LinkResolver {
    fn resolve_external_link(&self, filename: &str) -> Result<Option<Hdf5File>, hdf5_reader::error::Error> {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = opened.get(filename) {
            return Ok(Some(f.clone()));
        }
        let path = self.dir.join(filename);
        let path = path.to_string_lossy();
        if !Path::new(path.as_ref()).exists() {
            return Err(hdf5_reader::error::Error::InvalidData(format!("external link to {path}: no such file")));
        }
        let f = open_file(&path).map_err(|e| hdf5_reader::error::Error::InvalidData(e.to_string()))?;
        opened.insert(filename.to_string(), f.clone());
        Ok(Some(f))
    }
}

/// An hdf5-reader error as a format error naming the file.
pub(crate) fn h5_error(path: &str, e: hdf5_reader::error::Error) -> Error {
    Error::format(path, format!("HDF5: {e}"))
}

/// The pixel type of an HDF5 datatype.
pub(crate) fn dtype_of(ds: &hdf5_reader::Dataset, path: &str) -> Result<DType> {
    use hdf5_reader::Datatype as D;
    Ok(match ds.dtype() {
        D::FixedPoint { size: 1, signed: false, .. } => DType::U8,
        D::FixedPoint { size: 2, signed: false, .. } => DType::U16,
        D::FixedPoint { size: 4, signed: false, .. } => DType::U32,
        D::FixedPoint { size: 8, signed: false, .. } => DType::U64,
        D::FixedPoint { size: 1, signed: true, .. } => DType::I8,
        D::FixedPoint { size: 2, signed: true, .. } => DType::I16,
        D::FixedPoint { size: 4, signed: true, .. } => DType::I32,
        D::FixedPoint { size: 8, signed: true, .. } => DType::I64,
        D::FloatingPoint { size: 4, .. } => DType::F32,
        D::FloatingPoint { size: 8, .. } => DType::F64,
        other => {
            return Err(Error::Unsupported(format!("{path}: dataset '{}' has datatype {other:?}", ds.name())));
        }
    })
}

/// Reads the hyperslab `sel` of `ds` (stored as `stored`) into `dst`, decoded to `decoded`.
pub(crate) fn read_into(
    ds: &hdf5_reader::Dataset,
    sel: &SliceInfo,
    stored: DType,
    decoded: DType,
    dst: &mut [u8],
    path: &str,
) -> Result<()> {
    crate::with_pixel_type!(stored, T => {
        let a = ds.read_slice::<T>(sel).map_err(|e| h5_error(path, e))?;
        let src = a.as_slice().ok_or_else(|| Error::format(path, "HDF5 slice not in standard layout"))?;
        if src.len() * decoded.size() != dst.len() {
            return Err(Error::format(path, format!("HDF5 slice of {} elements, expected {}", src.len(), dst.len() / decoded.size())));
        }
        if stored == decoded {
            pixels_mut::<T>(dst).copy_from_slice(src);
        } else {
            widen(as_bytes(src), stored, dst, decoded)?;
        }
        Ok(())
    }, _ => Err(Error::Unsupported(format!("{path}: HDF5 pixel type {stored}"))))
}

/// A dataset found in a file: its path and shape.
struct Candidate {
    path: String,
    shape: Vec<u64>,
}

/// Walks `group` (depth-first, at most `depth` levels) and collects the datasets of ≥ 3 dimensions
/// whose path passes `keep`.
fn collect(
    group: &hdf5_reader::group::Group,
    prefix: &str,
    depth: usize,
    out: &mut Vec<Candidate>,
) -> Result<(), hdf5_reader::error::Error> {
    let (groups, datasets) = group.members()?;
    for d in datasets {
        if d.ndim() >= 3 {
            out.push(Candidate { path: format!("{prefix}{}", d.name()), shape: d.shape().to_vec() });
        }
    }
    if depth > 0 {
        for g in groups {
            collect(&g, &format!("{prefix}{}/", g.name()), depth - 1, out)?;
        }
    }
    Ok(())
}

fn string_attr(attrs: &[hdf5_reader::Attribute], name: &str) -> Option<String> {
    attrs.iter().find(|a| a.name == name).and_then(|a| a.read_string().ok())
}

/// The dataset paths to read when no `ds_path=` is given.
fn find_datasets(file: &Hdf5File, path: &str) -> Result<Vec<String>> {
    let h5 = |e| h5_error(path, e);
    let root = file.root_group().map_err(h5)?;
    // DECTRIS master file: entry/data/data_NNNNNN
    if let Ok(data) = file.group("entry/data") {
        let (_, names) = data.member_names().map_err(h5)?;
        let mut parts: Vec<String> = names
            .into_iter()
            .filter(|n| n.strip_prefix("data_").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())))
            .collect();
        if !parts.is_empty() {
            parts.sort();
            return Ok(parts.into_iter().map(|n| format!("entry/data/{n}")).collect());
        }
    }
    let mut all = Vec::new();
    collect(&root, "", 8, &mut all).map_err(h5)?;
    // EMD 1.0: prefer arrays of groups marked emd_group_type=array
    let emd = string_attr(&root.attributes().unwrap_or_default(), "emd_group_type").as_deref() == Some("file");
    if emd {
        let arrays: Vec<&Candidate> = all
            .iter()
            .filter(|c| c.path.ends_with("/data"))
            .filter(|c| {
                let group = &c.path[..c.path.len() - "/data".len()];
                file.group(group).ok().and_then(|g| string_attr(&g.attributes().unwrap_or_default(), "emd_group_type"))
                    == Some("array".into())
            })
            .collect();
        if let Some(best) = arrays.iter().max_by_key(|c| c.shape.iter().product::<u64>()) {
            return Ok(vec![best.path.clone()]);
        }
    }
    match all.iter().max_by_key(|c| (c.shape.len() >= 4, c.shape.iter().product::<u64>())) {
        Some(best) => Ok(vec![best.path.clone()]),
        None => Err(Error::format(
            path,
            "no dataset with 3 or more dimensions (frames × height × width) found; name one with ds_path=",
        )),
    }
}

/// Calibration of an EMD 1.0 array (`dimN` datasets beside `data`, with `name` and `units`
/// attributes and the coordinates of the first pixels), split into scan and detector axes; or of a
/// DECTRIS detector (`entry/instrument/detector`: pixel size, detector distance, beam centre).
fn file_calibration(file: &Hdf5File, ds_path: &str, ndim: usize) -> Calibration {
    let mut cal = Calibration::default();
    if let Some(group) = ds_path.strip_suffix("/data") {
        let mut axes = Vec::new();
        for i in 0..ndim {
            let Ok(dim) = file.dataset(&format!("{group}/dim{i}")) else { break };
            let attrs = dim.attributes();
            let name = string_attr(&attrs, "name").unwrap_or_default();
            let units = string_attr(&attrs, "units").unwrap_or_default();
            let v = dim.read_array::<f64>().ok().map(|a| a.iter().copied().collect::<Vec<f64>>()).unwrap_or_default();
            let (offset, scale) = match v[..] {
                [a, b, ..] => (a, b - a),
                [a] => (a, 1.0),
                [] => (0.0, 1.0),
            };
            axes.push(Axis { name, scale, offset, units });
        }
        if axes.len() == ndim && ndim >= 3 {
            cal.sig = axes.split_off(ndim - 2);
            cal.nav = axes;
        }
    }
    let detector = "entry/instrument/detector";
    let value = |name: &str| -> Option<(f64, String)> {
        let d = file.dataset(&format!("{detector}/{name}")).ok()?;
        let v = d.read_array::<f64>().ok()?.iter().next().copied()?;
        Some((v, string_attr(&d.attributes(), "units").unwrap_or_default()))
    };
    if let (Some((py, uy)), Some((px, ux))) = (value("y_pixel_size"), value("x_pixel_size")) {
        cal.sig = vec![Axis::new("y", py, &uy), Axis::new("x", px, &ux)];
    }
    for (key, label) in [
        ("detector_distance", "detector distance"),
        ("beam_center_x", "beam centre x"),
        ("beam_center_y", "beam centre y"),
        ("count_time", "count time"),
    ] {
        if let Some((v, u)) = value(key) {
            cal.extra.push((label.into(), format!("{v} {u}").trim().to_string()));
        }
    }
    if let Ok(d) = file.dataset("entry/instrument/beam/incident_wavelength")
        && let Some(v) = d.read_array::<f64>().ok().and_then(|a| a.iter().next().copied())
    {
        let u = string_attr(&d.attributes(), "units").unwrap_or_default();
        cal.extra.push(("incident wavelength".into(), format!("{v} {u}").trim().to_string()));
    }
    cal
}

impl Hdf5Dataset {
    /// Opens an HDF5 file; `ds_path=` names the dataset (or a DECTRIS `entry/data` group).
    pub fn open(spec: &DatasetSpec) -> Result<Self> {
        let path = spec.path.clone().ok_or_else(|| Error::Spec("format hdf5 needs a path".into()))?;
        let file = open_file(&path)?;
        let names = match spec.get("ds_path") {
            Some(p) => match file.dataset(p) {
                Ok(_) => vec![p.to_string()],
                Err(_) => {
                    let found = find_datasets(&file, &path).unwrap_or_default();
                    return Err(Error::format(
                        &path,
                        format!(
                            "no dataset '{p}' in the file (found: {})",
                            if found.is_empty() { "none".into() } else { found.join(", ") }
                        ),
                    ));
                }
            },
            None => find_datasets(&file, &path)?,
        };
        let mut parts = Vec::new();
        let mut starts = vec![0];
        let mut first: Option<(DType, Vec<u64>)> = None;
        let registry = Arc::new(registry());
        for name in &names {
            let (part_path, part_file, inner) = locate(&file, &path, name)?;
            let ds = part_file.dataset(&inner).map_err(|e| h5_error(&part_path, e))?;
            let shape = ds.shape().to_vec();
            if shape.len() < 3 {
                return Err(Error::Shape(format!(
                    "{path}: dataset '{name}' has shape {shape:?}; frames need 3 or more dimensions"
                )));
            }
            let dtype = dtype_of(&ds, &path)?;
            let sig = shape[shape.len() - 2..].to_vec();
            match &first {
                None => first = Some((dtype, sig)),
                Some((t, s)) if *t != dtype || *s != sig => {
                    return Err(Error::format(
                        &path,
                        format!("dataset '{name}' is {dtype} {sig:?}, the first one {t} {s:?}"),
                    ));
                }
                Some(_) => {}
            }
            let nav: Vec<usize> = shape[..shape.len() - 2].iter().map(|&d| d as usize).collect();
            starts.push(starts.last().expect("non-empty") + nav.iter().product::<usize>());
            let chunks = match raw_layout(&part_file, &ds) {
                Some((layout, filters)) => {
                    let (order, decoded) = (byte_order(&ds), decoded_dtype(dtype));
                    let registry = registry.clone();
                    chunks::FrameChunks::new(
                        &part_file, &ds, &part_path, layout, filters, registry, dtype, order, decoded,
                    )?
                }
                None => None,
            };
            parts.push(Part { ds, nav, chunks });
        }
        let (stored, sig) = first.expect("at least one dataset");
        let total = *starts.last().expect("non-empty");
        let nav = if parts.len() == 1 { Shape::new(parts[0].nav.clone()) } else { Shape::new(vec![total]) };
        let sync_offset = int_option(spec, "sync_offset")?.unwrap_or(0);
        let mut geometry = Geometry {
            nav,
            sig: Shape::new(sig.iter().map(|&d| d as usize).collect::<Vec<_>>()),
            dtype: decoded_dtype(stored),
        };
        geometry = super::reinterpret_nav(spec, geometry, &path)?;
        let alignment = alignment(&parts[0]);
        let io = IoMode::parse(spec.get("io"))?;
        let direct = match (&parts[..], contiguous(&file, &parts[0].ds)) {
            ([one], Some((offset, order))) => Some(FrameFiles::open_region(
                &path,
                offset,
                one.nav.iter().product(),
                stored,
                order,
                &geometry,
                sync_offset,
                io,
            )?),
            _ if io == IoMode::Mmap => {
                return Err(Error::Spec(format!("{path}: io=mmap needs a contiguous HDF5 dataset")));
            }
            _ => None,
        };
        let ndim = parts[0].nav.len() + 2;
        let calibration = file_calibration(&file, &names[0], ndim);
        Ok(Hdf5Dataset {
            spec: spec.clone(),
            geometry,
            path,
            ds_path: if names.len() == 1 {
                names[0].clone()
            } else {
                format!("{} … {}", names[0], names[names.len() - 1])
            },
            parts,
            starts,
            sync_offset,
            stored,
            alignment,
            direct,
            calibration,
        })
    }
}

/// The storage layout and filter pipeline of `ds` as its object header in `file` states them;
/// `None` when that header is not `ds`'s own (a dataset behind a link into another file) or the
/// pixels lie in external raw files.
fn raw_layout(file: &Hdf5File, ds: &hdf5_reader::Dataset) -> Option<(DataLayout, Vec<FilterDescription>)> {
    use hdf5_reader::messages::HdfMessage;
    if !header_is_own(file, ds) {
        return None;
    }
    let header = file.get_or_parse_header(ds.address()).ok()?;
    let (mut layout, mut filters) = (None, Vec::new());
    for m in &header.messages {
        match m {
            HdfMessage::DataLayout(l) => layout = Some(l.layout.clone()),
            HdfMessage::FilterPipeline(p) => filters = p.filters.clone(),
            HdfMessage::ExternalFiles(_) => return None,
            _ => {}
        }
    }
    Some((layout?, filters))
}

/// Where a contiguous dataset's pixels start in the file, and their byte order; `None` when the
/// dataset is chunked, compact, external or not yet written.
fn contiguous(file: &Hdf5File, ds: &hdf5_reader::Dataset) -> Option<(u64, ByteOrder)> {
    match raw_layout(file, ds)?.0 {
        DataLayout::Contiguous { address, .. } if address != u64::MAX => {
            Some((file.superblock().base_address + address, byte_order(ds)))
        }
        _ => None,
    }
}

/// The byte order of a dataset's numbers.
fn byte_order(ds: &hdf5_reader::Dataset) -> ByteOrder {
    match ds.dtype() {
        hdf5_reader::Datatype::FixedPoint { byte_order: hdf5_reader::ByteOrder::BigEndian, .. }
        | hdf5_reader::Datatype::FloatingPoint { byte_order: hdf5_reader::ByteOrder::BigEndian, .. } => ByteOrder::Big,
        _ => ByteOrder::Little,
    }
}

/// Frames per chunk in scan order: the chunk's extent along the last scan dimension, times the
/// extents of the dimensions before it while the chunk spans whole rows.
fn alignment(part: &Part) -> usize {
    let Some(chunks) = part.ds.chunks() else { return 1 };
    let mut a = 1;
    for (d, &n) in part.nav.iter().enumerate().rev() {
        let c = chunks[d] as usize;
        a *= c.max(1);
        if c < n {
            break;
        }
    }
    a
}

impl Dataset for Hdf5Dataset {
    fn spec(&self) -> &DatasetSpec {
        &self.spec
    }
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    fn frame_alignment(&self) -> usize {
        self.alignment
    }
    fn calibration(&self) -> Calibration {
        self.calibration.clone()
    }
    fn maps_frames(&self) -> bool {
        self.direct.as_ref().is_some_and(FrameFiles::maps_frames)
    }
    fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer> {
        if let Some(direct) = &self.direct {
            return direct.read(runs, pool);
        }
        let fb = self.geometry.frame_bytes();
        let mut scratch = chunks::Scratch::default();
        pool.read_spans(runs, &self.starts, self.sync_offset, fb, |pi, local, k, out| {
            let part = &self.parts[pi];
            if let Some(c) = &part.chunks {
                return c.read(local, k, out, &mut scratch);
            }
            // cut the run into pieces along the last scan dimension: each one hyperslab
            let last = *part.nav.last().expect("3+ dimensions");
            let (mut f, mut done) = (local, 0);
            while done < k {
                let x = f % last;
                let m = (last - x).min(k - done);
                let mut sel = Vec::with_capacity(part.nav.len() + 2);
                let mut rest = f / last;
                for &d in part.nav[..part.nav.len() - 1].iter().rev() {
                    sel.push(SliceInfoElem::Index((rest % d) as u64));
                    rest /= d;
                }
                sel.reverse();
                sel.push(SliceInfoElem::Slice { start: x as u64, end: (x + m) as u64, step: 1 });
                for &s in self.geometry.sig.dims() {
                    sel.push(SliceInfoElem::Slice { start: 0, end: s as u64, step: 1 });
                }
                let dst = &mut out[done * fb..(done + m) * fb];
                read_into(&part.ds, &SliceInfo { selections: sel }, self.stored, self.geometry.dtype, dst, &self.path)?;
                f += m;
                done += m;
            }
            Ok(())
        })
    }

    fn describe(&self) -> Vec<(String, String)> {
        let ds = &self.parts[0].ds;
        let mut out = vec![
            ("ds_path".into(), self.ds_path.clone()),
            ("datasets".into(), self.parts.len().to_string()),
            ("stored dtype".into(), self.stored.to_string()),
            ("chunks".into(), ds.chunks().map_or("contiguous".into(), |c| format!("{c:?}"))),
            (
                "read".into(),
                if self.direct.is_some() {
                    "directly, like a raw file"
                } else if self.parts.iter().all(|p| p.chunks.is_some()) {
                    "chunk by chunk (chunks of whole frames)"
                } else {
                    "by hyperslab (chunks cut frames)"
                }
                .into(),
            ),
        ];
        out.extend(self.calibration.describe());
        out
    }
}
