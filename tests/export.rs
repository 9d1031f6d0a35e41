//! COPY ... TO parquet keeps the tensor metadata and records provenance; pyarrow reads it back.

use crate::common::{ctx, tempdir};
use parquet::file::reader::{FileReader, SerializedFileReader};
use std::path::Path;
use std::process::Command;
use tessera::dataset::formats::npy::write_npy;
use tessera::dataset::{DType, DatasetSpec};
use tessera::udf::builtin::{Sum, SumSig};

fn kv(path: &Path) -> std::collections::HashMap<String, String> {
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    r.metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| kv.iter().map(|k| (k.key.clone(), k.value.clone().unwrap_or_default())).collect())
        .unwrap_or_default()
}

/// The project's Python (a venv with pyarrow and numpy, made by scripts/pyenv.sh), or None with a
/// printed reason. Under CI the venv must work.
/// Made once per test process: the tests that need it run in parallel.
pub fn python() -> Option<String> {
    static PYTHON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PYTHON.get_or_init(make_python).clone()
}

fn make_python() -> Option<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash").arg(format!("{root}/scripts/pyenv.sh")).output();
    match out {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            if std::env::var("CI").is_ok() || std::env::var("TESSERA_REQUIRE_SHARED").is_ok_and(|v| v == "1") {
                panic!("scripts/pyenv.sh failed: {why}");
            }
            eprintln!("SKIPPED: no Python venv with pyarrow ({why})");
            None
        }
    }
}

#[tokio::test]
async fn copy_to_parquet_roundtrips_through_pyarrow() {
    let dir = tempdir();
    let c = ctx(3);
    c.register_spec("scan", DatasetSpec::parse("synthetic,nav=9x7,sig=12x10,dtype=uint16,seed=5").unwrap()).unwrap();
    let filter = "nav_y BETWEEN 2 AND 5";
    let out = dir.path().join("res.parquet");
    let q = format!(
        "COPY (SELECT udf_sum(tile) AS s, udf_sum_sig(tile) AS ss FROM scan WHERE {filter}) TO '{}'",
        out.display()
    );
    c.sql(&q).await.unwrap().collect().await.unwrap();
    let meta = kv(&out);
    assert_eq!(meta["tessera.query"], q);
    assert_eq!(meta["tessera.version"], env!("CARGO_PKG_VERSION"));
    assert!(meta["tessera.datasets"].contains("synthetic") && meta["tessera.datasets"].contains("9x7"));

    // DataFusion reads the tensors back with their metadata
    let back =
        c.session().read_parquet(out.to_str().unwrap(), Default::default()).await.unwrap().collect().await.unwrap();
    let ss = back[0].schema().field(1).clone();
    let arrow::datatypes::DataType::Struct(fields) = ss.data_type() else { panic!("struct") };
    assert_eq!(tessera::tensor::tensor_shape(&fields[0]), Some(vec![9, 7]));

    // expected values from the Rust API, as .npy for the Python check
    let mut roi = tessera::geometry::Roi::none(63);
    for i in 14..42 {
        roi.set(i, true);
    }
    let sum = c.run_udf("scan", Sum::new(), Some(&roi)).await.unwrap();
    let sig = c.run_udf("scan", SumSig, Some(&roi)).await.unwrap();
    let f32_bytes = |a: &ndarray::ArrayD<f64>| a.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect::<Vec<u8>>();
    write_npy(&dir.path().join("s.npy"), DType::F32, &[12, 10], &f32_bytes(&sum.buffers["intensity"].to_f64()))
        .unwrap();
    write_npy(&dir.path().join("ss.npy"), DType::F32, &[9, 7], &f32_bytes(&sig.buffers["intensity"].to_f64())).unwrap();

    let Some(py) = python() else { return };
    let script = format!("{}/scripts/check_parquet.py", env!("CARGO_MANIFEST_DIR"));
    let s_npy = dir.path().join("s.npy");
    let ss_npy = dir.path().join("ss.npy");
    let o = Command::new(py)
        .arg(script)
        .arg(&out)
        .arg(format!("s.intensity={}", s_npy.display()))
        .arg(format!("ss.intensity={}", ss_npy.display()))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("OK s.intensity (12, 10) float32") && text.contains("OK ss.intensity (9, 7) float32"),
        "{text}"
    );
}

#[tokio::test]
async fn results_to_npy_and_png() {
    use arrow::array::AsArray;
    use tessera::export::{FileFormats, viridis, write_results};
    let dir = tempdir();
    let c = ctx(2);
    c.register_spec("scan", DatasetSpec::parse("synthetic,nav=6x5,sig=16x12,dtype=uint16").unwrap()).unwrap();
    let batches = c
        .sql("SELECT udf_sum(tile) AS s, udf_apply_masks(tile, masks('disk(8, 6, 3)', 'ring(8, 6, 3, 6)')) AS m FROM scan WHERE nav_y < 3")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let files = write_results(&batches, dir.path(), FileFormats { npy: true, png: true }).unwrap();
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["s.intensity.npy", "s.intensity.png", "m.intensity.npy", "m.valid.npy"]);
    let sum = tessera::udf::Results::from_struct(batches[0].column(0).as_struct(), 0).unwrap();
    let (shape, values) = crate::common::load_npy(&dir.path().join("s.intensity.npy"));
    assert_eq!(shape, vec![16, 12]);
    assert_eq!(values, sum.buffers["intensity"].to_f64().iter().copied().collect::<Vec<_>>());
    let (shape, masks) = crate::common::load_npy(&dir.path().join("m.intensity.npy"));
    assert_eq!(shape, vec![6, 5, 2]);
    assert_eq!(masks.iter().filter(|v| v.is_nan()).count(), 2 * 15);
    let (_, valid) = crate::common::load_npy(&dir.path().join("m.valid.npy"));
    assert_eq!(valid.iter().sum::<f64>(), 15.0);
    // the PNG: 12x16 RGBA, colours from viridis
    let decoder =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(dir.path().join("s.intensity.png")).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (12, 16));
    let low = viridis(0.0);
    let high = viridis(1.0);
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks_exact(4).collect();
    assert!(pixels.iter().any(|p| p[..3] == low) && pixels.iter().any(|p| p[..3] == high));
}

#[tokio::test]
async fn write_files_from_sql() {
    let dir = tempdir();
    let c = ctx(2);
    c.register_spec("scan", DatasetSpec::parse("synthetic,nav=4x4,sig=8x8,dtype=uint8").unwrap()).unwrap();
    let q = format!(
        "SELECT * FROM write_files('SELECT udf_sum_sig(tile) AS b FROM scan WHERE nav_y < 2', '{}', 'npy')",
        dir.path().display()
    );
    let b = c.sql(&q).await.unwrap().collect().await.unwrap();
    let n: usize = b.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n, 2, "intensity and valid");
    let (shape, v) = crate::common::load_npy(&dir.path().join("b.intensity.npy"));
    assert_eq!(shape, vec![4, 4]);
    assert_eq!(v.iter().filter(|x| x.is_nan()).count(), 8);
    let bad = c
        .sql(&format!(
            "SELECT * FROM write_files('SELECT udf_sum(tile) FROM scan', '{}', 'tiff')",
            dir.path().display()
        ))
        .await;
    assert!(bad.unwrap_err().to_string().contains("unknown format 'tiff'"));
}
