//! The UDF model: one pass for many UDFs, parameter errors, lifecycle hooks.

use crate::common::ctx;
use arrow::array::AsArray;
use datafusion::physical_plan::collect;
use std::sync::Arc;
use tessera::dataset::DatasetSpec;
use tessera::scan::scan_metrics;

async fn err(c: &tessera::Context, q: &str) -> String {
    match c.sql(q).await {
        Err(e) => e.to_string(),
        Ok(df) => match df.create_physical_plan().await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{q}: planned without error"),
        },
    }
}

#[tokio::test]
async fn six_udfs_read_the_data_once() {
    let c = ctx(2);
    c.register_spec("scan", DatasetSpec::parse("synthetic,nav=12x10,sig=32x32,dtype=uint16").unwrap()).unwrap();
    let rings: Vec<String> = (0..16).map(|i| format!("'ring(15.5, 15.5, {i}, {})'", i + 1)).collect();
    let q = format!(
        "SELECT udf_sum(tile), udf_sum_sig(tile), udf_stddev(tile), udf_apply_masks(tile, masks('disk(15.5, 15.5, 6)')), \
         udf_apply_masks(tile, masks({})), udf_com(tile, r => 8) FROM scan WHERE nav_x < 5",
        rings.join(", ")
    );
    let df = c.sql(&q).await.unwrap();
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await.unwrap();
    let batches = collect(plan.clone(), task).await.unwrap();
    let m = scan_metrics(&plan);
    assert_eq!((m.scans, m.frames_read, m.bytes_read), (1, 60, 60 * 32 * 32 * 2));
    assert_eq!(batches[0].num_columns(), 6);
    let masks16 = tessera::udf::Results::from_struct(batches[0].column(4).as_struct(), 0).unwrap();
    assert_eq!(masks16.buffers["intensity"].shape(), &[12, 10, 16]);
}

#[tokio::test]
async fn bad_parameters_are_planning_errors_that_name_them() {
    let c = ctx(2);
    c.register_spec("scan", DatasetSpec::parse("synthetic,nav=4x4,sig=16x16,dtype=uint16").unwrap()).unwrap();
    let dir = crate::common::tempdir();
    let wrong = dir.path().join("wrong.npy");
    tessera::dataset::formats::npy::write_npy(&wrong, tessera::dataset::DType::U8, &[8, 8], &[1u8; 64]).unwrap();
    let cases = [
        (
            format!("SELECT udf_apply_masks(tile, masks('npy({})')) FROM scan", wrong.display()),
            "holds masks of shape [8, 8], the frames are 16x16",
        ),
        ("SELECT udf_apply_masks(tile, masks('disk(8, 8, -2)')) FROM scan".into(), "radius must be >= 0"),
        ("SELECT udf_apply_masks(tile, masks('ring(8, 8, 4)')) FROM scan".into(), "ring takes 4 numbers"),
        ("SELECT udf_apply_masks(tile, masks('blob(1)')) FROM scan".into(), "unknown mask kind 'blob'"),
        ("SELECT udf_apply_masks(tile, masks('disk(8, 8, x)')) FROM scan".into(), "'x' is not a number"),
        ("SELECT udf_apply_masks(tile) FROM scan".into(), "needs masks"),
        ("SELECT udf_com(tile, r => -1) FROM scan".into(), "r (-1) and ri (0) must be >= 0"),
        ("SELECT udf_com(tile, ri => 5, r => 3) FROM scan".into(), "ri (5) must be smaller than r (3)"),
        ("SELECT udf_com(tile, radius => 3) FROM scan".into(), "Unknown parameter name 'radius'"),
        ("SELECT udf_com(tile, regression => 7) FROM scan".into(), "regression must be -1, 0 or 1"),
        ("SELECT udf_com(tile, flip_y => 'yes') FROM scan".into(), "flip_y must be true or false"),
        ("SELECT udf_com(tile, cy => nav_y) FROM scan".into(), "parameter cy must be a constant"),
        ("SELECT udf_com(tile, 1, 2, 3, 0, 0, false, 0, 9) FROM scan".into(), "takes 7 parameter(s) after the tile"),
        ("SELECT udf_sum(tile, 3) FROM scan".into(), "takes 0 parameter(s)"),
        ("SELECT udf_stddev() FROM scan".into(), "udf_stddev takes a tile column"),
    ];
    for (q, want) in cases {
        let msg = err(&c, &q).await;
        assert!(msg.contains(want), "{q}\n  got: {msg}\n  want: {want}");
    }
}

