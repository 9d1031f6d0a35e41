//! udf_sum and udf_sum_sig against LiberTEM 0.16's results (../shared/oracle), via SQL and the Rust
//! API, with 1 and 4 partitions, full scan and the quarter ROI; and odd shapes against a direct sum.

use crate::common::{ctx, load_npy, rel_err, shared};
use arrow::array::AsArray;
use ndarray::ArrayD;
use tessera::dataset::formats::memory::MemoryDataset;
use tessera::dataset::{DType, DatasetSpec};
use tessera::geometry::Roi;
use tessera::udf::builtin::{Sum, SumSig};
use tessera::udf::{ResultBuffer, Results};

const QUARTER: &str = "nav_y >= 4 AND nav_y < 12 AND nav_x >= 4 AND nav_x < 12";

struct Case {
    name: &'static str,
    spec: &'static str,
}

const CASES: &[Case] = &[
    Case { name: "small", spec: "format=raw,nav=16x16,sig=32x32,dtype=float32" },
    Case { name: "small_u16", spec: "format=raw,nav=16x16,sig=64x64,dtype=uint16" },
];

/// An oracle dataset: its folder, the spec of its raw file, geometry.json and the quarter ROI.
fn oracle_case(oracle: &std::path::Path, case: &Case) -> (std::path::PathBuf, DatasetSpec, serde_json::Value, Roi) {
    let dir = oracle.join(case.name);
    let path = oracle.join("data").join(format!("{}.raw", case.name));
    let spec = DatasetSpec::parse(&format!("{},{}", path.display(), case.spec)).unwrap();
    let geometry = serde_json::from_str(&std::fs::read_to_string(dir.join("geometry.json")).unwrap()).unwrap();
    let (_, quarter) = load_npy(&dir.join("roi_quarter.npy"));
    (dir, spec, geometry, Roi::from_bools(quarter.iter().map(|&v| v != 0.0)))
}

fn check(what: &str, buf: &ResultBuffer, reference: &std::path::Path) {
    let (shape, want) = load_npy(reference);
    assert_eq!(buf.dtype(), DType::F32, "{what}: LiberTEM's result dtype is float32");
    assert_eq!(buf.shape(), &shape[..], "{what}: shape");
    let got: Vec<f64> = buf.to_f64().iter().copied().collect();
    let err = rel_err(what, &got, &want);
    assert!(err <= 1e-5, "{what}: max|a-ref|/max|ref| = {err}");
}

async fn sql_results(c: &tessera::Context, query: &str) -> Vec<Results> {
    let batches = c.sql(query).await.unwrap().collect().await.unwrap();
    let b = &batches[0];
    (0..b.num_columns()).map(|i| Results::from_struct(b.column(i).as_struct(), 0).unwrap()).collect()
}

#[tokio::test]
async fn sum_and_sumsig_match_libertem() {
    let Some(oracle) = shared("oracle") else { return };
    for case in CASES {
        let (_, spec, _, quarter) = oracle_case(&oracle, case);
        for partitions in [1, 4] {
            let c = ctx(partitions);
            c.register_spec("scan", spec.clone()).unwrap();
            for (roi_name, filter, roi) in [("full", "", None), ("quarter", QUARTER, Some(&quarter))] {
                let where_ = if filter.is_empty() { String::new() } else { format!(" WHERE {filter}") };
                let res = sql_results(&c, &format!("SELECT udf_sum(tile), udf_sum_sig(tile) FROM scan{where_}")).await;
                let tag = format!("{}/{roi_name}/p{partitions}", case.name);
                let sum_ref = oracle.join(case.name).join(format!("sum__{roi_name}__intensity.npy"));
                let sumsig_ref = oracle.join(case.name).join(format!("sumsig__{roi_name}__intensity.npy"));
                check(&format!("sql sum {tag}"), res[0].buffer("intensity").unwrap(), &sum_ref);
                check(&format!("sql sumsig {tag}"), res[1].buffer("intensity").unwrap(), &sumsig_ref);
                let api_sum = c.run_udf("scan", Sum::new(), roi).await.unwrap();
                let api_sumsig = c.run_udf("scan", SumSig, roi).await.unwrap();
                check(&format!("api sum {tag}"), api_sum.buffer("intensity").unwrap(), &sum_ref);
                check(&format!("api sumsig {tag}"), api_sumsig.buffer("intensity").unwrap(), &sumsig_ref);
                let valid = api_sumsig.valid.as_ref().unwrap();
                let expect = roi.map_or(256, |r| r.count());
                assert_eq!(valid.iter().filter(|v| **v).count(), expect, "{tag}: valid frames");
                assert_eq!(res[1].valid.as_ref().unwrap(), valid, "{tag}: valid mask SQL vs API");
            }
        }
    }
}

