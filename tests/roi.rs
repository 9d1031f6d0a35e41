//! ROI pushdown: bytes read ∝ selected frames, empty ROIs, one pass for several UDFs, predicates that
//! are not pushed down, semi-joins, GROUP BY / FILTER / DISTINCT, pick.

use crate::common::{ctx, tempdir};
use arrow::array::AsArray;
use arrow::datatypes::Float32Type;
use datafusion::physical_plan::collect;
use std::sync::Arc;
use tessera::Context;
use tessera::dataset::DatasetSpec;
use tessera::geometry::Roi;
use tessera::scan::{ScanMetrics, scan_metrics};
use tessera::udf::Results;

const NY: usize = 16;
const NX: usize = 16;
const SIG: usize = 8 * 8;

/// A 16x16 scan of 8x8 float32 frames where pixel p of frame f is f + p/100.
fn raw_scan(c: &Context, dir: &std::path::Path, extra: &str) {
    let mut bytes = Vec::new();
    for f in 0..NY * NX {
        for p in 0..SIG {
            bytes.extend_from_slice(&((f as f32) + p as f32 / 100.0).to_le_bytes());
        }
    }
    let path = dir.join("scan.raw");
    std::fs::write(&path, bytes).unwrap();
    let spec = format!("{},format=raw,nav=16x16,sig=8x8,dtype=float32{extra}", path.display());
    c.register_spec("scan", DatasetSpec::parse(&spec).unwrap()).unwrap();
}

async fn run(c: &Context, query: &str) -> (Vec<arrow::record_batch::RecordBatch>, ScanMetrics) {
    let df = c.sql(query).await.unwrap();
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await.unwrap();
    let batches = collect(plan.clone(), task).await.unwrap();
    (batches, scan_metrics(&plan))
}

/// Equality of results with NaN == NaN.
fn same(a: &Results, b: &Results) -> bool {
    a.valid == b.valid
        && a.buffers.len() == b.buffers.len()
        && a.buffers.iter().all(|(k, v)| {
            b.buffers.get(k).is_some_and(|w| {
                v.dtype() == w.dtype()
                    && v.shape() == w.shape()
                    && v.to_f64().iter().zip(w.to_f64().iter()).all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
            })
        })
}

fn results(batches: &[arrow::record_batch::RecordBatch], col: usize) -> Results {
    Results::from_struct(batches[0].column(col).as_struct(), 0).unwrap()
}

#[tokio::test]
async fn bytes_read_follow_the_roi() {
    let dir = tempdir();
    for io in ["", ",io=pread"] {
        for partitions in [1, 3] {
            let c = ctx(partitions);
            raw_scan(&c, dir.path(), io);
            let mut mask = Roi::none(NY * NX);
            for i in (0..NY * NX).step_by(5) {
                mask.set(i, true);
            }
            c.register_mask("every5", mask);
            let cases: &[(&str, usize)] = &[
                ("", 256),
                ("WHERE nav_y BETWEEN 4 AND 11", 128),
                ("WHERE nav_y >= 4 AND nav_y < 12 AND nav_x >= 4 AND nav_x < 12", 64),
                ("WHERE (nav_y - 8) * (nav_y - 8) + (nav_x - 8) * (nav_x - 8) <= 9", 29),
                ("WHERE nav_x IN (1, 3, 5)", 48),
                ("WHERE nav_index % 2 = 0", 128),
                ("WHERE nav_index = 37", 1),
                ("WHERE roi_mask('every5', nav_index)", 52),
                ("WHERE roi_mask('every5', nav_index) AND nav_y < 8", 26),
                ("WHERE nav_y > 100", 0),
            ];
            for (filter, frames) in cases {
                let (batches, m) =
                    run(&c, &format!("SELECT udf_sum(tile), udf_sum_sig(tile) FROM scan {filter}")).await;
                assert_eq!(m.scans, 1);
                assert_eq!(m.frames_read, *frames, "{filter} io{io} p{partitions}");
                assert_eq!(m.bytes_read, frames * SIG * 4, "{filter}");
                let r = results(&batches, 1);
                let valid = r.valid.unwrap();
                assert_eq!(valid.iter().filter(|v| **v).count(), *frames, "{filter}");
                // frame f sums to 64 f + Σp/100
                let sums = r.buffers["intensity"].to_f64();
                for (f, (&s, &v)) in sums.iter().zip(valid.iter()).enumerate() {
                    if v {
                        let want: f32 = (0..SIG).map(|p| f as f32 + p as f32 / 100.0).sum();
                        assert!((s - want as f64).abs() < 1e-2, "frame {f}: {s} vs {want}");
                    } else {
                        assert!(s.is_nan());
                    }
                }
            }
        }
    }
}