/// udf_fem, udf_crystallinity and udf_radial_fourier against an independent numpy computation
/// (scripts/check_udfs.py, in the project's Python venv), with a ROI and 3 partitions, on odd frames.
#[tokio::test]
async fn fem_crystallinity_radial_fourier_match_numpy() {
    use tessera::dataset::DType;
    use tessera::dataset::formats::npy::write_npy;
    use tessera::export::{FileFormats, write_results};
    let dir = crate::common::tempdir();
    let c = ctx(3);
    c.register_spec("scan", DatasetSpec::parse("synthetic,nav=5x6,sig=24x21,dtype=float32,seed=11").unwrap()).unwrap();
    // the input as .npy, through a pick of every frame
    let b = c.sql("SELECT tile FROM scan ORDER BY nav_index").await.unwrap().collect().await.unwrap();
    let mut bytes = Vec::new();
    for batch in &b {
        let v = batch.column(0).as_fixed_size_list().values().clone();
        bytes.extend(v.as_primitive::<arrow::datatypes::Float32Type>().values().iter().flat_map(|x| x.to_le_bytes()));
    }
    write_npy(&dir.path().join("data.npy"), DType::F32, &[5, 6, 24, 21], &bytes).unwrap();
    let roi: Vec<u8> = (0..30).map(|i| u8::from(i % 4 != 1)).collect();
    write_npy(&dir.path().join("roi.npy"), DType::U8, &[5, 6], &roi).unwrap();
    let params = serde_json::json!({
        "fem": {"cy": 11.0, "cx": 10.0, "ri": 3.0, "ro": 9.0},
        "cryst": {"ri": 1.5, "ro": 7.0, "real_cy": 12.0, "real_cx": 10.0, "real_r": 3.0},
        "rf": {"cy": 11.5, "cx": 10.0, "ri": 1.0, "ro": 10.0, "n_bins": 3, "max_order": 5},
    });
    std::fs::write(dir.path().join("params.json"), params.to_string()).unwrap();
    let q = "SELECT udf_fem(tile, cy => 11, cx => 10, ri => 3, ro => 9) AS fem, \
             udf_crystallinity(tile, ri => 1.5, ro => 7, real_cy => 12, real_cx => 10, real_r => 3) AS cryst, \
             udf_radial_fourier(tile, cy => 11.5, cx => 10, ri => 1, ro => 10, n_bins => 3, max_order => 5) AS rf \
             FROM scan WHERE nav_index % 4 <> 1";
    let batches = c.sql(q).await.unwrap().collect().await.unwrap();
    write_results(&batches, dir.path(), FileFormats { npy: true, png: false }).unwrap();
    let Some(py) = crate::export::python() else { return };
    let script = format!("{}/scripts/check_udfs.py", env!("CARGO_MANIFEST_DIR"));
    let o = std::process::Command::new(py).arg(script).arg(dir.path()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    for name in ["fem.intensity", "cryst.intensity", "rf.real", "rf.imag", "rf.absolute"] {
        assert!(text.contains(&format!("OK {name}")), "{text}");
    }
}

/// A UDF that fails unless every hook runs at the right time with the right views.
#[derive(Clone, Debug, Default)]
struct Probe {
    task: Option<usize>,
    preprocessed: bool,
    postprocessed: bool,
    frames: usize,
}

impl tessera::udf::Udf for Probe {
    fn name(&self) -> &str {
        "udf_probe"
    }
    fn params(&self) -> &'static [&'static str] {
        &["weight"]
    }
    fn configure(&self, _meta: &tessera::udf::Meta, _args: &tessera::udf::Args) -> tessera::Result<Self> {
        Ok(self.clone())
    }
    fn input_dtype(&self, _native: tessera::dataset::DType) -> Option<tessera::dataset::DType> {
        Some(tessera::dataset::DType::F32)
    }
    fn tile_depth(&self) -> Option<usize> {
        Some(2)
    }
    fn buffers(&self, meta: &tessera::udf::Meta) -> tessera::Result<tessera::udf::Buffers> {
        use tessera::dataset::DType;
        assert_eq!(meta.input_dtype, DType::F32, "meta shows the requested input dtype");
        Ok(tessera::udf::Buffers::new()
            .sig("acc", DType::F64)
            .nav("w", DType::F64)
            .nav("secret", DType::I64)
            .private()
            .single("starts", &[1], DType::I64)
            .single("posts", &[1], DType::I64)
            .nav("double", DType::F64)
            .result_only())
    }
    fn task_data(&mut self, meta: &tessera::udf::Meta) -> tessera::Result<()> {
        assert!(!self.preprocessed, "task data comes before preprocess");
        self.task = Some(meta.sig.size());
        Ok(())
    }
    fn preprocess(&mut self, _meta: &tessera::udf::Meta, out: &mut tessera::udf::Views<'_>) -> tessera::Result<()> {
        assert!(self.task.is_some(), "task data before preprocess");
        assert_eq!(out.frames(), 0, "preprocess sees no frames yet");
        assert!(out.sig("acc").iter().all(|v| *v == 0.0));
        assert!(!out.has("double"), "result-only buffers are not processed");
        out.single("starts")[0] += 1.0;
        self.preprocessed = true;
        Ok(())
    }
    fn process_tile<T: tessera::dataset::Pixel>(
        &mut self,
        tile: &tessera::udf::Tile<'_, T>,
        out: &mut tessera::udf::Views<'_>,
    ) -> tessera::Result<()> {
        assert!(self.preprocessed && !self.postprocessed, "process between preprocess and postprocess");
        assert_eq!(T::DTYPE, tessera::dataset::DType::F32, "tiles converted to the requested dtype");
        assert!(tile.n_frames() <= 2, "tile depth preference");
        assert_eq!(out.frames(), tile.n_frames());
        let weight = tile.aux_f64("weight")?.expect("aux data");
        for (i, (&nav, &w)) in tile.nav_index().iter().zip(&weight).enumerate() {
            assert_eq!(w, 2.0 * nav as f64, "aux data row matches its frame");
            out.nav("w")[i] = w;
            out.nav("secret")[i] = nav as f64;
        }
        tile.sum_frames_into(out.sig("acc"));
        self.frames += tile.n_frames();
        Ok(())
    }
    fn postprocess(&mut self, _meta: &tessera::udf::Meta, out: &mut tessera::udf::Views<'_>) -> tessera::Result<()> {
        assert!(self.preprocessed && !self.postprocessed, "postprocess once, after preprocess");
        assert_eq!(out.frames(), self.frames, "postprocess sees every frame of the partition");
        let secret = out.nav("secret").to_vec();
        assert!(out.nav("w").iter().zip(&secret).all(|(w, s)| *w == 2.0 * s));
        out.single("posts")[0] += 1.0;
        self.postprocessed = true;
        Ok(())
    }
    fn merge(&self, dest: &mut tessera::udf::Views<'_>, src: &mut tessera::udf::Views<'_>) -> tessera::Result<()> {
        if src.single("posts")[0] != 1.0 || src.single("starts")[0] != 1.0 {
            return Err(tessera::Error::udf(
                "udf_probe",
                "merged a partition that was not pre- and postprocessed once",
            ));
        }
        for name in ["starts", "posts"] {
            let v = src.single(name)[0];
            dest.single(name)[0] += v;
        }
        let acc = src.sig("acc").to_vec();
        for (d, s) in dest.sig("acc").iter_mut().zip(acc) {
            *d += s;
        }
        Ok(())
    }
    fn get_results(&self, _meta: &tessera::udf::Meta, bufs: &mut tessera::udf::Views<'_>) -> tessera::Result<()> {
        let valid = bufs.valid().expect("valid mask in get_results").to_vec();
        let w = bufs.nav("w").to_vec();
        for (i, d) in bufs.nav("double").iter_mut().enumerate() {
            *d = if valid[i] { 2.0 * w[i] } else { 0.0 };
        }
        Ok(())
    }
}

