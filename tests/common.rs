//! Helpers shared by the tests: the shared test data, npy loading, contexts.

use std::path::PathBuf;
use tessera::dataset::formats::npy::NpyHeader;
use tessera::dataset::{ByteOrder, DType};
use tessera::{Context, default_config};

/// `../shared/<sub>` if it exists. Without it the test is skipped with a printed reason — unless
/// `TESSERA_REQUIRE_SHARED=1` (set by `.ci/run`), where missing test data is a failure.
pub fn shared(sub: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("shared").join(sub);
    if dir.exists() {
        return Some(dir);
    }
    if std::env::var("TESSERA_REQUIRE_SHARED").is_ok_and(|v| v == "1") {
        panic!("test data {} is missing and TESSERA_REQUIRE_SHARED=1", dir.display());
    }
    eprintln!("SKIPPED: test data {} is not here (a fresh clone has no ../shared)", dir.display());
    None
}

/// Loads an .npy file as f64 values with its shape.
pub fn load_npy(path: &std::path::Path) -> (Vec<usize>, Vec<f64>) {
    let p = path.to_str().unwrap();
    let h = NpyHeader::read(p).unwrap();
    let bytes = std::fs::read(path).unwrap();
    let data = &bytes[h.data_offset as usize..];
    let n: usize = h.shape.iter().product();
    let w = h.dtype.size();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut b = data[i * w..(i + 1) * w].to_vec();
        if h.order != ByteOrder::NATIVE {
            b.reverse();
        }
        out.push(match h.dtype {
            DType::U8 => b[0] as f64,
            DType::U16 => u16::from_ne_bytes(b.try_into().unwrap()) as f64,
            DType::U32 => u32::from_ne_bytes(b.try_into().unwrap()) as f64,
            DType::I16 => i16::from_ne_bytes(b.try_into().unwrap()) as f64,
            DType::I32 => i32::from_ne_bytes(b.try_into().unwrap()) as f64,
            DType::I64 => i64::from_ne_bytes(b.try_into().unwrap()) as f64,
            DType::F32 => f32::from_ne_bytes(b.try_into().unwrap()) as f64,
            DType::F64 => f64::from_ne_bytes(b.try_into().unwrap()),
            other => panic!("unexpected dtype {other} in {p}"),
        });
    }
    (h.shape, out)
}

/// A context with `partitions` target partitions.
pub fn ctx(partitions: usize) -> Context {
    Context::with_config(default_config().with_target_partitions(partitions)).unwrap()
}

/// max|a - ref| / max|ref| over entries where neither is NaN; panics if the NaN patterns differ.
pub fn rel_err(what: &str, a: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(a.len(), reference.len(), "{what}: length");
    let mut max_ref = 0f64;
    let mut max_diff = 0f64;
    for (i, (&x, &r)) in a.iter().zip(reference).enumerate() {
        assert_eq!(x.is_nan(), r.is_nan(), "{what}: NaN pattern differs at {i} ({x} vs {r})");
        if !x.is_nan() {
            max_ref = max_ref.max(r.abs());
            max_diff = max_diff.max((x - r).abs());
        }
    }
    if max_ref == 0.0 { max_diff } else { max_diff / max_ref }
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