/// Prime-sized nav and sig, several dtypes and partition counts, against a direct f64 sum.
#[tokio::test]
async fn odd_shapes_match_direct_sums() {
    let (ny, nx, sy, sx) = (7usize, 13usize, 11usize, 5usize);
    let value = |i: usize| ((i * 7919) % 1009) as f64;
    let n = ny * nx * sy * sx;
    let data: Vec<f64> = (0..n).map(value).collect();
    let sel = |f: usize| f % 3 != 1 && f / nx >= 2;
    for partitions in [1, 3, 4] {
        let c = ctx(partitions).with_batch_bytes(3 * sy * sx * 2); // 3-frame batches (u16)
        let arr = ArrayD::from_shape_vec(vec![ny, nx, sy, sx], data.iter().map(|&v| v as u16).collect()).unwrap();
        c.register_dataset("odd", std::sync::Arc::new(MemoryDataset::new(arr).unwrap())).unwrap();
        let arr32 = ArrayD::from_shape_vec(vec![ny, nx, sy, sx], data.iter().map(|&v| v as i32).collect()).unwrap();
        c.register_dataset("odd32", std::sync::Arc::new(MemoryDataset::new(arr32).unwrap())).unwrap();
        for (table, dtype) in [("odd", DType::F32), ("odd32", DType::F64)] {
            let res = sql_results(
                &c,
                &format!(
                    "SELECT udf_sum(tile), udf_sum_sig(tile) FROM {table} WHERE nav_index % 3 <> 1 AND nav_y >= 2"
                ),
            )
            .await;
            let mut want_sum = vec![0f64; sy * sx];
            let mut want_sig = vec![f64::NAN; ny * nx];
            for f in (0..ny * nx).filter(|&f| sel(f)) {
                let frame = &data[f * sy * sx..(f + 1) * sy * sx];
                for (w, v) in want_sum.iter_mut().zip(frame) {
                    *w += v;
                }
                want_sig[f] = frame.iter().sum();
            }
            let sum = res[0].buffer("intensity").unwrap();
            let sig = res[1].buffer("intensity").unwrap();
            assert_eq!(sum.dtype(), dtype);
            assert_eq!(sum.shape(), &[sy, sx]);
            assert_eq!(sig.shape(), &[ny, nx]);
            let tag = format!("{table} p{partitions}");
            assert_eq!(rel_err(&tag, &sum.to_f64().iter().copied().collect::<Vec<_>>(), &want_sum), 0.0);
            assert_eq!(rel_err(&tag, &sig.to_f64().iter().copied().collect::<Vec<_>>(), &want_sig), 0.0);
        }
    }
}

/// 1-D and 3-D scans: nav columns are nav_0.., results keep the n-D nav shape.
#[tokio::test]
async fn nd_nav_shapes() {
    let c = ctx(2);
    c.register_spec("line", DatasetSpec::parse("synthetic,nav=10,sig=8x8,dtype=float32").unwrap()).unwrap();
    c.register_spec("cube", DatasetSpec::parse("synthetic,nav=2x3x4,sig=8x8,dtype=uint8").unwrap()).unwrap();
    let r = sql_results(&c, "SELECT udf_sum_sig(tile) FROM line WHERE nav_0 < 5").await;
    let b = r[0].buffer("intensity").unwrap();
    assert_eq!(b.shape(), &[10]);
    assert_eq!(b.to_f64().iter().filter(|v| v.is_nan()).count(), 5);
    let r = sql_results(&c, "SELECT udf_sum_sig(tile) FROM cube WHERE nav_1 = 2").await;
    let b = r[0].buffer("intensity").unwrap();
    assert_eq!(b.shape(), &[2, 3, 4]);
    assert_eq!(b.to_f64().iter().filter(|v| !v.is_nan()).count(), 8);
}