#[tokio::test]
async fn lifecycle_hooks_aux_data_private_and_result_only_buffers() {
    for partitions in [1, 3] {
        let mut session = datafusion::prelude::SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_target_partitions(partitions),
        );
        tessera::register(&mut session).unwrap();
        session.register_udaf(tessera::udf::aggregate(Probe::default()));
        let ds =
            tessera::dataset::open(&DatasetSpec::parse("synthetic,nav=5x7,sig=8x8,dtype=uint16").unwrap()).unwrap();
        session
            .register_table("scan", Arc::new(tessera::scan::TileTable::new("scan", ds).with_batch_bytes(8 * 8 * 2 * 5)))
            .unwrap();
        let b = session
            .sql("SELECT udf_probe(tile, weight => nav_index * 2) AS p, udf_sum(tile) AS s FROM scan WHERE nav_x <> 3")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let p = tessera::udf::Results::from_struct(b[0].column(0).as_struct(), 0).unwrap();
        let s = tessera::udf::Results::from_struct(b[0].column(1).as_struct(), 0).unwrap();
        assert!(!p.buffers.contains_key("secret"), "private buffers are not returned");
        let valid = p.valid.clone().unwrap();
        let w = p.buffers["w"].to_f64();
        let double = p.buffers["double"].to_f64();
        for (i, ok) in valid.iter().enumerate() {
            assert_eq!(*ok, i % 7 != 3);
            if *ok {
                assert_eq!(w.as_slice().unwrap()[i], 2.0 * i as f64);
                assert_eq!(double.as_slice().unwrap()[i], 4.0 * i as f64);
            }
        }
        assert_eq!(p.buffers["acc"].to_f64(), s.buffers["intensity"].to_f64(), "p{partitions}");
        let starts = p.buffers["starts"].to_f64()[[0]];
        assert_eq!(starts, p.buffers["posts"].to_f64()[[0]]);
        assert!(starts >= 1.0 && starts <= partitions as f64, "one start per partition: {starts}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_stops_reading_promptly() {
    let c = ctx(2);
    c.register_spec("big", DatasetSpec::parse("synthetic,nav=512x512,sig=32x32,dtype=float32").unwrap()).unwrap();
    // execute on a runtime of its own, as the CLI does, so that this test's timers keep running
    let exec = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let running = c.start("SELECT udf_sum(tile) FROM big", Some(exec.handle())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = running.progress();
    assert!(before.frames_read > 0 && before.frames_read < before.frames_total, "{before:?}");
    assert_eq!(before.frames_total, 512 * 512);
    running.cancel();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let settled = running.progress();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = running.progress();
    assert_eq!(settled.frames_read, after.frames_read, "reading goes on after cancel");
    assert!(after.frames_read < before.frames_total / 4, "{after:?}");
    assert!(matches!(running.finish().await, Err(tessera::Error::Cancelled)));
    exec.shutdown_background();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_partial_results_grow_to_the_full_result() {
    use futures::StreamExt;
    use tessera::udf::builtin::{StdDev, SumSig};
    let c = ctx(3);
    c.register_spec("scan", DatasetSpec::parse("synthetic,nav=9x8,sig=16x16,dtype=uint16").unwrap()).unwrap();
    let roi = tessera::geometry::Roi::from_bools((0..72).map(|i| i % 5 != 0));
    let full = c.run_udf("scan", SumSig, Some(&roi)).await.unwrap();
    let items: Vec<_> = c.run_udf_live("scan", SumSig, Some(&roi)).await.unwrap().collect().await;
    assert_eq!(items.len(), 3, "one merged result per finished partition");
    let mut seen = 0;
    for item in &items {
        let r = item.as_ref().unwrap();
        let n = r.valid.as_ref().unwrap().iter().filter(|v| **v).count();
        assert!(n > seen, "partial results grow");
        seen = n;
        // every valid frame already has its final value
        let (a, b) = (r.buffers["intensity"].to_f64(), full.buffers["intensity"].to_f64());
        for (i, ok) in r.valid.as_ref().unwrap().iter().enumerate() {
            if *ok {
                assert_eq!(a.as_slice().unwrap()[i], b.as_slice().unwrap()[i]);
            }
        }
    }
    assert_eq!(seen, roi.count());
    let last = items.last().unwrap().as_ref().unwrap();
    assert_eq!(last.valid, full.valid);
    let std_full = c.run_udf("scan", StdDev, None).await.unwrap();
    let live: Vec<_> = c.run_udf_live("scan", StdDev, None).await.unwrap().collect().await;
    let last = live.last().unwrap().as_ref().unwrap();
    let (a, b) = (last.buffers["std"].to_f64(), std_full.buffers["std"].to_f64());
    assert!(a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() <= 1e-9 * y.abs().max(1.0)));
}

#[test]
fn cli_shows_a_progress_bar_on_long_runs() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["sql", "-t", "s=synthetic,nav=96x96,sig=64x64,dtype=float32", "SELECT udf_sum(tile) FROM s"])
        .env("TESSERA_PROGRESS", "always")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("frames in") && err.contains("% ") && err.contains("/9216 frames"), "{err}");
}

