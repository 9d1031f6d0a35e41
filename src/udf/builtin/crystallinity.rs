//! `udf_crystallinity`: the sum of the Fourier spectrum of each frame over a ring (LiberTEM's
//! CrystallinityUDF).

use crate::dataset::{DType, Pixel};
use crate::error::Error;
use crate::udf::{Args, Buffers, Meta, Method, Tile, Udf, UdfDoc, Views};
use rustfft::num_complex::Complex64;
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// `intensity[nav] = Σ_{ring} |fftshift(fft2(frame · real_mask))|` (LiberTEM's CrystallinityUDF): the
/// ring `ri² < d² <= ro²` lies around the centre `(sig_y / 2, sig_x / 2)` of the shifted spectrum;
/// `real_mask` is 1 except in the disk `real_r` around `(real_cy, real_cx)` when all three are given
/// (to mask out the zero-order beam).
///
/// ```sql
/// SELECT udf_crystallinity(tile, ri => 2, ro => 10) FROM scan
/// ```
#[derive(Clone, Default)]
pub struct Crystallinity {
    plan: Option<Arc<Plan>>,
    scratch: Vec<Complex64>,
}

/// Everything a frame's transform needs, computed once per query.
struct Plan {
    rows: Arc<dyn Fft<f64>>,
    cols: Arc<dyn Fft<f64>>,
    sy: usize,
    sx: usize,
    /// 0 in the real-space disk, 1 elsewhere (None: no real-space mask).
    real_mask: Option<Vec<f64>>,
    /// Flat indices in the unshifted spectrum of the ring's pixels of the shifted spectrum.
    ring: Vec<usize>,
    key: String,
}

impl std::fmt::Debug for Crystallinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crystallinity({})", self.plan.as_ref().map_or("", |p| p.key.as_str()))
    }
}

const U: &str = "udf_crystallinity";

impl Udf for Crystallinity {
    fn name(&self) -> &str {
        U
    }
    fn doc(&self) -> Option<UdfDoc> {
        Some(UdfDoc {
            description: "Crystallinity (LiberTEM CrystallinityUDF): sum of |fft2(frame)| over a ring in Fourier space, \
                          optionally with a real-space disk masked out. Result: {intensity: nav-shaped, valid}",
            syntax: "udf_crystallinity(tile, ri => .., ro => .., real_cy => .., real_cx => .., real_r => ..)",
            example: "SELECT udf_crystallinity(tile, ri => 2, ro => 10) FROM scan",
            args: &[
                ("ri", "inner radius of the Fourier-space ring, excluded (default 0)"),
                ("ro", "outer radius of the Fourier-space ring (default a quarter of the smaller side)"),
                ("real_cy", "row of the real-space disk to mask out"),
                ("real_cx", "column of the real-space disk"),
                ("real_r", "radius of the real-space disk"),
            ],
        })
    }
    fn params(&self) -> &'static [&'static str] {
        &["ri", "ro", "real_cy", "real_cx", "real_r"]
    }
    fn configure(&self, meta: &Meta, args: &Args) -> crate::Result<Self> {
        if meta.sig.ndim() != 2 {
            return Err(Error::udf(U, format!("needs 2-D frames, not {}", meta.sig)));
        }
        let (sy, sx) = (meta.sig.dims()[0], meta.sig.dims()[1]);
        let ri = args.number(U, "ri")?.unwrap_or(0.0);
        let ro = args.number(U, "ro")?.unwrap_or((sy.min(sx) / 4) as f64);
        if !(ri.is_finite() && ro.is_finite()) || ri < 0.0 || ri >= ro {
            return Err(Error::udf(U, format!("parameters need 0 <= ri < ro, got ri={ri}, ro={ro}")));
        }
        let real = (args.number(U, "real_cy")?, args.number(U, "real_cx")?, args.number(U, "real_r")?);
        let real_mask = match real {
            (Some(cy), Some(cx), Some(r)) => {
                if r < 0.0 {
                    return Err(Error::udf(U, format!("parameter real_r ({r}) must be >= 0")));
                }
                Some(
                    (0..sy * sx)
                        .map(|p| {
                            let (y, x) = ((p / sx) as f64, (p % sx) as f64);
                            if (y - cy).powi(2) + (x - cx).powi(2) <= r * r { 0.0 } else { 1.0 }
                        })
                        .collect(),
                )
            }
            (None, None, None) => None,
            _ => return Err(Error::udf(U, "give all of real_cy, real_cx and real_r, or none")),
        };
        let (fy, fx) = (sy as f64 * 0.5, sx as f64 * 0.5);
        let ring: Vec<usize> = (0..sy * sx)
            .filter_map(|p| {
                let (i, j) = (p / sx, p % sx);
                let d2 = (i as f64 - fy).powi(2) + (j as f64 - fx).powi(2);
                // fftshift: shifted[i] = spectrum[(i - n // 2) mod n]
                (d2 <= ro * ro && d2 > ri * ri).then(|| ((i + sy - sy / 2) % sy) * sx + (j + sx - sx / 2) % sx)
            })
            .collect();
        let mut planner = FftPlanner::<f64>::new();
        let key = format!("{sy}x{sx} ri={ri} ro={ro} real={real:?}");
        Ok(Crystallinity {
            plan: Some(Arc::new(Plan {
                rows: planner.plan_fft_forward(sx),
                cols: planner.plan_fft_forward(sy),
                sy,
                sx,
                real_mask,
                ring,
                key,
            })),
            scratch: Vec::new(),
        })
    }
    fn buffers(&self, _meta: &Meta) -> crate::Result<Buffers> {
        Ok(Buffers::new().nav("intensity", DType::F32))
    }
    fn method(&self) -> Method {
        Method::Frame
    }
    fn process_frame<T: Pixel>(&mut self, frame: &Tile<'_, T>, out: &mut Views<'_>) -> crate::Result<()> {
        let plan = self.plan.clone().expect("configured before processing");
        let (sy, sx) = (plan.sy, plan.sx);
        let buf = &mut self.scratch;
        buf.clear();
        buf.extend(frame.data().iter().enumerate().map(|(p, v)| {
            let m = plan.real_mask.as_ref().map_or(1.0, |m| m[p]);
            Complex64::new(v.to_f64() * m, 0.0)
        }));
        plan.rows.process(buf); // every row (the buffer holds sy rows of sx)
        let mut column = vec![Complex64::default(); sy];
        for j in 0..sx {
            for (i, c) in column.iter_mut().enumerate() {
                *c = buf[i * sx + j];
            }
            plan.cols.process(&mut column);
            for (i, c) in column.iter().enumerate() {
                buf[i * sx + j] = *c;
            }
        }
        out.nav("intensity")[0] = plan.ring.iter().map(|&k| buf[k].norm()).sum();
        Ok(())
    }
}
