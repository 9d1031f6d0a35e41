//! Detector corrections applied in the scan, so that every UDF sees corrected frames:
//! `frame' = (frame - dark) · gain`, then each excluded (hot or dead) pixel replaced by the mean of its
//! valid neighbours (the 8 around it that are not excluded; 0 if there are none). Corrected frames are
//! float32.
//!
//! Keys (any format): `dark=<.npy of the frame shape>`, `gain=<.npy>`, `excluded=<y:x;y:x;...>` or
//! `excluded=<.npy mask of the frame shape, non-zero = excluded>`.

use super::formats::npy::{NpyHeader, read_npy_f64};
use super::io::pixels_mut;
use super::{BufferPool, DType, Dataset, DatasetSpec, Geometry, Pixel};
use crate::error::{Error, Result};
use crate::with_pixel_type;
use arrow::buffer::Buffer;
use std::sync::Arc;

/// A dataset with corrections applied.
#[derive(Debug)]
pub struct Corrected {
    inner: Arc<dyn Dataset>,
    geometry: Geometry,
    dark: Option<Vec<f32>>,
    gain: Option<Vec<f32>>,
    /// Excluded pixels and their valid neighbours.
    excluded: Vec<(usize, Vec<usize>)>,
}

/// Reads a correction image that must have the frame shape.
fn frame_image(key: &str, path: &str, g: &Geometry) -> Result<Vec<f32>> {
    let h = NpyHeader::read(path)?;
    let frame = &h.shape[h.shape.len().saturating_sub(2)..];
    if h.shape.len() != 2 || frame != g.sig.dims() {
        return Err(Error::Shape(format!("{key}={path} has shape {:?}, the frames are {}", h.shape, g.sig)));
    }
    Ok(read_npy_f64(path, &h)?.into_iter().map(|v| v as f32).collect())
}

impl Corrected {
    /// Wraps `inner` if the spec asks for corrections; returns it unchanged otherwise.
    pub fn wrap(inner: Arc<dyn Dataset>, spec: &DatasetSpec) -> Result<Arc<dyn Dataset>> {
        let (dark, gain, excluded) = (spec.get("dark"), spec.get("gain"), spec.get("excluded"));
        if dark.is_none() && gain.is_none() && excluded.is_none() {
            return Ok(inner);
        }
        let g = inner.geometry().clone();
        if g.sig.ndim() != 2 {
            return Err(Error::Spec(format!("corrections need 2-D frames, not {}", g.sig)));
        }
        let (sy, sx) = (g.sig.dims()[0], g.sig.dims()[1]);
        let dark = dark.map(|p| frame_image("dark", p, &g)).transpose()?;
        let gain = gain.map(|p| frame_image("gain", p, &g)).transpose()?;
        let mut mask = vec![false; sy * sx];
        if let Some(ex) = excluded {
            if ex.to_ascii_lowercase().ends_with(".npy") {
                for (m, v) in mask.iter_mut().zip(frame_image("excluded", ex, &g)?) {
                    *m = v != 0.0;
                }
            } else {
                for item in ex.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    let bad = || Error::Spec(format!("excluded={ex}: '{item}' is not y:x inside the {sy}x{sx} frame"));
                    let (y, x) = item.split_once(':').ok_or_else(bad)?;
                    let (y, x): (usize, usize) =
                        (y.trim().parse().map_err(|_| bad())?, x.trim().parse().map_err(|_| bad())?);
                    if y >= sy || x >= sx {
                        return Err(bad());
                    }
                    mask[y * sx + x] = true;
                }
            }
        }
        let excluded = (0..sy * sx)
            .filter(|&p| mask[p])
            .map(|p| {
                let (y, x) = ((p / sx) as i64, (p % sx) as i64);
                let mut nb = Vec::new();
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        let (ny, nx) = (y + dy, x + dx);
                        if (dy, dx) != (0, 0) && (0..sy as i64).contains(&ny) && (0..sx as i64).contains(&nx) {
                            let q = ny as usize * sx + nx as usize;
                            if !mask[q] {
                                nb.push(q);
                            }
                        }
                    }
                }
                (p, nb)
            })
            .collect();
        let geometry = Geometry { dtype: DType::F32, ..g };
        Ok(Arc::new(Corrected { inner, geometry, dark, gain, excluded }))
    }

    fn correct<T: Pixel>(&self, raw: &[T], out: &mut [f32]) {
        let size = self.geometry.sig.size();
        for (src, dst) in raw.chunks_exact(size).zip(out.chunks_exact_mut(size)) {
            for (i, (o, v)) in dst.iter_mut().zip(src).enumerate() {
                let mut x = v.to_f32();
                if let Some(d) = &self.dark {
                    x -= d[i];
                }
                if let Some(gn) = &self.gain {
                    x *= gn[i];
                }
                *o = x;
            }
            for (p, nb) in &self.excluded {
                dst[*p] = if nb.is_empty() { 0.0 } else { nb.iter().map(|&q| dst[q]).sum::<f32>() / nb.len() as f32 };
            }
        }
    }
}

impl Dataset for Corrected {
    fn spec(&self) -> &DatasetSpec {
        self.inner.spec()
    }
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer> {
        let raw = self.inner.read(runs, pool)?;
        let n: usize = runs.iter().map(|r| r.1).sum();
        let len = n * self.geometry.sig.size();
        let dtype = self.inner.geometry().dtype;
        pool.fill(len * 4, |bytes| {
            let out: &mut [f32] = pixels_mut(bytes);
            with_pixel_type!(dtype, T => {
                let src = arrow::buffer::ScalarBuffer::<T>::new(raw.clone(), 0, len);
                self.correct::<T>(&src, out);
                Ok(())
            }, _ => Err(Error::Unsupported(format!("corrections of {dtype} pixels"))))
        })
    }
    fn frame_alignment(&self) -> usize {
        self.inner.frame_alignment()
    }
    fn calibration(&self) -> crate::dataset::Calibration {
        self.inner.calibration()
    }
    fn describe(&self) -> Vec<(String, String)> {
        let mut d = self.inner.describe();
        d.push((
            "corrections".into(),
            format!(
                "dark: {}, gain: {}, excluded pixels: {}",
                self.dark.is_some(),
                self.gain.is_some(),
                self.excluded.len()
            ),
        ));
        d
    }
}