#[test]
fn cli_repeat_runs_the_query_again_and_times_each_run() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["sql", "--timing", "--repeat", "3", "-t", "s=synthetic,nav=8x8,sig=16x16,dtype=uint16"])
        .arg("SELECT udf_sum_sig(tile) FROM s")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    let times: Vec<f64> =
        err.lines().filter_map(|l| l.strip_prefix("query_seconds ")).map(|t| t.parse().unwrap()).collect();
    assert_eq!(times.len(), 3, "one time per run: {err}");
    assert!(times.iter().all(|&t| t > 0.0 && t < 60.0), "{times:?}");
    // the result is printed once, not once per run
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("udf_sum_sig").count(), 1, "{stdout}");
}

#[tokio::test]
async fn map_turns_a_closure_into_a_nav_result() {
    use tessera::udf::{Map, aggregate, map};
    let c = ctx(3);
    c.register_spec("scan", DatasetSpec::parse("synthetic,nav=4x6,sig=8x8,dtype=uint16").unwrap()).unwrap();
    let brightest = map("brightest", |f| f.iter().cloned().fold(f64::MIN, f64::max));
    let roi = tessera::geometry::Roi::from_bools((0..24).map(|i| i >= 6));
    let r = c.run_udf("scan", brightest, Some(&roi)).await.unwrap();
    let got = r.buffers["result"].to_f64();
    // the same from SQL with a user UDF registered on the session, and picked frames
    let corners = Map::new("udf_corners", &[2], |f, out| {
        out[0] = f[[0, 0]];
        out[1] = f[[7, 7]];
    });
    c.session().register_udaf(aggregate(corners));
    let b = c.sql("SELECT nav_index, tile FROM scan ORDER BY nav_index").await.unwrap().collect().await.unwrap();
    let s = c.sql("SELECT udf_corners(tile) FROM scan").await.unwrap().collect().await.unwrap();
    let corners = tessera::udf::Results::from_struct(s[0].column(0).as_struct(), 0).unwrap().buffers["result"].to_f64();
    assert_eq!(corners.shape(), &[4, 6, 2]);
    let mut i = 0;
    for batch in &b {
        let tiles = batch.column(1).as_fixed_size_list();
        for row in 0..batch.num_rows() {
            let px = tiles.value(row);
            let px = px.as_primitive::<arrow::datatypes::UInt16Type>();
            let max = px.values().iter().copied().max().unwrap() as f64;
            let (y, x) = (i / 6, i % 6);
            if i >= 6 {
                assert_eq!(got[[y, x]], max);
            } else {
                assert!(got[[y, x]].is_nan());
            }
            assert_eq!(corners[[y, x, 0]], px.value(0) as f64);
            assert_eq!(corners[[y, x, 1]], px.value(63) as f64);
            i += 1;
        }
    }
    assert_eq!(i, 24);
}

