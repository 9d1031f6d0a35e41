//! NanoMegas TopSpin `.app5` files (HDF5): one HDF5 dataset per frame.
//!
//! Layout: `<procedure guid>/<series guid>/<i>/Data` (height × width) for frames `i = 0, 1, ...` in
//! scan order, each with an XML `Metadata` string holding its `RequestedBeamPosition` (X, Y in metres).
//! The scan shape is the number of distinct Y positions × distinct X positions (as RosettaSciIO
//! reads it), or 1-D when those do not account for every frame; `nav=` overrides it. A file with
//! several series reads the one `ds_path=<procedure>/<series>` names, by default the largest.

use super::hdf5::{dtype_of, h5_error, open_file, read_into};
use crate::dataset::io::decoded_dtype;
use crate::dataset::{Axis, BufferPool, Calibration, DType, Dataset, DatasetSpec, Geometry, int_option};
use crate::error::{Error, Result};
use crate::geometry::Shape;
use arrow::buffer::Buffer;
use hdf5_reader::{Hdf5File, SliceInfo};

/// A TopSpin 4D-STEM series.
pub struct App5Dataset {
    spec: DatasetSpec,
    geometry: Geometry,
    path: String,
    series: String,
    frames: Vec<hdf5_reader::Dataset>,
    /// 0, 1, ..., n: every frame is its own HDF5 dataset.
    starts: Vec<usize>,
    sync_offset: i64,
    stored: DType,
    calibration: Calibration,
}

impl std::fmt::Debug for App5Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App5Dataset").field("path", &self.path).field("series", &self.series).finish()
    }
}

/// The requested beam position (X, Y) of a frame's metadata.
fn beam_position(xml: &str) -> Option<(f64, f64)> {
    let at = xml.find("RequestedBeamPosition")?;
    let (x, after) = super::xml_element(xml, "X", at)?;
    let (y, _) = super::xml_element(xml, "Y", after)?;
    Some((x.parse().ok()?, y.parse().ok()?))
}

/// The 4D-STEM series in a file: `<guid>/<guid>` groups whose members are numbered frame groups.
fn series(file: &Hdf5File, path: &str) -> Result<Vec<(String, usize)>> {
    let h5 = |e| h5_error(path, e);
    let mut out = Vec::new();
    for top in file.root_group().map_err(h5)?.groups().map_err(h5)? {
        for s in top.groups().map_err(h5)? {
            let (groups, _) = s.member_names().map_err(h5)?;
            let n = groups.iter().filter(|g| g.parse::<usize>().is_ok()).count();
            if n > 0 {
                out.push((format!("{}/{}", top.name(), s.name()), n));
            }
        }
    }
    Ok(out)
}