/// The partitions of an execution take batches from one list (DataFusion's work stealing option,
/// on by default): each frame is read once, also when the plan is executed again, and the results
/// are those of partitions that read their own frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_share_batches_and_read_each_frame_once() {
    let dir = tempdir();
    let c = ctx(4);
    raw_scan(&c, dir.path(), "");
    let query = "SELECT udf_sum(tile), udf_sum_sig(tile) FROM scan WHERE nav_y BETWEEN 3 AND 12";
    let explain = |c: &Context| {
        let c = c.clone();
        async move {
            let batches = c.sql(&format!("EXPLAIN {query}")).await.unwrap().collect().await.unwrap();
            arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string()
        }
    };
    assert!(explain(&c).await.contains("shared"));
    let df = c.sql(query).await.unwrap();
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await.unwrap();
    let shared = collect(plan.clone(), task.clone()).await.unwrap();
    assert_eq!(scan_metrics(&plan).frames_read, 160);
    // the same plan executed again, in the same task context: every frame again
    let again = collect(plan.clone(), task).await.unwrap();
    assert_eq!(scan_metrics(&plan).frames_read, 320);
    c.sql("SET datafusion.execution.enable_file_stream_work_stealing = false").await.unwrap();
    assert!(!explain(&c).await.contains("shared"));
    let (own, m) = run(&c, query).await;
    assert_eq!(m.frames_read, 160);
    for col in [0, 1] {
        let (a, b, o) = (results(&shared, col), results(&again, col), results(&own, col));
        assert_eq!(a.valid, o.valid);
        for (k, v) in &a.buffers {
            let (v, w, x) = (v.to_f64(), b.buffers[k].to_f64(), o.buffers[k].to_f64());
            for ((v, w), x) in v.iter().zip(w.iter()).zip(x.iter()) {
                // float sums over frames may differ in their last bits (which partition added what)
                assert!((v - x).abs() <= 1e-12 * x.abs() || (v.is_nan() && x.is_nan()), "{k}: {v} vs {x}");
                assert!((w - x).abs() <= 1e-12 * x.abs() || (w.is_nan() && x.is_nan()), "{k}: {w} vs {x}");
            }
        }
    }
}

#[tokio::test]
async fn empty_roi_gives_full_shape_nan_results() {
    let dir = tempdir();
    let c = ctx(2);
    raw_scan(&c, dir.path(), "");
    let (batches, m) = run(&c, "SELECT udf_sum(tile), udf_sum_sig(tile) FROM scan WHERE nav_y < 0").await;
    assert_eq!(m.bytes_read, 0);
    let sum = results(&batches, 0);
    assert_eq!(sum.buffers["intensity"].shape(), &[8, 8]);
    assert!(sum.buffers["intensity"].to_f64().iter().all(|&v| v == 0.0));
    let sig = results(&batches, 1);
    assert_eq!(sig.buffers["intensity"].shape(), &[16, 16]);
    assert!(sig.buffers["intensity"].to_f64().iter().all(|v| v.is_nan()));
    assert!(sig.valid.unwrap().iter().all(|v| !v));
}

#[tokio::test]
async fn several_udfs_read_the_data_once() {
    let dir = tempdir();
    let c = ctx(2);
    raw_scan(&c, dir.path(), "");
    let (batches, m) =
        run(&c, "SELECT udf_sum(tile) AS a, udf_sum_sig(tile) AS b, udf_sum(tile) AS c FROM scan WHERE nav_x < 8")
            .await;
    assert_eq!((m.scans, m.frames_read, m.bytes_read), (1, 128, 128 * SIG * 4));
    assert!(same(&results(&batches, 0), &results(&batches, 2)));
}