/// Sums frames tile by tile with a 5x7 tile shape; counts how often each pixel was covered.
#[derive(Clone, Debug, Default)]
struct TiledSum;

impl tessera::udf::Udf for TiledSum {
    fn name(&self) -> &str {
        "udf_tiled_sum"
    }
    fn tile_shape(&self, _meta: &tessera::udf::Meta) -> Option<[usize; 2]> {
        Some([5, 7])
    }
    fn buffers(&self, _meta: &tessera::udf::Meta) -> tessera::Result<tessera::udf::Buffers> {
        use tessera::dataset::DType;
        Ok(tessera::udf::Buffers::new().sig("sum", DType::F64).sig("covered", DType::F64))
    }
    fn process_tile<T: tessera::dataset::Pixel>(
        &mut self,
        tile: &tessera::udf::Tile<'_, T>,
        out: &mut tessera::udf::Views<'_>,
    ) -> tessera::Result<()> {
        let s = tile.slice().expect("a tile shape was asked for");
        let view = tile.view3();
        assert_eq!(view.shape()[1..], [s.h, s.w]);
        assert!(s.h <= 5 && s.w <= 7);
        let mut sum = out.sig_tile("sum");
        for frame in view.outer_iter() {
            for ((y, x), v) in frame.indexed_iter() {
                sum[[y, x]] += v.to_f64();
            }
        }
        let frames = tile.n_frames() as f64;
        out.sig_tile("covered").iter_mut().for_each(|c| *c += frames);
        Ok(())
    }
}

