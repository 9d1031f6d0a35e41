//! `udf_com`: centre of mass of each frame, and the fields derived from it (LiberTEM's CoMUDF).

use crate::dataset::{DType, Pixel};
use crate::error::Error;
use crate::udf::{
    Args, Buffers, Meta, RunLane, Tile, Udf, UdfDoc, Views, frames_with_next, prefetch, prefetch_l2, simd, tail_window,
};
use std::sync::Arc;

/// Centre of mass (LiberTEM's CoMUDF), within a disk of radius `r` (or a ring `ri..r`) around
/// `(cy, cx)` — by default the whole frame around its centre `(sig_y // 2, sig_x // 2)`:
///
/// - `raw_com = (Σ y·I, Σ x·I) / Σ I` over the mask (pixel (y, x) has coordinates = indices; a frame
///   with `Σ I = 0` has its centre at `(cy, cx)`), `raw_shifts = raw_com - (cy, cx)`;
/// - `field = R(scan_rotation) · F(flip_y) · raw_shifts` with `R(θ) = [[cos θ, sin θ], [-sin θ, cos θ]]`
///   (θ in degrees) and `F = diag(-1, 1)` when `flip_y`; then, with `regression` 0, the mean field
///   is subtracted, with 1 a least-squares plane `[1, y, x] · regression` (over the frames seen);
/// - `field_y`, `field_x`, `magnitude = |field|`, `divergence = ∂field_y/∂y + ∂field_x/∂x`,
///   `curl = ∂field_y/∂x - ∂field_x/∂y` (numpy's `gradient`: central differences inside, one-sided at
///   the scan's edges; NaN next to frames outside the ROI, as LiberTEM).
///
/// ```sql
/// SELECT udf_com(tile, cy => 15.5, cx => 15.5, r => 8) FROM scan
/// ```
///
/// All nav buffers have dtype `result_type(input, float32)` whatever the ROI; `regression` is
/// float64 `[3, 2]`.
#[derive(Clone, Debug)]
pub struct CenterOfMass {
    /// Centre row (default: sig_y // 2).
    pub cy: Option<f64>,
    /// Centre column (default: sig_x // 2).
    pub cx: Option<f64>,
    /// Outer radius (default: infinite, the whole frame).
    pub r: f64,
    /// Inner radius (default 0).
    pub ri: f64,
    /// Scan rotation in degrees.
    pub scan_rotation: f64,
    /// Flip the y axis of the detector.
    pub flip_y: bool,
    /// -1: none, 0: subtract the mean, 1: subtract a linear fit.
    pub regression: i64,
    /// The mask's pixels as runs along rows: (first flat index, length, y, first x), set by
    /// `configure`.
    pixels: Option<Arc<Vec<Run>>>,
}

impl Default for CenterOfMass {
    fn default() -> Self {
        CenterOfMass {
            cy: None,
            cx: None,
            r: f64::INFINITY,
            ri: 0.0,
            scan_rotation: 0.0,
            flip_y: false,
            regression: -1,
            pixels: None,
        }
    }
}

const PARAMS: &[&str] = &["cy", "cx", "r", "ri", "scan_rotation", "flip_y", "regression"];

impl CenterOfMass {
    /// CoM in a disk of radius `r` around `(cy, cx)` (LiberTEM's `CoMUDF.with_params(cy=, cx=, r=)`);
    /// `None` centres default to the frame centre.
    pub fn with_params(cy: Option<f64>, cx: Option<f64>, r: f64) -> Self {
        CenterOfMass { cy, cx, r, ..Default::default() }
    }
    /// Excludes an inner disk of radius `ri` (annular CoM).
    pub fn inner_radius(mut self, ri: f64) -> Self {
        self.ri = ri;
        self
    }
    /// Sets the scan rotation (degrees) and y flip.
    pub fn corrections(mut self, scan_rotation: f64, flip_y: bool) -> Self {
        self.scan_rotation = scan_rotation;
        self.flip_y = flip_y;
        self
    }
    /// Sets the regression: -1 none, 0 subtract the mean, 1 subtract a linear fit.
    pub fn regression(mut self, regression: i64) -> Self {
        self.regression = regression;
        self
    }

    fn centre(&self, meta: &Meta) -> (f64, f64) {
        let d = meta.sig.dims();
        (self.cy.unwrap_or((d[0] / 2) as f64), self.cx.unwrap_or((d[1] / 2) as f64))
    }

