//! `udf_fem`: fluctuation electron microscopy — the standard deviation within a ring (LiberTEM's FEMUDF).

use crate::dataset::{DType, Pixel};
use crate::error::Error;
use crate::udf::{Args, Buffers, Meta, Method, Tile, Udf, UdfDoc, Views};
use std::sync::Arc;

/// Population standard deviation (numpy's `std`, ddof 0) of each frame's pixels inside the ring
/// `ri² < d² <= ro²` around `(cy, cx)` (LiberTEM's FEMUDF): `intensity[nav] = std(frame[ring])`.
///
/// ```sql
/// SELECT udf_fem(tile, cy => 32, cx => 32, ri => 10, ro => 20) FROM scan
/// ```
#[derive(Clone, Debug, Default)]
pub struct Fem {
    pixels: Option<Arc<Vec<u32>>>,
}

const U: &str = "udf_fem";

/// The flat indices of the pixels of a 2-D frame with `ri² < d² <= ro²` around `(cy, cx)`.
pub(crate) fn ring_pixels(meta: &Meta, cy: f64, cx: f64, ri: f64, ro: f64) -> Vec<u32> {
    let sx = meta.sig.dims()[1];
    (0..meta.sig.size() as u32)
        .filter(|&p| {
            let (y, x) = ((p as usize / sx) as f64, (p as usize % sx) as f64);
            let d2 = (y - cy).powi(2) + (x - cx).powi(2);
            d2 <= ro * ro && d2 > ri * ri
        })
        .collect()
}

/// Centre, inner and outer radius of a ring from the parameters (defaults: frame centre
/// `sig // 2`, ri 0, ro half the smaller frame side); checked.
pub(crate) fn ring_params(udf: &str, meta: &Meta, args: &Args) -> crate::Result<(f64, f64, f64, f64)> {
    if meta.sig.ndim() != 2 {
        return Err(Error::udf(udf, format!("needs 2-D frames, not {}", meta.sig)));
    }
    let d = meta.sig.dims();
    let cy = args.number(udf, "cy")?.unwrap_or((d[0] / 2) as f64);
    let cx = args.number(udf, "cx")?.unwrap_or((d[1] / 2) as f64);
    let ri = args.number(udf, "ri")?.unwrap_or(0.0);
    let ro = args.number(udf, "ro")?.unwrap_or((d[0].min(d[1]) / 2) as f64);
    if !(cy.is_finite() && cx.is_finite() && ri.is_finite() && ro.is_finite()) {
        return Err(Error::udf(udf, "parameters cy, cx, ri and ro must be finite"));
    }
    if ri < 0.0 || ro <= 0.0 {
        return Err(Error::udf(udf, format!("parameters ri ({ri}) must be >= 0 and ro ({ro}) > 0")));
    }
    if ri >= ro {
        return Err(Error::udf(udf, format!("parameter ri ({ri}) must be smaller than ro ({ro})")));
    }
    Ok((cy, cx, ri, ro))
}

impl Udf for Fem {
    fn name(&self) -> &str {
        U
    }
    fn doc(&self) -> Option<UdfDoc> {
        Some(UdfDoc {
            description: "Fluctuation EM (LiberTEM FEMUDF): standard deviation of each frame within a ring. \
                          Result: {intensity: nav-shaped, valid}",
            syntax: "udf_fem(tile, cy => .., cx => .., ri => .., ro => ..)",
            example: "SELECT udf_fem(tile, cy => 32, cx => 32, ri => 10, ro => 20) FROM scan",
            args: &[
                ("cy", "ring centre row (default sig_y // 2)"),
                ("cx", "ring centre column (default sig_x // 2)"),
                ("ri", "inner radius, excluded (default 0)"),
                ("ro", "outer radius (default half the smaller frame side)"),
            ],
        })
    }
    fn params(&self) -> &'static [&'static str] {
        &["cy", "cx", "ri", "ro"]
    }
    fn configure(&self, meta: &Meta, args: &Args) -> crate::Result<Self> {
        let (cy, cx, ri, ro) = ring_params(U, meta, args)?;
        let pixels = ring_pixels(meta, cy, cx, ri, ro);
        if pixels.is_empty() {
            return Err(Error::udf(U, format!("the ring ri={ri}, ro={ro} around ({cy}, {cx}) holds no pixel")));
        }
        Ok(Fem { pixels: Some(Arc::new(pixels)) })
    }
    fn buffers(&self, _meta: &Meta) -> crate::Result<Buffers> {
        Ok(Buffers::new().nav("intensity", DType::F32))
    }
    fn method(&self) -> Method {
        Method::Frame
    }
    fn process_frame<T: Pixel>(&mut self, frame: &Tile<'_, T>, out: &mut Views<'_>) -> crate::Result<()> {
        let pixels = self.pixels.as_deref().expect("configured before processing");
        let px = frame.data();
        let n = pixels.len() as f64;
        let mean = pixels.iter().map(|&p| px[p as usize].to_f64()).sum::<f64>() / n;
        let var = pixels.iter().map(|&p| (px[p as usize].to_f64() - mean).powi(2)).sum::<f64>() / n;
        out.nav("intensity")[0] = var.sqrt();
        Ok(())
    }
}