#[tokio::test]
async fn tile_shape_preferences_cut_frames_into_views() {
    let c = ctx(2).with_batch_bytes(16 * 12 * 2 * 3);
    c.register_spec("scan", DatasetSpec::parse("synthetic,nav=5x5,sig=16x12,dtype=uint16").unwrap()).unwrap();
    c.session().register_udaf(tessera::udf::aggregate(TiledSum));
    let b = c
        .sql("SELECT udf_tiled_sum(tile) AS t, udf_sum(tile) AS s FROM scan WHERE nav_y > 0")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let t = tessera::udf::Results::from_struct(b[0].column(0).as_struct(), 0).unwrap();
    let s = tessera::udf::Results::from_struct(b[0].column(1).as_struct(), 0).unwrap();
    assert_eq!(t.buffers["sum"].to_f64(), s.buffers["intensity"].to_f64());
    assert!(t.buffers["covered"].to_f64().iter().all(|&c| c == 20.0), "every pixel of every frame exactly once");
}

#[tokio::test]
async fn pick_api_and_shifted_masks_with_aux_data() {
    use tessera::udf::builtin::ApplyMasks;
    use tessera::udf::masks::{MaskSpec, MaskStack};
    let c = ctx(2);
    let ds = c.register_spec("scan", DatasetSpec::parse("synthetic,nav=3x4,sig=10x9,dtype=uint16").unwrap()).unwrap();
    let frames = c.pick("scan", None).await.unwrap();
    assert_eq!(frames.shape(), &[12, 10, 9]);
    assert_eq!(frames.dtype(), tessera::dataset::DType::U16);
    let one = c.pick("scan", Some(&tessera::geometry::Roi::from_bools((0..12).map(|i| i == 7)))).await.unwrap();
    assert_eq!(one.to_f64().as_slice().unwrap(), &frames.to_f64().as_slice().unwrap()[7 * 90..8 * 90]);
    // per-frame shifts (dy, dx) = (f % 3 - 1, 2 - f % 4) move a point mask at (4, 4)
    let shifts: Vec<f64> = (0..12).flat_map(|f| [(f % 3) as f64 - 1.0, 2.0 - (f % 4) as f64]).collect();
    c.register_aux("shifts", shifts.clone(), 2);
    let b = c
        .sql("SELECT udf_apply_masks(tile, masks('point(4, 4)', 'disk(4, 4, 2)'), shifts => aux('shifts', nav_index)) AS m FROM scan")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let m = tessera::udf::Results::from_struct(b[0].column(0).as_struct(), 0).unwrap().buffers["intensity"].to_f64();
    let all = frames.to_f64();
    for f in 0..12 {
        let (y, x) = ((4.0 + shifts[2 * f]) as usize, (4.0 + shifts[2 * f + 1]) as usize);
        assert_eq!(m.as_slice().unwrap()[f * 2], all[[f, y, x]], "frame {f}");
    }
    // zero shifts from an .npy equal no shifts (Rust API with a mask stack)
    let dir = crate::common::tempdir();
    let zeros = dir.path().join("zeros.npy");
    tessera::dataset::formats::npy::write_npy(&zeros, tessera::dataset::DType::F64, &[3, 4, 2], &[0u8; 3 * 4 * 2 * 8])
        .unwrap();
    let q = format!(
        "SELECT udf_apply_masks(tile, masks('ring(4, 4, 1, 3)'), shifts => aux('{}', nav_index)) AS a, udf_apply_masks(tile, masks('ring(4, 4, 1, 3)')) AS b FROM scan",
        zeros.display()
    );
    let b = c.sql(&q).await.unwrap().collect().await.unwrap();
    let a = tessera::udf::Results::from_struct(b[0].column(0).as_struct(), 0).unwrap();
    let n = tessera::udf::Results::from_struct(b[0].column(1).as_struct(), 0).unwrap();
    assert_eq!(a.buffers["intensity"].to_f64(), n.buffers["intensity"].to_f64());
    let stack = MaskStack::build(&[MaskSpec::parse("ring(4, 4, 1, 3)").unwrap()], &ds.geometry().sig).unwrap();
    let api = c.run_udf("scan", ApplyMasks::new(stack), None).await.unwrap();
    assert_eq!(api.buffers["intensity"].to_f64(), n.buffers["intensity"].to_f64());
    let msg = err(&c, "SELECT udf_sum(tile) FROM scan WHERE aux('nope', nav_index) > 0").await;
    assert!(msg.contains("no array named 'nope'"), "{msg}");
}