    /// Sets the parameters that were given; checks them.
    fn with_args(&self, args: &Args) -> crate::Result<Self> {
        const U: &str = "udf_com";
        let mut c = self.clone();
        c.cy = args.number(U, "cy")?.or(c.cy);
        c.cx = args.number(U, "cx")?.or(c.cx);
        c.r = args.number(U, "r")?.unwrap_or(c.r);
        c.ri = args.number(U, "ri")?.unwrap_or(c.ri);
        c.scan_rotation = args.number(U, "scan_rotation")?.unwrap_or(c.scan_rotation);
        c.flip_y = args.boolean(U, "flip_y")?.unwrap_or(c.flip_y);
        match args.integer(U, "regression") {
            Ok(Some(r @ -1..=1)) => c.regression = r,
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => {
                let v = args.number(U, "regression").ok().flatten().map_or("?".into(), |v| v.to_string());
                return Err(Error::udf(U, format!("parameter regression must be -1, 0 or 1, got {v}")));
            }
        }
        if c.cy.is_some_and(|v| !v.is_finite()) || c.cx.is_some_and(|v| !v.is_finite()) {
            return Err(Error::udf(U, "parameters cy and cx must be finite"));
        }
        if c.r.is_nan() || c.r < 0.0 || c.ri < 0.0 || !c.ri.is_finite() {
            return Err(Error::udf(U, format!("parameters r ({}) and ri ({}) must be >= 0", c.r, c.ri)));
        }
        if c.ri >= c.r {
            return Err(Error::udf(U, format!("parameter ri ({}) must be smaller than r ({})", c.ri, c.r)));
        }
        Ok(c)
    }
}

/// numpy's `gradient` along one axis of a row-major `(ny, nx)` grid (one-sided at the edges, 0 for an
/// axis of length 1).
fn gradient(f: &[f64], ny: usize, nx: usize, axis: usize) -> Vec<f64> {
    let (n, stride) = if axis == 0 { (ny, nx) } else { (nx, 1) };
    let mut g = vec![0.0; f.len()];
    if n < 2 {
        return g;
    }
    for (i, out) in g.iter_mut().enumerate() {
        let k = if axis == 0 { i / nx } else { i % nx };
        *out = if k == 0 {
            f[i + stride] - f[i]
        } else if k == n - 1 {
            f[i] - f[i - stride]
        } else {
            (f[i + stride] - f[i - stride]) / 2.0
        };
    }
    g
}

/// Least squares `inp · b ≈ field` for `inp` rows `[1, y, x]`: solves the 3×3 normal equations.
fn linear_fit(points: &[(f64, f64, f64, f64)]) -> crate::Result<[[f64; 2]; 3]> {
    let mut ata = [[0.0; 3]; 3];
    let mut atb = [[0.0; 2]; 3];
    for &(y, x, fy, fx) in points {
        let row = [1.0, y, x];
        for i in 0..3 {
            for j in 0..3 {
                ata[i][j] += row[i] * row[j];
            }
            atb[i][0] += row[i] * fy;
            atb[i][1] += row[i] * fx;
        }
    }
    // Gaussian elimination with partial pivoting
    let mut a = ata;
    let mut b = atb;
    for col in 0..3 {
        let piv = (col..3).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).expect("3 rows");
        if a[piv][col].abs() < 1e-12 {
            return Err(Error::udf("udf_com", "regression 1 needs frames spanning at least a 2-D patch of the scan"));
        }
        a.swap(col, piv);
        b.swap(col, piv);
        let (pivot_a, pivot_b) = (a[col], b[col]);
        for (ra, rb) in a.iter_mut().zip(b.iter_mut()).enumerate().filter(|(r, _)| *r != col).map(|(_, x)| x) {
            let f = ra[col] / pivot_a[col];
            for (x, p) in ra.iter_mut().zip(pivot_a) {
                *x -= f * p;
            }
            for (x, p) in rb.iter_mut().zip(pivot_b) {
                *x -= f * p;
            }
        }
    }
    let mut out = [[0.0; 2]; 3];
    for r in 0..3 {
        for c in 0..2 {
            out[r][c] = b[r][c] / a[r][r];
        }
    }
    Ok(out)
}

