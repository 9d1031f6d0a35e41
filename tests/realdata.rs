//! Real detector files written by other software (../shared/realdata): every entry of expected.json
//! is checked through SQL — total, frame 0, weighted frame 0, per-frame sums
//! (file order) and the argmax of the summed frame. Corrupted copies give errors naming the file.

use crate::common::{ctx, shared, tempdir};
use arrow::array::AsArray;
use tessera::dataset::DatasetSpec;
use tessera::udf::Results;

fn as_f64(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap()
}

#[tokio::test]
async fn expected_values_of_real_files() {
    let Some(dir) = shared("realdata") else { return };
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (name, e) in expected.as_object().unwrap() {
        let file = e["file"].as_str().unwrap();
        let c = ctx(2);
        let ds = c.register_spec("scan", DatasetSpec::parse(dir.join(file).to_str().unwrap()).unwrap()).unwrap();
        let sig: Vec<usize> = e["sig_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(ds.geometry().sig.dims(), &sig[..], "{name}: sig shape");
        assert_eq!(ds.geometry().n_frames(), e["n_frames"].as_u64().unwrap() as usize, "{name}: frames");
        // the scan shape, where the file stores it (MIB only in a .hdr with ScanX/ScanY; otherwise
        // the manifest's nav is RosettaSciIO's guess and Tessera's is the frame count)
        let nav: Vec<usize> = e["nav_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let ours = ds.geometry().nav.dims().to_vec();
        if !(file.ends_with(".mib") && ours.len() == 1) {
            assert_eq!(ours, nav, "{name}: nav shape");
        }
        let b = c.sql("SELECT udf_sum(tile), udf_sum_sig(tile) FROM scan").await.unwrap().collect().await.unwrap();
        let sum = Results::from_struct(b[0].column(0).as_struct(), 0).unwrap().buffers["intensity"].to_f64();
        let sums = Results::from_struct(b[0].column(1).as_struct(), 0).unwrap().buffers["intensity"].to_f64();
        let total: f64 = sum.iter().sum();
        // float32 data gives float32 results (as LiberTEM): per-pixel sums are rounded to float32
        let rel = if e["dtype"].as_str().unwrap().ends_with("f4") { 1e-6 } else { 1e-9 };
        let tol = |x: f64| rel * x.abs().max(1.0);
        assert!((total - as_f64(&e["sum"])).abs() <= tol(total), "{name}: sum {total} vs {}", e["sum"]);
        let want: Vec<f64> = e["frame_sums"].as_array().unwrap().iter().map(as_f64).collect();
        let got: Vec<f64> = sums.iter().copied().collect();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= tol(*w), "{name}: frame {i} sum {g} vs {w}");
        }
        assert_eq!(got.len(), want.len());
        // sync_offset: +1 drops the first frame (a blank one at the end), -1 inserts a blank first frame
        for (shift, expect) in [
            (1i64, got[1..].iter().copied().chain([0.0]).collect::<Vec<f64>>()),
            (-1, [0.0].into_iter().chain(got[..got.len() - 1].iter().copied()).collect()),
        ] {
            let c3 = ctx(2);
            let spec = format!("{},sync_offset={shift}", dir.join(file).display());
            c3.register_spec("s", DatasetSpec::parse(&spec).unwrap()).unwrap();
            let b3 = c3.sql("SELECT udf_sum_sig(tile) FROM s").await.unwrap().collect().await.unwrap();
            let shifted = Results::from_struct(b3[0].column(0).as_struct(), 0).unwrap().buffers["intensity"].to_f64();
            assert_eq!(shifted.iter().copied().collect::<Vec<f64>>(), expect, "{name}: sync_offset={shift}");
        }
        if file.ends_with(".mib") {
            // decoding from a memory map gives the same frames as reading them in place
            let c2 = ctx(3);
            c2.register_spec("p", DatasetSpec::parse(&format!("{},io=mmap", dir.join(file).display())).unwrap())
                .unwrap();
            let b2 = c2.sql("SELECT udf_sum(tile), udf_sum_sig(tile) FROM p").await.unwrap().collect().await.unwrap();
            let sums2 = Results::from_struct(b2[0].column(1).as_struct(), 0).unwrap().buffers["intensity"].to_f64();
            let sum2 = Results::from_struct(b2[0].column(0).as_struct(), 0).unwrap().buffers["intensity"].to_f64();
            assert_eq!(sums2, sums, "{name}: io=mmap frame sums");
            assert_eq!(sum2, sum, "{name}: io=mmap summed frame");
        }
        // frame 0, weighted by flat pixel index: catches flips and transposes
        let frame0 =
            c.pick("scan", Some(&tessera::geometry::Roi::from_bools((0..want.len()).map(|i| i == 0)))).await.unwrap();
        let w: f64 = frame0.to_f64().iter().enumerate().map(|(i, v)| i as f64 * v).sum();
        assert!(
            (w - as_f64(&e["frame0_weighted_sum"])).abs() <= tol(w),
            "{name}: weighted frame 0 {w} vs {}",
            e["frame0_weighted_sum"]
        );
        let (mut best, mut at) = (f64::MIN, 0);
        for (i, v) in sum.iter().enumerate() {
            if *v > best {
                best = *v;
                at = i;
            }
        }
        let argmax = [at / sig[1], at % sig[1]];
        let want_argmax: Vec<usize> =
            e["sum_frame_argmax_yx"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(argmax[..], want_argmax[..], "{name}: argmax of the summed frame");
        checked += 1;
    }
    assert!(checked >= 17, "checked {checked} real files");
}

#[tokio::test]
async fn corrupted_copies_of_real_files_give_clear_errors() {
    let Some(dir) = shared("realdata") else { return };
    let tmp = tempdir();
    let src = dir.join("files/mib/Single_9_Frame_CounterDepth_12_Rows_256.mib");
    let bytes = std::fs::read(&src).unwrap();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("truncated.mib", bytes[..bytes.len() - 1000].to_vec(), "not a whole number of"),
        ("empty.mib", Vec::new(), "empty file"),
        ("corrupt.mib", [b"XX".to_vec(), bytes[2..].to_vec()].concat(), "does not start with 'MQ1,'"),
    ];
    for (name, data, want) in cases {
        let p = tmp.path().join(name);
        std::fs::write(&p, data).unwrap();
        let msg = tessera::dataset::open(&DatasetSpec::parse(p.to_str().unwrap()).unwrap()).unwrap_err().to_string();
        assert!(msg.contains(want) && msg.contains(name), "{name}: {msg}");
    }
    // every real file: cut short, emptied, its header overwritten — in a folder with its companions
    // (.hdr, _info.txt, .emi); each gives an error naming the file, when opened or at the latest when read
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    for (i, (name, e)) in expected.as_object().unwrap().iter().enumerate() {
        let src = dir.join(e["file"].as_str().unwrap());
        let bytes = std::fs::read(&src).unwrap();
        let fname = src.file_name().unwrap().to_str().unwrap().to_string();
        for (label, data) in [
            ("truncated", bytes[..bytes.len() - 7].to_vec()),
            ("halved", bytes[..bytes.len() / 2 + 3].to_vec()),
            ("empty", Vec::new()),
            ("corrupt", [b"CORRUPT-HEADER!!".to_vec(), bytes[16..].to_vec()].concat()),
        ] {
            let folder = tmp.path().join(format!("{i}-{label}"));
            std::fs::create_dir_all(&folder).unwrap();
            for companion in std::fs::read_dir(src.parent().unwrap()).unwrap() {
                let c = companion.unwrap().path();
                let ext = c.extension().and_then(|x| x.to_str()).unwrap_or_default();
                if ["hdr", "txt", "emi"].contains(&ext) {
                    std::fs::copy(&c, folder.join(c.file_name().unwrap())).unwrap();
                }
            }
            let p = folder.join(&fname);
            std::fs::write(&p, data).unwrap();
            let msg = match tessera::dataset::open(&DatasetSpec::parse(p.to_str().unwrap()).unwrap()) {
                Err(e) => e.to_string(),
                Ok(_) => {
                    let c = ctx(2);
                    c.register_spec("bad", DatasetSpec::parse(p.to_str().unwrap()).unwrap()).unwrap();
                    match c.sql("SELECT udf_sum(tile), udf_sum_sig(tile) FROM bad").await.unwrap().collect().await {
                        Err(e) => e.to_string(),
                        Ok(_) => panic!("{name}, {label}: read without an error"),
                    }
                }
            };
            assert!(msg.contains(&fname), "{name}, {label}: {msg}");
        }
    }
    // a later frame's header destroyed: the read fails and names the frame, no partial result
    let mut data = bytes.clone();
    let frame = 384 + 2 * 256 * 256;
    data[5 * frame..5 * frame + 3].copy_from_slice(b"XXX");
    let p = tmp.path().join("frame5.mib");
    std::fs::write(&p, data).unwrap();
    let c = ctx(2);
    c.register_spec("bad", DatasetSpec::parse(p.to_str().unwrap()).unwrap()).unwrap();
    let err = c.sql("SELECT udf_sum(tile) FROM bad").await.unwrap().collect().await.unwrap_err().to_string();
    assert!(err.contains("frame 5 has no MIB header") && err.contains("frame5.mib"), "{err}");
}

