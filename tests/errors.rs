//! Bad input gets a clear error that names the problem.

use crate::common::{ctx, tempdir};
use tessera::dataset::{DatasetSpec, open};

fn open_err(spec: &str) -> String {
    open(&DatasetSpec::parse(spec).unwrap()).unwrap_err().to_string()
}

async fn sql_err(c: &tessera::Context, q: &str) -> String {
    match c.sql(q).await {
        Err(e) => e.to_string(),
        Ok(df) => df.collect().await.unwrap_err().to_string(),
    }
}

#[test]
fn raw_size_mismatch_names_expected_and_actual() {
    let dir = tempdir();
    let p = dir.path().join("short.raw");
    std::fs::write(&p, vec![0u8; 1000]).unwrap();
    let msg = open_err(&format!("{},format=raw,nav=4x4,sig=8x8,dtype=float32", p.display()));
    assert!(msg.contains("expected 4096 bytes") && msg.contains("1000 bytes") && msg.contains("short.raw"), "{msg}");
    let empty = dir.path().join("empty.raw");
    std::fs::write(&empty, b"").unwrap();
    let msg = open_err(&format!("{},format=raw,nav=4x4,sig=8x8,dtype=float32", empty.display()));
    assert!(msg.contains("0 bytes") && msg.contains("truncated"), "{msg}");
}

#[test]
fn unknown_dtype_key_and_format() {
    let dir = tempdir();
    let p = dir.path().join("x.raw");
    std::fs::write(&p, vec![0u8; 64]).unwrap();
    let msg = open_err(&format!("{},format=raw,nav=2x2,sig=2x2,dtype=complex64", p.display()));
    assert!(msg.contains("unknown dtype 'complex64'"), "{msg}");
    let msg = DatasetSpec::parse(&format!("{},colour=blue", p.display())).unwrap_err().to_string();
    assert!(msg.contains("unknown key 'colour'"), "{msg}");
    let msg = open_err(&format!("{},format=tiff", p.display()));
    assert!(msg.contains("unknown format 'tiff'"), "{msg}");
    let msg = open_err(&format!("{},format=raw,nav=2x2,sig=2x2", p.display()));
    assert!(msg.contains("needs 'dtype='"), "{msg}");
    let msg = open_err(&format!("{},format=raw,nav=2xq,sig=2x2,dtype=u1", p.display()));
    assert!(msg.contains("'q' is not a whole number"), "{msg}");
    let msg = open_err(&format!("{},format=npy,sig=2x2", p.display()));
    assert!(msg.contains("'sig' does not apply to format 'npy'"), "{msg}");
}

fn npy_bytes(header: &str, data_len: usize) -> Vec<u8> {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data_len));
    out
}

#[test]
fn npy_fortran_truncated_and_corrupt() {
    let dir = tempdir();
    let f = dir.path().join("f.npy");
    std::fs::write(&f, npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2, 4, 4), }", 256)).unwrap();
    let msg = open_err(f.to_str().unwrap());
    assert!(msg.contains("Fortran order") && msg.contains("f.npy"), "{msg}");
    let t = dir.path().join("t.npy");
    std::fs::write(&t, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 4, 4), }", 100)).unwrap();
    let msg = open_err(t.to_str().unwrap());
    assert!(msg.contains("t.npy") && msg.contains("expected") && msg.contains("truncated"), "{msg}");
    let h = dir.path().join("h.npy");
    std::fs::write(&h, &npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 4, 4), }", 256)[..20])
        .unwrap();
    let msg = open_err(h.to_str().unwrap());
    assert!(msg.contains("truncated .npy header"), "{msg}");
    let c = dir.path().join("c.npy");
    std::fs::write(&c, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 4, 4, }", 256)).unwrap();
    let msg = open_err(c.to_str().unwrap());
    assert!(msg.contains("c.npy"), "{msg}");
    let v = dir.path().join("v.npy");
    std::fs::write(&v, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), }", 64)).unwrap();
    let msg = open_err(v.to_str().unwrap());
    assert!(msg.contains("not a 4D-STEM stack"), "{msg}");
}

#[tokio::test]
async fn misaligned_offset_reads_correctly_through_pread() {
    let dir = tempdir();
    let p = dir.path().join("odd.raw");
    let mut bytes = vec![0xAB]; // one byte of header: u16 data starts misaligned
    let vals: Vec<u16> = (0..4 * 4 * 4).map(|i| (i * 37 % 1000) as u16).collect();
    for v in &vals {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&p, &bytes).unwrap();
    let spec = format!("{},format=raw,nav=2x2,sig=4x4,dtype=uint16,offset=1", p.display());
    let c = ctx(2);
    c.register_spec("odd", DatasetSpec::parse(&spec).unwrap()).unwrap();
    let r = c.run_udf("odd", tessera::udf::builtin::SumSig, None).await.unwrap();
    let got = r.buffers["intensity"].to_f64();
    for f in 0..4 {
        let want: f64 = vals[f * 16..(f + 1) * 16].iter().map(|&v| v as f64).sum();
        assert_eq!(got.as_slice().unwrap()[f], want);
    }
    let msg = open_err(&format!("{spec},io=mmap"));
    assert!(msg.contains("io=mmap needs"), "{msg}");
}

#[tokio::test]
async fn udf_argument_errors() {
    let c = ctx(2);
    c.register_spec("scan", DatasetSpec::parse("synthetic,nav=4x4,sig=8x8,dtype=uint16").unwrap()).unwrap();
    let msg = sql_err(&c, "SELECT udf_sum(nav_y) FROM scan").await;
    assert!(msg.contains("udf_sum expects a tile column") && msg.contains("nav_y"), "{msg}");
    let msg = sql_err(&c, "SELECT udf_sum_sig(tile, 'x') FROM scan").await;
    assert!(msg.contains("second argument must be the frames' nav_index"), "{msg}");
    let msg = sql_err(&c, "SELECT udf_sum() FROM scan").await;
    assert!(msg.contains("udf_sum"), "{msg}");
    let msg = sql_err(&c, "SELECT udf_sum_sig(t) FROM (SELECT tile AS t FROM scan)").await;
    assert!(msg.contains("needs the frames' nav_index"), "{msg}");
    let msg = sql_err(&c, "SELECT udf_sum(tile) FROM scan WHERE roi_mask('nope', nav_index)").await;
    assert!(msg.contains("no mask named 'nope'"), "{msg}");
    c.register_mask("short", tessera::geometry::Roi::all(3));
    let msg = sql_err(&c, "SELECT udf_sum(tile) FROM scan WHERE roi_mask('short', nav_index)").await;
    assert!(msg.contains("outside the mask's 3 entries"), "{msg}");
    let msg = c.register_table_arg("noequals").unwrap_err().to_string();
    assert!(msg.contains("expected NAME=SPEC"), "{msg}");
}