/// The other LiberTEM cases of the oracle: stddev, logsum, masks (1 and 16, from the oracle's own
/// mask files and from ring specs), pick; SQL and Rust API, 1 and 4 partitions, full and quarter ROI.
#[tokio::test]
async fn stddev_logsum_masks_pick_match_libertem() {
    use tessera::udf::builtin::{ApplyMasks, LogSum, StdDev};
    use tessera::udf::masks::{MaskSpec, MaskStack};
    let Some(oracle) = shared("oracle") else { return };
    for case in CASES {
        let (dir, spec, geometry, quarter) = oracle_case(&oracle, case);
        let m1 = &geometry["masks1"];
        let ring = format!(
            "ring({}, {}, {}, {})",
            m1["cy"].as_f64().unwrap(),
            m1["cx"].as_f64().unwrap(),
            m1["r_inner"].as_f64().unwrap(),
            m1["r_outer"].as_f64().unwrap()
        );
        let masks16: Vec<String> = geometry["masks16"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| format!("'ring({}, {}, {}, {})'", m["cy"], m["cx"], m["r_inner"], m["r_outer"]))
            .collect();
        let npy1 = dir.join("masks1.npy");
        let npy16 = dir.join("masks16.npy");
        for partitions in [1, 4] {
            let c = ctx(partitions);
            let ds = c.register_spec("scan", spec.clone()).unwrap();
            for (roi_name, filter, roi) in [("full", "", None), ("quarter", QUARTER, Some(&quarter))] {
                let where_ = if filter.is_empty() { String::new() } else { format!(" WHERE {filter}") };
                let tag = format!("{}/{roi_name}/p{partitions}", case.name);
                let q = format!(
                    "SELECT udf_stddev(tile), udf_logsum(tile), udf_apply_masks(tile, masks('{ring}')), \
                     udf_apply_masks(tile, masks('npy({})')), udf_apply_masks(tile, masks({})) FROM scan{where_}",
                    npy16.display(),
                    masks16.join(", ")
                );
                let res = sql_results(&c, &q).await;
                let reference = |case: &str, buf: &str| dir.join(format!("{case}__{roi_name}__{buf}.npy"));
                for buf in ["sum", "varsum", "var", "std", "mean", "num_frames"] {
                    check_any(
                        &format!("sql stddev.{buf} {tag}"),
                        res[0].buffer(buf).unwrap(),
                        &reference("stddev", buf),
                        1e-5,
                    );
                }
                let checks = [
                    ("logsum", 1, "logsum", "logsum"),
                    ("masks1", 2, "intensity", "masks1"),
                    ("masks16/npy", 3, "intensity", "masks16"),
                    ("masks16/rings", 4, "intensity", "masks16"),
                ];
                for (label, col, buf, case) in checks {
                    check_any(
                        &format!("sql {label} {tag}"),
                        res[col].buffer(buf).unwrap(),
                        &reference(case, buf),
                        1e-5,
                    );
                }

                let api = c.run_udf("scan", StdDev, roi).await.unwrap();
                check_any(&format!("api stddev {tag}"), api.buffer("std").unwrap(), &reference("stddev", "std"), 1e-5);
                let api = c.run_udf("scan", LogSum, roi).await.unwrap();
                check_any(
                    &format!("api logsum {tag}"),
                    api.buffer("logsum").unwrap(),
                    &reference("logsum", "logsum"),
                    1e-5,
                );
                for (case_name, npy) in [("masks1", &npy1), ("masks16", &npy16)] {
                    let stack =
                        MaskStack::build(&[MaskSpec::Npy(npy.display().to_string())], &ds.geometry().sig).unwrap();
                    let api = c.run_udf("scan", ApplyMasks::new(stack), roi).await.unwrap();
                    let what = format!("api {case_name} {tag}");
                    check_any(&what, api.buffer("intensity").unwrap(), &reference(case_name, "intensity"), 1e-5);
                }
            }
            // pick: one frame, and the quarter's frames in nav order, in the native dtype
            for (label, filter) in [("pick", "nav_y = 8 AND nav_x = 8"), ("quarter", QUARTER)] {
                let b = c
                    .sql(&format!("SELECT tile FROM scan WHERE {filter} ORDER BY nav_index"))
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap();
                let (shape, want) = load_npy(&dir.join(format!("pick__{label}__intensity.npy")));
                let mut got = Vec::new();
                for batch in &b {
                    let tiles = batch.column(0).as_fixed_size_list();
                    assert_eq!(
                        DType::from_arrow(&tiles.value_type()).unwrap().name(),
                        if case.name == "small" { "float32" } else { "uint16" }
                    );
                    let v = arrow::compute::cast(tiles.values(), &arrow::datatypes::DataType::Float64).unwrap();
                    got.extend(v.as_primitive::<arrow::datatypes::Float64Type>().values().iter().copied());
                }
                assert_eq!(got.len(), shape.iter().product::<usize>(), "pick {label}");
                assert_eq!(got, want, "pick {label} {}", case.name);
            }
            // pick through the Rust API
            let single = Roi::from_bools((0..256).map(|i| i == 8 * 16 + 8));
            for (label, roi) in [("pick", &single), ("quarter", &quarter)] {
                let picked = c.pick("scan", Some(roi)).await.unwrap();
                check_any(
                    &format!("api pick {label} {}", case.name),
                    &picked,
                    &dir.join(format!("pick__{label}__intensity.npy")),
                    0.0,
                );
            }
        }
    }
}