impl App5Dataset {
    /// Opens a TopSpin `.app5` file.
    pub fn open(spec: &DatasetSpec) -> Result<Self> {
        let path = spec.path.clone().ok_or_else(|| Error::Spec("format app5 needs a path".into()))?;
        let file = open_file(&path)?;
        let h5 = |e| h5_error(&path, e);
        let found = series(&file, &path)?;
        let name = match spec.get("ds_path") {
            Some(p) => {
                let p = p.trim_matches('/').to_string();
                if !found.iter().any(|(s, _)| *s == p) {
                    let list: Vec<&str> = found.iter().map(|(s, _)| s.as_str()).collect();
                    return Err(Error::format(&path, format!("no 4D-STEM series '{p}' (found: {})", list.join(", "))));
                }
                p
            }
            None => match found.iter().max_by_key(|(_, n)| *n) {
                Some((s, _)) => s.clone(),
                None => {
                    return Err(Error::format(&path, "no 4D-STEM series (<guid>/<guid>/<i>/Data) in this .app5 file"));
                }
            },
        };
        let group = file.group(&name).map_err(h5)?;
        let (groups, _) = group.member_names().map_err(h5)?;
        let mut index: Vec<usize> = groups.iter().filter_map(|g| g.parse().ok()).collect();
        index.sort_unstable();
        if index.iter().enumerate().any(|(i, &k)| i != k) {
            return Err(Error::format(
                &path,
                format!("series {name}: frame groups are not numbered 0..{}", index.len()),
            ));
        }
        let mut frames: Vec<hdf5_reader::Dataset> = Vec::with_capacity(index.len());
        let mut positions = Vec::with_capacity(index.len());
        for i in &index {
            let ds = file.dataset(&format!("{name}/{i}/Data")).map_err(h5)?;
            if ds.ndim() != 2 || (!frames.is_empty() && ds.shape() != frames[0].shape()) {
                return Err(Error::format(&path, format!("frame {i} has shape {:?}", ds.shape())));
            }
            positions.push(
                file.dataset(&format!("{name}/{i}/Metadata"))
                    .ok()
                    .and_then(|m| m.read_string().ok())
                    .and_then(|x| beam_position(&x)),
            );
            frames.push(ds);
        }
        let stored = dtype_of(&frames[0], &path)?;
        if let Some((i, _)) = frames.iter().enumerate().find(|(_, f)| dtype_of(f, &path).ok() != Some(stored)) {
            return Err(Error::format(&path, format!("frame {i} has another pixel type than frame 0 ({stored})")));
        }
        let n = frames.len();
        let distinct = |v: Vec<f64>| {
            let mut v = v;
            v.sort_by(f64::total_cmp);
            v.dedup();
            v
        };
        let (mut nav, mut calibration) = (Shape::new(vec![n]), Calibration::default());
        if let Some(p) = positions.iter().copied().collect::<Option<Vec<(f64, f64)>>>() {
            let xs = distinct(p.iter().map(|q| q.0).collect());
            let ys = distinct(p.iter().map(|q| q.1).collect());
            if xs.len() * ys.len() == n {
                nav = Shape::new(vec![ys.len(), xs.len()]);
                let d = |v: &[f64]| if v.len() > 1 { (v[v.len() - 1] - v[0]) / (v.len() - 1) as f64 } else { 0.0 };
                calibration.nav = vec![
                    Axis { name: "y".into(), scale: d(&ys) * 1e9, offset: ys[0] * 1e9, units: "nm".into() },
                    Axis { name: "x".into(), scale: d(&xs) * 1e9, offset: xs[0] * 1e9, units: "nm".into() },
                ];
            }
        }
        let sig = Shape::new(frames[0].shape().iter().map(|&d| d as usize).collect::<Vec<_>>());
        // detector calibration of frame 0: <Calibration><X|Y><Offset/><Scale/><Type><Text>Angle</Text>
        if let Some(xml) = file.dataset(&format!("{name}/0/Metadata")).ok().and_then(|m| m.read_string().ok()) {
            let axis = |tag: &str| -> Option<Axis> {
                let at = xml.find("<Calibration")?;
                let at = xml[at..].find(&format!("<{tag} "))? + at;
                let offset: f64 = super::xml_element(&xml, "Offset", at)?.0.parse().ok()?;
                let scale: f64 = super::xml_element(&xml, "Scale", at)?.0.parse().ok()?;
                let kind = super::xml_element(&xml, "Text", at).map(|t| t.0).unwrap_or_default();
                // angles are in radians; shown in mrad as microscopists use
                let (k, units) = if kind == "Angle" { (1e3, "mrad") } else { (1.0, "") };
                Some(Axis {
                    name: format!("k{}", tag.to_ascii_lowercase()),
                    scale: scale * k,
                    offset: offset * k,
                    units: units.into(),
                })
            };
            if let (Some(y), Some(x)) = (axis("Y"), axis("X")) {
                calibration.sig = vec![y, x];
            }
        }
        let geometry = Geometry { nav, sig, dtype: decoded_dtype(stored) };
        let geometry = super::reinterpret_nav(spec, geometry, &path)?;
        Ok(App5Dataset {
            spec: spec.clone(),
            geometry,
            path,
            series: name,
            frames,
            starts: (0..=n).collect(),
            sync_offset: int_option(spec, "sync_offset")?.unwrap_or(0),
            stored,
            calibration,
        })
    }
}

impl Dataset for App5Dataset {
    fn spec(&self) -> &DatasetSpec {
        &self.spec
    }
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer> {
        let fb = self.geometry.frame_bytes();
        pool.read_spans(runs, &self.starts, self.sync_offset, fb, |fi, _, _, dst| {
            read_into(&self.frames[fi], &SliceInfo::all(2), self.stored, self.geometry.dtype, dst, &self.path)
        })
    }
    fn calibration(&self) -> Calibration {
        self.calibration.clone()
    }
    fn describe(&self) -> Vec<(String, String)> {
        let mut out = vec![("series".into(), self.series.clone()), ("stored dtype".into(), self.stored.to_string())];
        out.extend(self.calibration.describe());
        out
    }
}