impl Udf for CenterOfMass {
    fn name(&self) -> &str {
        "udf_com"
    }
    fn doc(&self) -> Option<UdfDoc> {
        Some(UdfDoc {
            description: "Centre of mass of each frame and the fields derived from it (LiberTEM CoMUDF). Result: \
                          {raw_com, raw_shifts, field, field_y, field_x, magnitude, divergence, curl, regression, valid}",
            syntax: "udf_com(tile, cy => .., cx => .., r => .., ri => .., scan_rotation => .., flip_y => .., regression => ..)",
            example: "SELECT udf_com(tile, cy => 63.5, cx => 63.5, r => 32) FROM scan",
            args: &[
                ("cy", "centre row of the mask and reference of the shifts (default: sig_y // 2)"),
                ("cx", "centre column (default: sig_x // 2)"),
                ("r", "outer radius of the disk (default: infinite, the whole frame)"),
                ("ri", "inner radius of an annular mask (default 0)"),
                ("scan_rotation", "scan rotation in degrees (default 0)"),
                ("flip_y", "flip the detector's y axis (default false)"),
                ("regression", "-1 none, 0 subtract the mean field, 1 subtract a linear fit (default -1)"),
            ],
        })
    }
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    fn configure(&self, meta: &Meta, args: &Args) -> crate::Result<Self> {
        if meta.nav.ndim() != 2 || meta.sig.ndim() != 2 {
            return Err(Error::udf(
                "udf_com",
                format!("needs a 2-D scan of 2-D frames, not nav {} sig {}", meta.nav, meta.sig),
            ));
        }
        let mut c = self.with_args(args)?;
        let (cy, cx) = c.centre(meta);
        let (r2, ri2) = (c.r * c.r, c.ri * c.ri);
        let sx = meta.sig.dims()[1];
        let mut runs: Vec<Run> = Vec::new();
        for p in 0..meta.sig.size() {
            let (y, x) = ((p / sx) as f64, (p % sx) as f64);
            let d2 = (y - cy).powi(2) + (x - cx).powi(2);
            if d2 <= r2 && !(c.ri > 0.0 && d2 <= ri2) {
                match runs.last_mut() {
                    Some((p0, len, ry, _)) if *p0 + *len == p as u32 && *ry == y => *len += 1,
                    _ => runs.push((p as u32, 1, y, x)),
                }
            }
        }
        c.pixels = Some(Arc::new(runs));
        Ok(c)
    }
    fn buffers(&self, meta: &Meta) -> crate::Result<Buffers> {
        let dt = meta.input_dtype.float_result();
        let mut b = Buffers::new().nav_extra("raw_mask_result", &[3], dt).private();
        for (name, extra) in [("raw_com", 2), ("raw_shifts", 2), ("field", 2)] {
            b = b.nav_extra(name, &[extra], dt).result_only();
        }
        for name in ["field_y", "field_x", "magnitude", "divergence", "curl"] {
            b = b.nav(name, dt).result_only();
        }
        Ok(b.single("regression", &[3, 2], DType::F64).result_only())
    }
    fn process_tile<T: Pixel>(&mut self, tile: &Tile<'_, T>, out: &mut Views<'_>) -> crate::Result<()> {
        let pixels = self.pixels.as_deref().expect("configured before processing");
        moments(pixels, tile.data(), tile.sig_size(), out.nav("raw_mask_result"));
        Ok(())
    }
    fn get_results(&self, meta: &Meta, bufs: &mut Views<'_>) -> crate::Result<()> {
        let (ny, nx) = (meta.nav.dims()[0], meta.nav.dims()[1]);
        let n = ny * nx;
        let valid: Vec<bool> = bufs.valid().map_or_else(|| vec![true; n], |v| v.to_vec());
        let (cy, cx) = self.centre(meta);
        let raw = bufs.nav("raw_mask_result").to_vec();
        let (mut fy, mut fx) = (vec![f64::NAN; n], vec![f64::NAN; n]);
        let (mut shifts, mut com) = (vec![f64::NAN; 2 * n], vec![f64::NAN; 2 * n]);
        let theta = self.scan_rotation.to_radians();
        let (c, s) = (theta.cos(), theta.sin());
        let flip = if self.flip_y { -1.0 } else { 1.0 };
        for i in (0..n).filter(|&i| valid[i]) {
            let (sum, ys, xs) = (raw[3 * i], raw[3 * i + 1], raw[3 * i + 2]);
            let (dy, dx) = if sum != 0.0 { (ys / sum - cy, xs / sum - cx) } else { (0.0, 0.0) };
            shifts[2 * i] = dy;
            shifts[2 * i + 1] = dx;
            com[2 * i] = dy + cy;
            com[2 * i + 1] = dx + cx;
            fy[i] = c * flip * dy + s * dx;
            fx[i] = -s * flip * dy + c * dx;
        }
        let mut regression = [[0.0; 2]; 3];
        let seen: Vec<(f64, f64, f64, f64)> =
            (0..n).filter(|&i| valid[i]).map(|i| ((i / nx) as f64, (i % nx) as f64, fy[i], fx[i])).collect();
        match self.regression {
            0 if !seen.is_empty() => {
                let k = seen.len() as f64;
                regression[0] = [seen.iter().map(|p| p.2).sum::<f64>() / k, seen.iter().map(|p| p.3).sum::<f64>() / k];
            }
            1 if !seen.is_empty() => regression = linear_fit(&seen)?,
            _ => {}
        }
        for i in (0..n).filter(|&i| valid[i]) {
            let (y, x) = ((i / nx) as f64, (i % nx) as f64);
            fy[i] -= regression[0][0] + y * regression[1][0] + x * regression[2][0];
            fx[i] -= regression[0][1] + y * regression[1][1] + x * regression[2][1];
        }
        let field: Vec<f64> = fy.iter().zip(&fx).flat_map(|(a, b)| [*a, *b]).collect();
        let (dyy, dxx) = (gradient(&fy, ny, nx, 0), gradient(&fx, ny, nx, 1));
        let (dyx, dxy) = (gradient(&fy, ny, nx, 1), gradient(&fx, ny, nx, 0));
        bufs.nav("raw_shifts").copy_from_slice(&shifts);
        bufs.nav("raw_com").copy_from_slice(&com);
        bufs.nav("field").copy_from_slice(&field);
        bufs.nav("field_y").copy_from_slice(&fy);
        bufs.nav("field_x").copy_from_slice(&fx);
        for (i, m) in bufs.nav("magnitude").iter_mut().enumerate() {
            *m = (fy[i] * fy[i] + fx[i] * fx[i]).sqrt();
        }
        for (i, d) in bufs.nav("divergence").iter_mut().enumerate() {
            *d = dyy[i] + dxx[i];
        }
        for (i, d) in bufs.nav("curl").iter_mut().enumerate() {
            *d = dyx[i] - dxy[i];
        }
        bufs.single("regression").copy_from_slice(&regression.concat());
        Ok(())
    }
}