#[tokio::test]
async fn calibration_of_real_files_reaches_the_results() {
    let Some(dir) = shared("realdata") else { return };
    // (file, nav axis names, nav step, nav units, sig axis names)
    let cases = [
        ("files/emd_py4dstem/py4DSTEM_size2x3x4x5.h5", ["Rx", "Ry"], 0.126796875, "nm", ["Qx", "Qy"]),
        ("files/app5/topspin_test_B.app5", ["y", "x"], 5.0, "nm", ["ky", "kx"]),
    ];
    for (file, nav_names, step, units, sig_names) in cases {
        let c = ctx(2);
        c.register_spec("scan", DatasetSpec::parse(dir.join(file).to_str().unwrap()).unwrap()).unwrap();
        let b = c
            .sql("SELECT udf_sum_sig(tile) AS ss, udf_sum(tile) AS s FROM scan")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let schema = b[0].schema();
        let field = |col: &str| {
            let arrow::datatypes::DataType::Struct(fields) = schema.field_with_name(col).unwrap().data_type().clone()
            else {
                panic!("{col} is not a struct")
            };
            fields.find("intensity").unwrap().1.clone()
        };
        let (ss, s) = (field("ss"), field("s"));
        let ext = |f: &arrow::datatypes::Field| -> serde_json::Value {
            serde_json::from_str(&f.metadata()["ARROW:extension:metadata"]).unwrap()
        };
        assert_eq!(ext(&ss)["dim_names"], serde_json::json!(nav_names), "{file}");
        assert_eq!(ext(&s)["dim_names"], serde_json::json!(sig_names), "{file}");
        let axes: serde_json::Value = serde_json::from_str(&ss.metadata()["tessera.axes"]).unwrap();
        let got = axes[1]["scale"].as_f64().unwrap();
        assert!((got - step).abs() < 1e-9 * step, "{file}: scan step {got}");
        assert_eq!(axes[1]["units"], units, "{file}");
    }
}
