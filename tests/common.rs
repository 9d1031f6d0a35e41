//! Helpers shared by the tests: the shared test data, npy loading, contexts.

use std::path::PathBuf;
use tessera::dataset::formats::npy::NpyHeader;
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
    let values = tessera::dataset::formats::npy::read_npy_f64(p, &h).unwrap();
    (h.shape, values)
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