/// A run of mask pixels along a row: (first flat index, length, y, first x).
type Run = (u32, u32, f64, f64);

simd::multiversion! {
    /// `(Σv, Σ y·v, Σ x·v)` over the disk's runs of every frame (`sig_size` pixels each), added to
    /// the frame's three values in `out`.
    fn moments<T: Pixel>(pixels: &[Run], data: &[T], sig_size: usize, out: &mut [f64]) {
        for ((frame, next), res) in frames_with_next(data, sig_size).zip(out.chunks_exact_mut(3)) {
            // a few runs ahead: more of the frame's reads in flight than the runs' own loads give
            const AHEAD: usize = 4;
            for &(p, len, _, _) in pixels.iter().take(AHEAD) {
                prefetch(&frame[p as usize..(p + len) as usize]);
            }
            let mut lanes = Moments::default();
            for (k, &run) in pixels.iter().enumerate() {
                if let Some(&(q, l, _, _)) = pixels.get(k + AHEAD) {
                    prefetch(&frame[q as usize..(q + l) as usize]);
                }
                // and the run's pixels of the next frame into L2, a frame ahead
                prefetch_l2(next, run.0 as usize, run.1 as usize);
                lanes.add_run(frame, run);
            }
            for (r, v) in res.iter_mut().zip(lanes.totals()) {
                *r += v;
            }
        }
    }
}

/// Pixels per window of [`Moments`]: one AVX-512 register of f64.
const W: usize = 8;

/// A frame's `(Σv, Σ y·v, Σ x·v)` in `W` f64 lanes each, reduced once per frame: a run costs its
/// whole windows of `W` pixels and one window for its tail, whose lanes outside the run are masked
/// out (as the masks' runs). Exact for 8/16-bit counts: every partial sum is an integer below 2^53.
#[derive(Default)]
struct Moments {
    s: [f64; W],
    sy: [f64; W],
    sx: [f64; W],
}

