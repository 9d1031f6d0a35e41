//! A user's own UDFs, registered into a plain DataFusion `SessionContext` and called from SQL —
//! the same trait and adapter as Tessera's built-ins.
//!
//! `cargo run --example user_udf`

use arrow::array::AsArray;
use datafusion::prelude::SessionContext;
use std::sync::Arc;
use tessera::dataset::{DType, DatasetSpec, Pixel, open};
use tessera::scan::TileTable;
use tessera::udf::{Buffers, Meta, Results, Tile, Udf, Views, aggregate};

/// The brightest value of every detector pixel over all frames.
/// `SELECT udf_max_frame(tile) FROM scan` → {max: tensor[sig_y, sig_x]}
#[derive(Clone, Debug, Default)]
struct MaxFrame;

impl Udf for MaxFrame {
    fn name(&self) -> &str {
        "udf_max_frame"
    }
    fn buffers(&self, meta: &Meta) -> tessera::Result<Buffers> {
        // start from -inf so that the first frame always wins
        Ok(Buffers::new().sig("max", meta.input_dtype.float_result()).fill(f64::NEG_INFINITY))
    }
    fn process_tile<T: Pixel>(&mut self, tile: &Tile<'_, T>, out: &mut Views<'_>) -> tessera::Result<()> {
        let max = out.sig("max");
        for frame in tile.frames() {
            for (m, &v) in max.iter_mut().zip(frame) {
                *m = m.max(v.to_f64());
            }
        }
        Ok(())
    }
    fn merge(&self, dest: &mut Views<'_>, src: &mut Views<'_>) -> tessera::Result<()> {
        for (d, s) in dest.sig("max").iter_mut().zip(src.sig("max").iter()) {
            *d = d.max(*s);
        }
        Ok(())
    }
}

/// The azimuthally averaged profile of every frame around the frame centre, in 1-pixel bins.
/// `SELECT udf_radial_profile(tile) FROM scan` → {profile: tensor[nav_y, nav_x, bins]}
#[derive(Clone, Debug, Default)]
struct RadialProfile;

impl RadialProfile {
    fn bins(meta: &Meta) -> usize {
        let d = meta.sig.dims();
        (d[0].min(d[1]) / 2).max(1)
    }
}

impl Udf for RadialProfile {
    fn name(&self) -> &str {
        "udf_radial_profile"
    }
    fn buffers(&self, meta: &Meta) -> tessera::Result<Buffers> {
        Ok(Buffers::new().nav_extra("profile", &[Self::bins(meta)], DType::F64))
    }
    fn process_tile<T: Pixel>(&mut self, tile: &Tile<'_, T>, out: &mut Views<'_>) -> tessera::Result<()> {
        let view = tile.view3();
        let (sy, sx) = (view.shape()[1], view.shape()[2]);
        let n = out.nav("profile").len() / tile.n_frames();
        let (cy, cx) = ((sy as f64 - 1.0) / 2.0, (sx as f64 - 1.0) / 2.0);
        let profile = out.nav("profile");
        for (frame, prof) in view.outer_iter().zip(profile.chunks_exact_mut(n)) {
            let mut counts = vec![0usize; n];
            for ((y, x), v) in frame.indexed_iter() {
                let r = ((y as f64 - cy).powi(2) + (x as f64 - cx).powi(2)).sqrt() as usize;
                if r < n {
                    prof[r] += v.to_f64();
                    counts[r] += 1;
                }
            }
            for (p, c) in prof.iter_mut().zip(counts) {
                *p /= c.max(1) as f64;
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> tessera::Result<()> {
    // a plain DataFusion session with Tessera's functions and two user UDFs
    let mut ctx = SessionContext::new();
    tessera::register(&mut ctx)?;
    ctx.register_udaf(aggregate(MaxFrame));
    ctx.register_udaf(aggregate(RadialProfile));
    let ds = open(&DatasetSpec::parse("synthetic,nav=16x16,sig=64x64,dtype=uint16")?)?;
    ctx.register_table("scan", Arc::new(TileTable::new("scan", ds)))?;

    let batches = ctx
        .sql("SELECT udf_max_frame(tile) AS mx, udf_radial_profile(tile) AS rp, udf_sum(tile) AS s FROM scan WHERE nav_y < 8")
        .await?
        .collect()
        .await?;
    print!("{}", tessera::display::summarize(&batches));
    let rp = Results::from_struct(batches[0].column(1).as_struct(), 0)?;
    let profile = rp.buffer("profile")?.to_f64();
    let first: Vec<String> = (0..8).map(|r| format!("{:.1}", profile[[0, 0, r]])).collect();
    println!("radial profile of frame (0, 0), first 8 bins: {}", first.join(" "));
    Ok(())
}
