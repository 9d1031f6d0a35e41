//! HDF5 files written by h5py/hdf5plugin (`scripts/make_hdf5.py`, in the project's venv): gzip+shuffle,
//! DECTRIS bitshuffle+LZ4 master/data files, LZ4, the newest chunk indexes, big-endian contiguous
//! data and an EMD 1.0 layout read back pixel for pixel as the .npy of the same data.

use crate::common::{ctx, tempdir};
use arrow::array::AsArray;
use tessera::Context;
use tessera::dataset::DatasetSpec;
use tessera::udf::Results;

/// `udf_sum` and `udf_sum_sig` of `table` over the frames `where_`.
async fn sums(c: &Context, table: &str, where_: &str) -> (Vec<f64>, Vec<f64>) {
    let b = c
        .sql(&format!("SELECT udf_sum(tile), udf_sum_sig(tile) FROM {table} WHERE {where_}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let get = |i: usize| {
        let r = Results::from_struct(b[0].column(i).as_struct(), 0).unwrap();
        r.buffers["intensity"].to_f64().iter().copied().collect::<Vec<f64>>()
    };
    (get(0), get(1))
}

fn same(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        // NaN outside the ROI on both sides; float32 sums may differ in the last place (merge order)
        assert!((x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-6 * y.abs().max(1.0), "{what}[{i}]: {x} vs {y}");
    }
}

#[tokio::test]
async fn h5py_and_hdf5plugin_files_read_back_exactly() {
    let Some(py) = crate::export::python() else { return };
    let dir = tempdir();
    let script = format!("{}/scripts/make_hdf5.py", env!("CARGO_MANIFEST_DIR"));
    let o = std::process::Command::new(py).arg(script).arg(dir.path()).output().unwrap();
    assert!(o.status.success(), "make_hdf5.py: {}", String::from_utf8_lossy(&o.stderr));
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("cases.json")).unwrap()).unwrap();
    let mut checked = 0;
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let opts: String =
            case["spec"].as_object().unwrap().iter().map(|(k, v)| format!(",{k}={}", v.as_str().unwrap())).collect();
        let nav = case["spec"].get("nav").map(|n| format!(",nav={}", n.as_str().unwrap())).unwrap_or_default();
        for sync in ["", ",sync_offset=2", ",sync_offset=-3"] {
            let c = ctx(3);
            let h = c
                .register_spec(
                    "h",
                    DatasetSpec::parse(&format!("{}{opts}{sync}", case["file"].as_str().unwrap())).unwrap(),
                )
                .unwrap();
            let n = c
                .register_spec(
                    "n",
                    DatasetSpec::parse(&format!("{}{nav}{sync}", case["npy"].as_str().unwrap())).unwrap(),
                )
                .unwrap();
            assert_eq!(h.geometry(), n.geometry(), "{name}{sync}: geometry");
            assert_eq!(h.spec().format.as_deref(), Some("hdf5"), "{name}: detected format");
            // every pixel of every frame, in the native dtype
            let (a, b) = (c.pick("h", None).await.unwrap(), c.pick("n", None).await.unwrap());
            assert_eq!(a.dtype(), b.dtype(), "{name}{sync}: dtype");
            assert_eq!(a.to_f64(), b.to_f64(), "{name}{sync}: pixels");
            for roi in ["true", "nav_index % 3 = 1", "nav_index BETWEEN 5 AND 9"] {
                let (hs, hss) = sums(&c, "h", roi).await;
                let (ns, nss) = sums(&c, "n", roi).await;
                same(&format!("{name}{sync} sum where {roi}"), &hs, &ns);
                same(&format!("{name}{sync} sumsig where {roi}"), &hss, &nss);
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 10);

    // a damaged gzip chunk fails the query, naming the file; no result is returned
    let bytes = std::fs::read(dir.path().join("gzip.h5")).unwrap();
    let mut bad = bytes.clone();
    let at = bytes.len() * 2 / 3;
    for b in &mut bad[at..at + 64] {
        *b ^= 0x5a;
    }
    let p = dir.path().join("damaged.h5");
    std::fs::write(&p, bad).unwrap();
    let c = ctx(2);
    c.register_spec("bad", DatasetSpec::parse(&format!("{},ds_path=experiment/scan", p.display())).unwrap()).unwrap();
    let err = c.sql("SELECT udf_sum(tile) FROM bad").await.unwrap().collect().await.unwrap_err().to_string();
    assert!(err.contains("damaged.h5"), "{err}");

    // a ds_path that is not there names what is
    let p = dir.path().join("gzip.h5");
    let err = tessera::dataset::open(&DatasetSpec::parse(&format!("{},ds_path=nope", p.display())).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no dataset 'nope'") && err.contains("experiment/scan"), "{err}");
}
