//! `udf_radial_fourier`: radial bins × angular Fourier orders of each frame (LiberTEM's
//! RadialFourierAnalysis).

use crate::dataset::{DType, Pixel};
use crate::error::Error;
use crate::udf::builtin::fem::ring_params;
use crate::udf::{Args, Buffers, Meta, Tile, Udf, UdfDoc, Views};
use std::sync::Arc;

/// For radial bin `b` and angular order `n` (LiberTEM's RadialFourierAnalysis):
/// `c[nav, b, n] = Σ_{pixels in bin b} frame[p] · exp(i n φ_p)`, `φ_p = atan2(y - cy, x - cx)`.
/// The `n_bins` bins split `ri <= r < ro` (`r` the distance to `(cy, cx)`; `r = ro` counts in the last
/// bin) into equal widths. Buffers: `real`, `imag` (nav × n_bins × (max_order + 1)), and
/// `absolute`, `phase` computed from them.
///
/// ```sql
/// SELECT udf_radial_fourier(tile, cy => 32, cx => 32, ri => 0, ro => 30, n_bins => 4, max_order => 8) FROM scan
/// ```
#[derive(Clone, Debug, Default)]
pub struct RadialFourier {
    n_bins: usize,
    orders: usize,
    /// (pixel, bin) of every pixel in range.
    pixels: Option<Arc<Vec<(u32, u32)>>>,
    /// cos(n φ), sin(n φ) for each pixel in range and order: pixels × orders × 2.
    trig: Option<Arc<Vec<f64>>>,
}

const U: &str = "udf_radial_fourier";

impl Udf for RadialFourier {
    fn name(&self) -> &str {
        U
    }
    fn doc(&self) -> Option<UdfDoc> {
        Some(UdfDoc {
            description: "Radial Fourier analysis (LiberTEM RadialFourierAnalysis): for radial bins and angular orders n, \
                          Σ frame · exp(i n φ). Result: {real, imag, absolute, phase: nav × n_bins × (max_order + 1), valid}",
            syntax: "udf_radial_fourier(tile, cy => .., cx => .., ri => .., ro => .., n_bins => .., max_order => ..)",
            example: "SELECT udf_radial_fourier(tile, ri => 0, ro => 30, n_bins => 4, max_order => 8) FROM scan",
            args: &[
                ("cy", "centre row (default sig_y // 2)"),
                ("cx", "centre column (default sig_x // 2)"),
                ("ri", "inner radius (default 0)"),
                ("ro", "outer radius (default half the smaller frame side)"),
                ("n_bins", "number of radial bins (default 1)"),
                ("max_order", "highest angular order (default 24)"),
            ],
        })
    }
    fn params(&self) -> &'static [&'static str] {
        &["cy", "cx", "ri", "ro", "n_bins", "max_order"]
    }
    fn configure(&self, meta: &Meta, args: &Args) -> crate::Result<Self> {
        let (cy, cx, ri, ro) = ring_params(U, meta, args)?;
        let n_bins = args.integer(U, "n_bins")?.unwrap_or(1);
        let max_order = args.integer(U, "max_order")?.unwrap_or(24);
        if !(1..=4096).contains(&n_bins) {
            return Err(Error::udf(U, format!("parameter n_bins must be between 1 and 4096, got {n_bins}")));
        }
        if !(0..=1024).contains(&max_order) {
            return Err(Error::udf(U, format!("parameter max_order must be between 0 and 1024, got {max_order}")));
        }
        let (n_bins, orders) = (n_bins as usize, max_order as usize + 1);
        let sx = meta.sig.dims()[1];
        let width = (ro - ri) / n_bins as f64;
        let mut pixels = Vec::new();
        let mut trig = Vec::new();
        for p in 0..meta.sig.size() {
            let (y, x) = ((p / sx) as f64 - cy, (p % sx) as f64 - cx);
            let r = (y * y + x * x).sqrt();
            if r < ri || r > ro {
                continue;
            }
            let bin = (((r - ri) / width) as usize).min(n_bins - 1);
            pixels.push((p as u32, bin as u32));
            let phi = y.atan2(x);
            for n in 0..orders {
                let (s, c) = (n as f64 * phi).sin_cos();
                trig.extend([c, s]);
            }
        }
        Ok(RadialFourier { n_bins, orders, pixels: Some(Arc::new(pixels)), trig: Some(Arc::new(trig)) })
    }
    fn buffers(&self, _meta: &Meta) -> crate::Result<Buffers> {
        let extra = [self.n_bins, self.orders];
        let mut b = Buffers::new();
        for name in ["real", "imag"] {
            b = b.nav_extra(name, &extra, DType::F32);
        }
        for name in ["absolute", "phase"] {
            b = b.nav_extra(name, &extra, DType::F32).result_only();
        }
        Ok(b)
    }
    fn process_tile<T: Pixel>(&mut self, tile: &Tile<'_, T>, out: &mut Views<'_>) -> crate::Result<()> {
        let (pixels, trig) = (self.pixels.as_deref().expect("configured"), self.trig.as_deref().expect("configured"));
        let k = self.n_bins * self.orders;
        let mut re = vec![0.0; k];
        let mut im = vec![0.0; k];
        for (f, frame) in tile.frames().enumerate() {
            re.fill(0.0);
            im.fill(0.0);
            for (i, &(p, bin)) in pixels.iter().enumerate() {
                let v = frame[p as usize].to_f64();
                let base = bin as usize * self.orders;
                let t = &trig[i * 2 * self.orders..(i + 1) * 2 * self.orders];
                for n in 0..self.orders {
                    re[base + n] += v * t[2 * n];
                    im[base + n] += v * t[2 * n + 1];
                }
            }
            out.nav("real")[f * k..(f + 1) * k].copy_from_slice(&re);
            out.nav("imag")[f * k..(f + 1) * k].copy_from_slice(&im);
        }
        Ok(())
    }
    fn get_results(&self, _meta: &Meta, bufs: &mut Views<'_>) -> crate::Result<()> {
        let (re, im) = (bufs.nav("real").to_vec(), bufs.nav("imag").to_vec());
        for ((a, r), i) in bufs.nav("absolute").iter_mut().zip(&re).zip(&im) {
            *a = r.hypot(*i);
        }
        for ((ph, r), i) in bufs.nav("phase").iter_mut().zip(&re).zip(&im) {
            *ph = i.atan2(*r);
        }
        Ok(())
    }
}
