//! raw in every dtype and byte order, npy v1/v2/v3, sync_offset, nav reinterpretation, synthetic, EMPAD.

use crate::common::{ctx, tempdir};
use arrow::array::AsArray;
use tessera::dataset::formats::npy::write_npy;
use tessera::dataset::{DType, DatasetSpec};
use tessera::udf::builtin::{Sum, SumSig};

/// 2x3 scan of 4x5 frames: value(f, p) = (f * 20 + p) * 3 % 127 (fits every dtype).
fn value(i: usize) -> f64 {
    ((i * 3) % 127) as f64
}
const N: usize = 2 * 3 * 4 * 5;

fn encode(dtype: DType, big: bool, v: f64) -> Vec<u8> {
    macro_rules! enc {
        ($t:ty) => {{
            let x = v as $t;
            if big { x.to_be_bytes().to_vec() } else { x.to_le_bytes().to_vec() }
        }};
    }
    match dtype {
        DType::U8 => enc!(u8),
        DType::U16 => enc!(u16),
        DType::U32 => enc!(u32),
        DType::I16 => enc!(i16),
        DType::I32 => enc!(i32),
        DType::F32 => enc!(f32),
        DType::F64 => enc!(f64),
        DType::I8 => enc!(i8),
        DType::I64 => enc!(i64),
        DType::U64 => enc!(u64),
    }
}

async fn sums(spec: &str) -> (Vec<f64>, Vec<f64>) {
    let c = ctx(2);
    c.register_spec("t", DatasetSpec::parse(spec).unwrap()).unwrap();
    let a = c.run_udf("t", Sum::new(), None).await.unwrap().buffers["intensity"].to_f64();
    let b = c.run_udf("t", SumSig, None).await.unwrap().buffers["intensity"].to_f64();
    (a.iter().copied().collect(), b.iter().copied().collect())
}

fn expected(frames: &[Option<usize>]) -> (Vec<f64>, Vec<f64>) {
    let mut sum = vec![0.0; 20];
    let mut sig = Vec::new();
    for f in frames {
        match f {
            Some(f) => {
                let frame: Vec<f64> = (0..20).map(|p| value(f * 20 + p)).collect();
                for (s, v) in sum.iter_mut().zip(&frame) {
                    *s += v;
                }
                sig.push(frame.iter().sum());
            }
            None => sig.push(0.0),
        }
    }
    (sum, sig)
}

#[tokio::test]
async fn raw_every_dtype_and_byte_order() {
    let dir = tempdir();
    let names = ["uint8", "uint16", "uint32", "int16", "int32", "float32", "float64", "int8", "int64", "uint64"];
    for name in names {
        let (dtype, _) = DType::parse(name).unwrap();
        for big in [false, true] {
            let bytes: Vec<u8> = (0..N).flat_map(|i| encode(dtype, big, value(i))).collect();
            let p = dir.path().join(format!("{name}{big}.raw"));
            std::fs::write(&p, bytes).unwrap();
            let dt = if big { format!(">{name}") } else { name.to_string() };
            let spec = format!("{},format=raw,nav=2x3,sig=4x5,dtype={dt}", p.display());
            let (sum, sig) = sums(&spec).await;
            let want = expected(&(0..6).map(Some).collect::<Vec<_>>());
            assert_eq!((sum, sig), want, "{dt}");
        }
    }
}

#[tokio::test]
async fn pick_returns_native_dtype() {
    let dir = tempdir();
    let bytes: Vec<u8> = (0..N).flat_map(|i| encode(DType::U16, true, value(i))).collect();
    let p = dir.path().join("be.raw");
    std::fs::write(&p, bytes).unwrap();
    let c = ctx(1);
    c.register_spec("t", DatasetSpec::parse(&format!("{},format=raw,nav=2x3,sig=4x5,dtype=>u2", p.display())).unwrap())
        .unwrap();
    let b = c.sql("SELECT tile FROM t WHERE nav_index = 4").await.unwrap().collect().await.unwrap();
    let tile = b.iter().find(|b| b.num_rows() > 0).unwrap().column(0).as_fixed_size_list().value(0);
    let px = tile.as_primitive::<arrow::datatypes::UInt16Type>();
    let want: Vec<u16> = (0..20).map(|p| value(80 + p) as u16).collect();
    assert_eq!(px.values().to_vec(), want);
}