/// Compares any result buffer with a reference .npy: the dtype LiberTEM declares, shape, NaN
/// pattern and max|a-ref|/max|ref| <= tol.
fn check_any(what: &str, buf: &ResultBuffer, reference: &std::path::Path, tol: f64) {
    let (shape, want) = load_npy(reference);
    let h = tessera::dataset::formats::npy::NpyHeader::read(reference.to_str().unwrap()).unwrap();
    assert_eq!(buf.dtype(), h.dtype, "{what}: dtype");
    assert_eq!(buf.shape(), &shape[..], "{what}: shape");
    let got: Vec<f64> = buf.to_f64().iter().copied().collect();
    let err = rel_err(what, &got, &want);
    assert!(err <= tol, "{what}: max|a-ref|/max|ref| = {err}");
}

/// LiberTEM's own deviation from float64 numpy for an oracle file (manifest `vs_numpy_f64`).
fn libertem_deviation(oracle: &std::path::Path, file: &str, metric: &str) -> Option<f64> {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(oracle.join("manifest.json")).unwrap()).unwrap();
    m["datasets"]
        .as_object()?
        .values()
        .flat_map(|d| d["entries"].as_array().unwrap().iter())
        .find_map(|e| (e["file"].as_str() == Some(file)).then(|| e["vs_numpy_f64"][metric].as_f64()).flatten())
}

/// udf_com with all nine buffers. LiberTEM computes CoM in float32 while Tessera accumulates in
/// float64, so the tolerance is 1e-5 or twice LiberTEM's own deviation from float64 numpy (the
/// manifest's metric), whichever is larger. Divergence and curl, which the manifest does not cover,
/// are sums of two differences of the field, so their absolute error may reach 4× the field's: they
/// are checked against 4× LiberTEM's absolute field deviation.
#[tokio::test]
async fn com_matches_libertem() {
    use tessera::udf::builtin::CenterOfMass;
    let Some(oracle) = shared("oracle") else { return };
    for case in CASES {
        let (_, spec, geometry, quarter) = oracle_case(&oracle, case);
        let g = &geometry["com"];
        let (cy, cx, r) = (g["cy"].as_f64().unwrap(), g["cx"].as_f64().unwrap(), g["r"].as_f64().unwrap());
        for partitions in [1, 4] {
            let c = ctx(partitions);
            c.register_spec("scan", spec.clone()).unwrap();
            for (roi_name, filter, roi) in [("full", "", None), ("quarter", QUARTER, Some(&quarter))] {
                let where_ = if filter.is_empty() { String::new() } else { format!(" WHERE {filter}") };
                let tag = format!("{}/{roi_name}/p{partitions}", case.name);
                let sql = sql_results(
                    &c,
                    &format!("SELECT udf_com(tile, cy => {cy}, cx => {cx}, r => {r}) FROM scan{where_}"),
                )
                .await;
                let udf = CenterOfMass::with_params(Some(cy), Some(cx), r);
                let api = c.run_udf("scan", udf, roi).await.unwrap();
                for res in [&sql[0], &api] {
                    for buf in [
                        "raw_com",
                        "raw_shifts",
                        "field",
                        "field_y",
                        "field_x",
                        "magnitude",
                        "divergence",
                        "curl",
                        "regression",
                    ] {
                        let file = format!("{}/com__{roi_name}__{buf}.npy", case.name);
                        let (shape, want) = load_npy(&oracle.join(&file));
                        let b = res.buffer(buf).unwrap();
                        assert_eq!(b.shape(), &shape[..], "{tag} {buf}");
                        let want_dtype = if buf == "regression" { DType::F64 } else { DType::F32 };
                        assert_eq!(b.dtype(), want_dtype, "{tag} {buf}");
                        let got: Vec<f64> = b.to_f64().iter().copied().collect();
                        let err = rel_err(&format!("{tag} {buf}"), &got, &want);
                        if buf == "divergence" || buf == "curl" {
                            let field = format!("{}/com__{roi_name}__field.npy", case.name);
                            let tol = 4.0 * libertem_deviation(&oracle, &field, "max_abs").unwrap();
                            let abs = got
                                .iter()
                                .zip(&want)
                                .filter(|(a, _)| !a.is_nan())
                                .map(|(a, b)| (a - b).abs())
                                .fold(0.0, f64::max);
                            assert!(abs <= tol, "{tag} {buf}: max abs diff {abs} > {tol}");
                        } else {
                            let tol = libertem_deviation(&oracle, &file, "max_abs_over_max_ref")
                                .map_or(1e-5, |d| (2.0 * d).max(1e-5));
                            assert!(err <= tol, "{tag} {buf}: {err} > {tol}");
                        }
                    }
                }
            }
        }
    }
}