impl Moments {
    /// Adds the run `(p, len, y, x0)` of `frame`.
    #[inline(always)]
    fn add_run<T: Pixel>(&mut self, frame: &[T], (p, len, y, x0): Run) {
        let (p, len) = (p as usize, len as usize);
        if frame.len() < W {
            for (j, v) in frame[p..p + len].iter().enumerate() {
                let v = v.to_f64();
                self.s[0] += v;
                self.sy[0] += v * y;
                self.sx[0] += v * (x0 + j as f64);
            }
            return;
        }
        // the run's sum in lanes, then Σ y·v = y · Σv once per run
        let mut run = [0.0; W];
        let mut col: [f64; W] = std::array::from_fn(|k| x0 + k as f64);
        let whole = len / W * W;
        for c in frame[p..p + whole].chunks_exact(W) {
            let c: &[T; W] = c.try_into().expect("W pixels");
            for k in 0..W {
                let v = c[k].to_f64();
                run[k] += v;
                self.sx[k] += v * col[k];
                col[k] += W as f64;
            }
        }
        let tail = len - whole;
        if tail > 0 {
            // lane k of the window is column col[k] - lo
            let (window, inside, lo) = tail_window::<T, W>(frame, p + whole, tail);
            for k in 0..W {
                let v = window[k].to_f64().keep(inside[k]);
                run[k] += v;
                self.sx[k] += v * (col[k] - lo as f64);
            }
        }
        for ((s, sy), r) in self.s.iter_mut().zip(&mut self.sy).zip(run) {
            *s += r;
            *sy += r * y;
        }
    }

    /// `[Σv, Σ y·v, Σ x·v]`, each summed over its lanes in lane order.
    fn totals(&self) -> [f64; 3] {
        [f64::total(&self.s), f64::total(&self.sy), f64::total(&self.sx)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::simd::{same_at_every_level, test_values};

    #[test]
    fn moments_agree_at_every_level() {
        // runs of a 30×40 frame: row y, columns y/2 .. y + 3
        let runs: Vec<Run> = (0..30u32).map(|y| (y * 40 + y / 2, 3 + y / 2, y as f64, (y / 2) as f64)).collect();
        let v = test_values(5 * 1200, 3000);
        let f: Vec<f32> = v.iter().map(|&x| x as f32 * 0.25).collect();
        let u: Vec<u16> = v.iter().map(|&x| x as u16 * 20).collect();
        let (got, got_u) = same_at_every_level(|| {
            let (mut out, mut out_u) = (vec![0.0; 15], vec![0.0; 15]);
            moments(&runs, &f, 1200, &mut out);
            moments(&runs, &u, 1200, &mut out_u);
            (out, out_u)
        });
        // the integer path is exact: 80 × (the f32 path's values, exact in f64 here)
        for (a, b) in got_u.iter().zip(&got) {
            assert_eq!(*a, b * 80.0);
        }
        assert_eq!(got, reference(&runs, &f, 1200));
    }

    /// The moments pixel by pixel, as the formula says.
    fn reference(runs: &[Run], data: &[f32], sig_size: usize) -> Vec<f64> {
        let mut out = vec![0.0; data.len() / sig_size * 3];
        for (frame, res) in data.chunks(sig_size).zip(out.chunks_mut(3)) {
            for &(p, len, y, x0) in runs {
                for j in 0..len {
                    let v = frame[(p + j) as usize] as f64;
                    res[0] += v;
                    res[1] += v * y;
                    res[2] += v * (x0 + j as f64);
                }
            }
        }
        out
    }

    #[test]
    fn runs_at_the_frame_end_and_on_tiny_frames() {
        let v: Vec<f32> = test_values(3 * 60, 500).iter().map(|&x| x as f32).collect();
        // 6×10 frames: a run ending at the frame's end shorter than a window (which moves back),
        // one of a window and a tail, one in the middle
        let runs: Vec<Run> = vec![(12, 3, 1.0, 2.0), (31, 13, 3.0, 1.0), (55, 5, 5.0, 5.0)];
        let mut out = vec![0.0; 9];
        moments(&runs, &v, 60, &mut out);
        assert_eq!(out, reference(&runs, &v, 60));
        // 2×3 frames, smaller than a window
        let runs: Vec<Run> = vec![(0, 2, 0.0, 0.0), (4, 2, 1.0, 1.0)];
        let mut out = vec![0.0; 90];
        moments(&runs, &v, 6, &mut out);
        assert_eq!(out, reference(&runs, &v, 6));
    }
}