/// `data` as a raw little-endian uint16 file of `shape` ("nav=..,sig=.."), registered as `scan` in
/// a context of `partitions` partitions; the directory lives as long as the returned guard.
fn u16_scan(data: &[u16], shape: &str, partitions: usize) -> (tempfile::TempDir, tessera::Context) {
    let dir = crate::common::tempdir();
    let path = dir.path().join("counts.raw");
    std::fs::write(&path, data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let c = ctx(partitions);
    let spec = format!("{},format=raw,{shape},dtype=uint16", path.display());
    c.register_spec("scan", DatasetSpec::parse(&spec).unwrap()).unwrap();
    (dir, c)
}

/// 8/16-bit sums and variances run in u32 lanes over chunks of 32 768 pixels and fall back to f64
/// per chunk where the counts could wrap: frames of two chunks, small counts in the first and counts up
/// to 65 000 in the second, must give the exact sums and variances of a direct f64 computation.
#[tokio::test]
async fn stddev_and_sum_are_exact_across_u32_chunks_and_the_f64_fallback() {
    let (frames, sig) = (13usize, 256 * 192); // 49 152 pixels: a whole chunk and part of another
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u16> = (0..frames * sig)
        .map(|i| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let r = (x >> 33) as u16;
            if i % sig < 32768 { r % 200 } else { r % 65000 }
        })
        .collect();
    let (_dir, c) = u16_scan(&data, &format!("nav=1x{frames},sig=256x192"), 2);
    let b = c.sql("SELECT udf_sum(tile), udf_stddev(tile) FROM scan").await.unwrap().collect().await.unwrap();
    let get = |col: usize, name: &str| {
        let r = tessera::udf::Results::from_struct(b[0].column(col).as_struct(), 0).unwrap();
        r.buffers[name].to_f64().iter().copied().collect::<Vec<f64>>()
    };
    let (sum, sd_sum, var) = (get(0, "intensity"), get(1, "sum"), get(1, "var"));
    for p in 0..sig {
        let xs: Vec<f64> = (0..frames).map(|f| data[f * sig + p] as f64).collect();
        let s: f64 = xs.iter().sum();
        let mean = s / frames as f64;
        let v = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / frames as f64;
        assert_eq!(sum[p], s, "udf_sum pixel {p}");
        assert_eq!(sd_sum[p], s, "udf_stddev sum pixel {p}");
        assert!((var[p] - v).abs() <= 1e-9 * v.max(1.0), "var pixel {p}: {} vs {v}", var[p]);
    }
}

