//! Registers a dataset, runs UDFs with a ROI through SQL and through the Rust API, and exports the
//! results to Parquet.
//!
//! `cargo run --example roi_sum [-- PATH[,key=value]...]` (default: a synthetic dataset)

use arrow::array::AsArray;
use tessera::dataset::DatasetSpec;
use tessera::geometry::Roi;
use tessera::udf::Results;
use tessera::udf::builtin::SumSig;
use tessera::{Context, display};

#[tokio::main]
async fn main() -> tessera::Result<()> {
    let spec = std::env::args().nth(1).unwrap_or_else(|| "synthetic,nav=32x32,sig=64x64,dtype=uint16".into());
    let ctx = Context::new()?;
    let ds = ctx.register_spec("scan", DatasetSpec::parse(&spec)?)?;
    println!("scan: nav {} sig {} {}", ds.geometry().nav, ds.geometry().sig, ds.geometry().dtype);

    // SQL with a rectangular ROI
    let batches = ctx
        .sql("SELECT udf_sum(tile) AS frames, udf_sum_sig(tile) AS bf FROM scan WHERE nav_y BETWEEN 4 AND 11")
        .await?
        .collect()
        .await?;
    print!("{}", display::summarize(&batches));
    let bf = Results::from_struct(batches[0].column(1).as_struct(), 0)?;
    println!("bright field frames seen: {}", bf.valid.as_ref().map_or(0, |v| v.iter().filter(|x| **x).count()));

    // The same UDF from Rust with a ROI given as a bitmask
    let n = ds.geometry().n_frames();
    let roi = Roi::from_bools((0..n).map(|i| i % 2 == 0));
    let res = ctx.run_udf("scan", SumSig, Some(&roi)).await?;
    println!("every other frame: {:?}", display::stats(res.buffer("intensity")?));

    // Export
    let out = std::env::temp_dir().join("tessera_example.parquet");
    ctx.sql(&format!("COPY (SELECT udf_sum_sig(tile) AS bf FROM scan) TO '{}'", out.display()))
        .await?
        .collect()
        .await?;
    println!("wrote {}", out.display());
    Ok(())
}
