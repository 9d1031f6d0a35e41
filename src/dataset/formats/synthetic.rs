//! A deterministic synthetic 4D-STEM generator: a bright disk that moves across the scan, a halo
//! around it, a background and Poisson shot noise (plus Gaussian read noise for float dtypes).
//!
//! Frame `(iy, ix)` of a `(ny, nx)` scan with `(sy, sx)` frames, disk radius `R = sy/8`:
//! - disk centre `(sy/2 - 0.5 + A sin(2π ix/nx), sx/2 - 0.5 + A cos(2π iy/ny))`, `A = sy/32`;
//! - disk intensity `100 (0.75 + 0.25 sin(4π iy/ny) cos(6π ix/nx))`, edge `clip(R + 0.5 - r, 0, 1)`;
//! - halo `5 exp(-r / (sy/4))`, background `0.5`;
//! - counts ~ Poisson(λ) of the sum; float dtypes add N(0, 0.25).
//!
//! The noise of each frame comes from a generator seeded by `(seed, nav_index)`, so every frame is the
//! same however the scan is partitioned. Frames are generated on demand: nothing is stored.

use crate::dataset::io::pixels_mut;
use crate::dataset::{BufferPool, DType, Dataset, DatasetSpec, Geometry, Pixel, int_option};
use crate::error::{Error, Result};
use crate::geometry::Shape;
use crate::with_pixel_type;
use arrow::buffer::Buffer;

/// The synthetic generator: `synthetic,nav=..,sig=..,dtype=..[,seed=..]`.
#[derive(Debug)]
pub struct SyntheticDataset {
    spec: DatasetSpec,
    geometry: Geometry,
    seed: u64,
}

impl SyntheticDataset {
    /// Opens a synthetic dataset (defaults: nav 16x16, sig 64x64, uint16, seed 0).
    pub fn open(spec: &DatasetSpec) -> Result<Self> {
        let nav = Shape::parse(spec.get("nav").unwrap_or("16x16"))?;
        let sig = Shape::parse(spec.get("sig").unwrap_or("64x64"))?;
        if sig.ndim() != 2 {
            return Err(Error::Spec(format!("synthetic sig={sig}: frames are 2-D")));
        }
        let (dtype, _) = DType::parse(spec.get("dtype").unwrap_or("uint16"))?;
        if !dtype.is_pixel() {
            return Err(Error::Spec(format!("synthetic dtype={dtype}: use a pixel type")));
        }
        let seed = int_option(spec, "seed")?.unwrap_or(0) as u64;
        let mut spec = spec.clone();
        spec.format = Some("synthetic".into());
        Ok(SyntheticDataset { spec, geometry: Geometry { nav, sig, dtype }, seed })
    }

    fn frame<T: Pixel>(&self, index: usize, out: &mut [T]) {
        let g = &self.geometry;
        let nav = g.nav.dims();
        let (ny, nx) = if nav.len() >= 2 { (nav[nav.len() - 2], nav[nav.len() - 1]) } else { (1, nav[0]) };
        let (iy, ix) = ((index / nx) % ny, index % nx);
        let (sy, sx) = (g.sig.dims()[0] as f64, g.sig.dims()[1] as f64);
        let tau = std::f64::consts::TAU;
        let a = sy / 32.0;
        let r_disk = sy / 8.0;
        let cy = sy / 2.0 - 0.5 + a * (tau * ix as f64 / nx as f64).sin();
        let cx = sx / 2.0 - 0.5 + a * (tau * iy as f64 / ny as f64).cos();
        let intensity = 100.0
            * (0.75 + 0.25 * (2.0 * tau * iy as f64 / ny as f64).sin() * (3.0 * tau * ix as f64 / nx as f64).cos());
        let mut rng = SplitMix(self.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED);
        let float = g.dtype.is_float();
        let width = g.sig.dims()[1];
        for (p, v) in out.iter_mut().enumerate() {
            let (y, x) = ((p / width) as f64, (p % width) as f64);
            let r = ((y - cy).powi(2) + (x - cx).powi(2)).sqrt();
            let lambda = intensity * (r_disk + 0.5 - r).clamp(0.0, 1.0) + 5.0 * (-r / (sy / 4.0)).exp() + 0.5;
            let mut val = rng.poisson(lambda);
            if float {
                val += 0.25 * rng.normal();
            }
            *v = T::from_f64(val);
        }
    }
}

/// splitmix64: a small, fast, well-mixed generator.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    /// Poisson(λ): Knuth's method for small λ, a rounded normal approximation above 30.
    fn poisson(&mut self, lambda: f64) -> f64 {
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0);
        }
        let l = (-lambda).exp();
        let mut k = 0.0;
        let mut p = 1.0;
        loop {
            p *= self.uniform();
            if p <= l {
                return k;
            }
            k += 1.0;
        }
    }
}

impl Dataset for SyntheticDataset {
    fn spec(&self) -> &DatasetSpec {
        &self.spec
    }
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer> {
        let n: usize = runs.iter().map(|r| r.1).sum();
        let frame_len = self.geometry.sig.size();
        with_pixel_type!(self.geometry.dtype, T => {
            pool.fill(n * frame_len * std::mem::size_of::<T>(), |bytes| {
                let out: &mut [T] = pixels_mut(bytes);
                let mut pos = 0;
                for &(start, count) in runs {
                    for i in start..start + count {
                        self.frame::<T>(i, &mut out[pos * frame_len..(pos + 1) * frame_len]);
                        pos += 1;
                    }
                }
                Ok(())
            })
        }, _ => Err(Error::Unsupported(format!("synthetic dtype {}", self.geometry.dtype))))
    }
    fn describe(&self) -> Vec<(String, String)> {
        vec![("seed".into(), self.seed.to_string())]
    }
}