/// udf_sum keeps u32 sums of 16-bit frames across batches: more than 65 536 frames of 65 535 in one
/// partition overflow u32 unless they are added to the f64 result in time.
#[tokio::test]
async fn sum_of_16_bit_counts_beyond_u32_in_one_partition() {
    let (frames, sig) = (70_000usize, 4usize);
    let data: Vec<u16> = (0..frames * sig).map(|i| if i % sig == 0 { 65535 } else { (i % 1000) as u16 }).collect();
    let (_dir, c) = u16_scan(&data, "nav=280x250,sig=2x2", 1);
    let b = c.sql("SELECT udf_sum(tile) FROM scan").await.unwrap().collect().await.unwrap();
    let r = tessera::udf::Results::from_struct(b[0].column(0).as_struct(), 0).unwrap();
    let got: Vec<f64> = r.buffers["intensity"].to_f64().iter().copied().collect();
    let want: Vec<f64> = (0..sig).map(|p| (0..frames).map(|f| data[f * sig + p] as f64).sum()).collect();
    assert!(want[0] > u32::MAX as f64);
    // the result has dtype result_type(uint16, float32): the exact sums, rounded once to float32
    assert_eq!(got, want.iter().map(|&w| w as f32 as f64).collect::<Vec<_>>());
}

/// Writes down, for every frame, how many frames its `process_tile` call got.
#[derive(Clone, Debug, Default)]
struct Depth;

impl tessera::udf::Udf for Depth {
    fn name(&self) -> &str {
        "udf_depth"
    }
    fn buffers(&self, _meta: &tessera::udf::Meta) -> tessera::Result<tessera::udf::Buffers> {
        Ok(tessera::udf::Buffers::new().nav("depth", tessera::dataset::DType::F64))
    }
    fn process_tile<T: tessera::dataset::Pixel>(
        &mut self,
        tile: &tessera::udf::Tile<'_, T>,
        out: &mut tessera::udf::Views<'_>,
    ) -> tessera::Result<()> {
        out.nav("depth").fill(tile.n_frames() as f64);
        Ok(())
    }
}

/// Frames mapped in place are scanned in batches of `MAPPED_BATCH_BYTES`, copied ones (`io=pread`)
/// in `DEFAULT_BATCH_BYTES`, and a size the user sets wins over both; whatever the batches, a UDF
/// gets at most `STACK_BYTES` of frames per `process_tile` call.
#[tokio::test]
async fn batch_size_follows_the_read_path_and_tiles_stay_cache_sized() {
    use tessera::scan::{DEFAULT_BATCH_BYTES, MAPPED_BATCH_BYTES};
    use tessera::udf::STACK_BYTES;
    let (frames, frame_bytes) = (200usize, 256 * 256 * 2);
    let data: Vec<u16> = (0..frames * 256 * 256).map(|i| (i % 7) as u16).collect();
    let (dir, _) = u16_scan(&data, "nav=10x20,sig=256x256", 1);
    let path = dir.path().join("counts.raw");
    for (io, set, batch) in [
        ("", None, MAPPED_BATCH_BYTES),
        (",io=mmap", None, MAPPED_BATCH_BYTES),
        (",io=pread", None, DEFAULT_BATCH_BYTES),
        ("", Some(3 * frame_bytes), 3 * frame_bytes),
    ] {
        let c = match set {
            Some(bytes) => ctx(1).with_batch_bytes(bytes),
            None => ctx(1),
        };
        c.session().register_udaf(tessera::udf::aggregate(Depth));
        let spec = format!("{},format=raw,nav=10x20,sig=256x256,dtype=uint16{io}", path.display());
        c.register_spec("scan", DatasetSpec::parse(&spec).unwrap()).unwrap();
        let plan = c.sql("EXPLAIN SELECT udf_depth(tile) FROM scan").await.unwrap().collect().await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&plan).unwrap().to_string();
        let want = format!("batch_frames={},", batch / frame_bytes);
        assert!(text.contains(&want), "io '{io}', set {set:?}: expected {want} in\n{text}");

        let b = c.sql("SELECT udf_depth(tile) FROM scan").await.unwrap().collect().await.unwrap();
        let r = tessera::udf::Results::from_struct(b[0].column(0).as_struct(), 0).unwrap();
        let depth = r.buffers["depth"].to_f64();
        let most = depth.iter().fold(0f64, |a, &d| a.max(d)) as usize;
        assert_eq!(most, (batch / frame_bytes).min(STACK_BYTES / frame_bytes), "io '{io}', set {set:?}");
        assert!(depth.iter().all(|&d| d >= 1.0), "every frame processed");
    }
}