#[tokio::test]
async fn non_nav_predicates_and_semi_joins_stay_correct() {
    let dir = tempdir();
    let c = ctx(3);
    raw_scan(&c, dir.path(), "");
    let (want, _) = run(&c, "SELECT udf_sum_sig(tile), udf_sum(tile) FROM scan WHERE nav_y < 8").await;
    let (got, m) = run(&c, "SELECT udf_sum_sig(tile), udf_sum(tile) FROM scan WHERE nav_y < 8 AND tile[1] >= 0").await;
    assert_eq!(m.frames_read, 128, "the nav part is still pushed down");
    assert!(same(&results(&got, 0), &results(&want, 0)));
    assert!(same(&results(&got, 1), &results(&want, 1)));
    let explain = c.sql("EXPLAIN SELECT udf_sum(tile) FROM scan WHERE nav_y < 8 AND tile[1] >= 0").await.unwrap();
    let text = format!("{:?}", explain.collect().await.unwrap());
    assert!(text.contains("FilterExec"), "the tile predicate is evaluated above the scan");

    c.sql("CREATE TABLE sel AS SELECT * FROM (VALUES (3), (17), (200)) AS t(i)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let (got, _) = run(&c, "SELECT udf_sum_sig(tile) FROM scan WHERE nav_index IN (SELECT i FROM sel)").await;
    let r = results(&got, 0);
    let valid: Vec<usize> = r.valid.unwrap().iter().enumerate().filter(|(_, v)| **v).map(|(i, _)| i).collect();
    assert_eq!(valid, vec![3, 17, 200]);
}

#[tokio::test]
async fn group_by_filter_and_distinct() {
    let dir = tempdir();
    let c = ctx(2);
    raw_scan(&c, dir.path(), "");
    let (all, _) = run(&c, "SELECT udf_sum_sig(tile) FROM scan").await;
    let all = results(&all, 0).buffers["intensity"].to_f64();
    let (grouped, _) = run(&c, "SELECT nav_y, udf_sum_sig(tile) AS s FROM scan GROUP BY nav_y ORDER BY nav_y").await;
    let mut rows = 0;
    for b in &grouped {
        for row in 0..b.num_rows() {
            let y = b.column(0).as_primitive::<arrow::datatypes::Int64Type>().value(row) as usize;
            let r = Results::from_struct(b.column(1).as_struct(), row).unwrap();
            let v = r.buffers["intensity"].to_f64();
            for x in 0..NX {
                assert_eq!(v[[y, x]], all[[y, x]]);
            }
            assert_eq!(r.valid.unwrap().iter().filter(|v| **v).count(), NX);
            rows += 1;
        }
    }
    assert_eq!(rows, NY);

    let (filtered, _) = run(&c, "SELECT udf_sum(tile) FILTER (WHERE nav_x < 4) FROM scan").await;
    let (wheres, _) = run(&c, "SELECT udf_sum(tile) FROM scan WHERE nav_x < 4").await;
    assert!(same(&results(&filtered, 0), &results(&wheres, 0)));

    let err = c.sql("SELECT udf_sum(DISTINCT tile) FROM scan").await;
    let msg = match err {
        Err(e) => e.to_string(),
        Ok(df) => df.collect().await.unwrap_err().to_string(),
    };
    assert!(msg.contains("DISTINCT is not supported"), "{msg}");
}

#[tokio::test]
async fn pick_reads_one_frame() {
    let dir = tempdir();
    let c = ctx(4);
    raw_scan(&c, dir.path(), "");
    let (batches, m) = run(&c, "SELECT nav_index, nav_y, nav_x, tile FROM scan WHERE nav_y = 2 AND nav_x = 5").await;
    assert_eq!((m.frames_read, m.bytes_read), (1, SIG * 4));
    let b = batches.iter().find(|b| b.num_rows() > 0).unwrap();
    assert_eq!(b.num_rows(), 1);
    assert_eq!(b.column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0), 37);
    let tile = b.column(3).as_fixed_size_list();
    let px = tile.value(0);
    let px = px.as_primitive::<Float32Type>();
    assert_eq!(px.len(), SIG);
    assert_eq!(px.value(10), 37.0 + 0.1);
    assert_eq!(tensor_shape_of(b.schema().field(3)), Some(vec![8, 8]));
}

fn tensor_shape_of(f: &arrow::datatypes::Field) -> Option<Vec<usize>> {
    tessera::tensor::tensor_shape(f)
}