fn write_npy_version(path: &std::path::Path, version: u8, data: &[u8]) {
    let header = "{'descr': '<u2', 'fortran_order': False, 'shape': (2, 3, 4, 5), }";
    let mut h = header.to_string();
    let pre = if version == 1 { 10 } else { 12 };
    while !(pre + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = vec![0x93, b'N', b'U', b'M', b'P', b'Y', version, 0];
    if version == 1 {
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap();
}

#[tokio::test]
async fn npy_versions_reinterpretation_and_sync_offset() {
    let dir = tempdir();
    let data: Vec<u8> = (0..N).flat_map(|i| (value(i) as u16).to_le_bytes()).collect();
    let all = expected(&(0..6).map(Some).collect::<Vec<_>>());
    for v in [1u8, 2, 3] {
        let p = dir.path().join(format!("v{v}.npy"));
        write_npy_version(&p, v, &data);
        assert_eq!(sums(p.to_str().unwrap()).await, all, "npy v{v}");
    }
    let p = dir.path().join("w.npy");
    write_npy(&p, DType::U16, &[2, 3, 4, 5], &data).unwrap();
    assert_eq!(sums(p.to_str().unwrap()).await, all);
    // nav reinterpretation: 6 frames as a 1-D scan
    let (_, sig) = sums(&format!("{},nav=6", p.display())).await;
    assert_eq!(sig, all.1);
    assert!(tessera::dataset::open(&DatasetSpec::parse(&format!("{},nav=5", p.display())).unwrap()).is_err());
    // sync_offset: positive skips frames (blank at the end), negative inserts blank frames
    let (sum, sig) = sums(&format!("{},sync_offset=2", p.display())).await;
    assert_eq!((sum, sig), expected(&[Some(2), Some(3), Some(4), Some(5), None, None]));
    let raw = dir.path().join("s.raw");
    std::fs::write(&raw, &data).unwrap();
    let (sum, sig) = sums(&format!("{},format=raw,nav=2x3,sig=4x5,dtype=uint16,sync_offset=-1", raw.display())).await;
    assert_eq!((sum, sig), expected(&[None, Some(0), Some(1), Some(2), Some(3), Some(4)]));
}

#[tokio::test]
async fn mmap_and_pread_agree_and_synthetic_is_deterministic() {
    let dir = tempdir();
    let data: Vec<u8> = (0..N).flat_map(|i| (value(i) as f32).to_le_bytes()).collect();
    let p = dir.path().join("f.raw");
    std::fs::write(&p, &data).unwrap();
    let spec = format!("{},format=raw,nav=2x3,sig=4x5,dtype=float32", p.display());
    assert_eq!(sums(&spec).await, sums(&format!("{spec},io=pread")).await);
    assert_eq!(sums(&format!("{spec},io=mmap")).await, expected(&(0..6).map(Some).collect::<Vec<_>>()));
    let syn = "synthetic,nav=6x7,sig=16x16,dtype=float32,seed=3";
    let one = {
        let c = ctx(1);
        c.register_spec("s", DatasetSpec::parse(syn).unwrap()).unwrap();
        c.run_udf("s", SumSig, None).await.unwrap()
    };
    let four = {
        let c = ctx(4).with_batch_bytes(1000);
        c.register_spec("s", DatasetSpec::parse(syn).unwrap()).unwrap();
        c.run_udf("s", SumSig, None).await.unwrap()
    };
    assert_eq!(one, four);
    let v = one.buffers["intensity"].to_f64();
    assert!(v.iter().all(|x| x.is_finite() && *x > 0.0));
}

#[tokio::test]
async fn raw_file_series_from_a_glob() {
    let dir = tempdir();
    // 6 frames over three files of 1, 2 and 3 frames, each with a 4-byte header
    let mut frame = 0;
    for (i, k) in [1usize, 2, 3].iter().enumerate() {
        let mut bytes = vec![0xEE; 4];
        for _ in 0..*k {
            bytes.extend((0..20).flat_map(|p| (value(frame * 20 + p) as u16).to_le_bytes()));
            frame += 1;
        }
        std::fs::write(dir.path().join(format!("part{i}.bin")), bytes).unwrap();
    }
    let glob = format!("{}/part*.bin", dir.path().display());
    let spec = format!("{glob},format=raw,nav=2x3,sig=4x5,dtype=uint16,offset=4");
    assert_eq!(sums(&spec).await, expected(&(0..6).map(Some).collect::<Vec<_>>()));
    let (sum, sig) = sums(&format!("{spec},sync_offset=-2")).await;
    assert_eq!((sum, sig), expected(&[None, None, Some(0), Some(1), Some(2), Some(3)]));
    let msg = tessera::dataset::open(
        &DatasetSpec::parse(&format!("{glob},format=raw,nav=7,sig=4x5,dtype=uint16,offset=4")).unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("3 files") && msg.contains("hold 6 frames") && msg.contains("needs 7"), "{msg}");
    let msg = tessera::dataset::open(
        &DatasetSpec::parse(&format!("{}/nothing*.bin,format=raw,nav=1,sig=4x5,dtype=u2", dir.path().display()))
            .unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("no files match"), "{msg}");
}

/// Dark, gain, excluded pixels and sync_offset against an independent numpy reference
/// (scripts/check_corrections.py, in the project's Python venv).
#[tokio::test]
async fn corrections_and_sync_offset_match_numpy() {
    use tessera::export::write_npy as write_buffer;
    let dir = tempdir();
    let (n, sy, sx) = (12usize, 9usize, 7usize);
    let data: Vec<u16> = (0..n * sy * sx).map(|i| ((i * 37) % 1000) as u16).collect();
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.path().join("scan.raw"), &bytes).unwrap();
    write_npy(&dir.path().join("data.npy"), DType::U16, &[n, sy, sx], &bytes).unwrap();
    let dark: Vec<u8> = (0..sy * sx).flat_map(|i| ((i % 5) as f32 * 1.5).to_le_bytes()).collect();
    let gain: Vec<u8> = (0..sy * sx).flat_map(|i| (0.5 + (i % 3) as f32 * 0.25).to_le_bytes()).collect();
    write_npy(&dir.path().join("dark.npy"), DType::F32, &[sy, sx], &dark).unwrap();
    write_npy(&dir.path().join("gain.npy"), DType::F32, &[sy, sx], &gain).unwrap();
    let params = serde_json::json!({"excluded": [[0, 0], [4, 3], [4, 4], [8, 6]], "sync_offset": 2});
    std::fs::write(dir.path().join("params.json"), params.to_string()).unwrap();
    let spec = format!(
        "{d}/scan.raw,format=raw,nav=3x4,sig=9x7,dtype=uint16,sync_offset=2,dark={d}/dark.npy,gain={d}/gain.npy,excluded=0:0;4:3;4:4;8:6",
        d = dir.path().display()
    );
    let c = ctx(2);
    let ds = c.register_spec("scan", DatasetSpec::parse(&spec).unwrap()).unwrap();
    assert_eq!(ds.geometry().dtype, DType::F32, "corrected data is float32");
    let frames = c.pick("scan", None).await.unwrap();
    write_buffer(&frames, &dir.path().join("frames.npy")).unwrap();
    let sum = c.run_udf("scan", Sum::new(), None).await.unwrap();
    write_buffer(sum.buffer("intensity").unwrap(), &dir.path().join("sum.npy")).unwrap();
    let msg = tessera::dataset::open(
        &DatasetSpec::parse(&format!(
            "{}/scan.raw,format=raw,nav=3x4,sig=9x7,dtype=uint16,excluded=9:0",
            dir.path().display()
        ))
        .unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("'9:0' is not y:x inside the 9x7 frame"), "{msg}");
    let msg = tessera::dataset::open(
        &DatasetSpec::parse(&format!(
            "{}/scan.raw,format=raw,nav=3x4,sig=9x7,dtype=uint16,dark={}/data.npy",
            dir.path().display(),
            dir.path().display()
        ))
        .unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("dark=") && msg.contains("[12, 9, 7]"), "{msg}");
    let Some(py) = crate::export::python() else { return };
    let script = format!("{}/scripts/check_corrections.py", env!("CARGO_MANIFEST_DIR"));
    let o = std::process::Command::new(py).arg(script).arg(dir.path()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && text.contains("OK frames") && text.contains("OK sum"), "{text}");
}

#[tokio::test]
async fn empad_xml_names_the_raw_and_metadata_rows_are_dropped() {
    let dir = tempdir();
    // 3x2 scan of 130x128 float32 frames; rows 128 and 129 are metadata (huge values that must not count)
    let frames = 6;
    let pixel = |f: usize, r: usize, c: usize| if r >= 128 { 1e9 } else { ((f * 31 + r * 7 + c) % 97) as f32 };
    let raw: Vec<u8> = (0..frames)
        .flat_map(|f| (0..130).flat_map(move |r| (0..128).map(move |c| pixel(f, r, c))))
        .flat_map(|v: f32| v.to_le_bytes())
        .collect();
    std::fs::write(dir.path().join("scan_x2_y3.raw"), &raw).unwrap();
    let frame_sum = |f: usize| (0..128).flat_map(|r| (0..128).map(move |c| pixel(f, r, c) as f64)).sum::<f64>();
    let xml = |x: usize, y: usize, sx: usize, sy: usize| {
        format!(
            "<root>\n<raw_file filename=\"D:\\acq\\scan_x2_y3.raw\"/>\n<scan_parameters mode=\"search\">\
             <scan_resolution_x>{sx}</scan_resolution_x><scan_resolution_y>{sy}</scan_resolution_y></scan_parameters>\n\
             <scan_parameters mode=\"acquire\"><scan_resolution_x>{x}</scan_resolution_x>\
             <scan_resolution_y>{y}</scan_resolution_y></scan_parameters>\n</root>"
        )
    };
    // acquire shape matches; then a file whose frames match the "search" shape (LiberTEM's fixup)
    for (name, text, nav) in [
        ("a.xml", xml(2, 3, 16, 16), vec![3, 2]),
        ("b.xml", xml(4, 4, 2, 3), vec![3, 2]),
        ("c.xml", xml(4, 4, 1, 1), vec![]),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let spec = DatasetSpec::parse(p.to_str().unwrap()).unwrap();
        let ds = tessera::dataset::open(&spec);
        if nav.is_empty() {
            // neither 4x4 nor 1x1 holds the 6 frames: a clear error, not a guess
            let msg = ds.unwrap_err().to_string();
            assert!(msg.contains("6 frames") && msg.contains("truncated?"), "{msg}");
            continue;
        }
        let ds = ds.unwrap();
        assert_eq!(ds.spec().format.as_deref(), Some("empad"));
        assert_eq!(ds.geometry().nav.dims(), &nav[..]);
        assert_eq!(ds.geometry().sig.dims(), &[128, 128]);
        let (_, sig) = sums(p.to_str().unwrap()).await;
        assert_eq!(sig, (0..frames).map(frame_sum).collect::<Vec<_>>());
        let (_, sig) = sums(&format!("{},sync_offset=1", p.display())).await;
        assert_eq!(sig, (1..frames).map(frame_sum).chain([0.0]).collect::<Vec<_>>());
    }
    // the .raw alone needs nav=; a truncated .raw is an error naming it
    let rawp = dir.path().join("scan_x2_y3.raw");
    assert!(tessera::dataset::open(&DatasetSpec::parse(&format!("{},format=empad", rawp.display())).unwrap()).is_err());
    let (_, sig) = sums(&format!("{},format=empad,nav=6", rawp.display())).await;
    assert_eq!(sig.len(), 6);
    std::fs::write(&rawp, &raw[..raw.len() - 100]).unwrap();
    let msg = tessera::dataset::open(&DatasetSpec::parse(dir.path().join("a.xml").to_str().unwrap()).unwrap())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("scan_x2_y3.raw") && msg.contains("truncated"), "{msg}");
}
