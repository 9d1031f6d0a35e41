//! Reads one HDF5 dataset of 3 or 4 dimensions with two libraries, the way Tessera's scan does (one
//! hyperslab per run of frames along the last scan dimension), and prints for each the sum of all
//! pixels (a checksum) and the best read time of `reps`.
//!
//! usage: hdf5-libraries FILE DS_PATH [REPS]

use hdf5_metno as c;
use hdf5_reader::{FilterRegistry, Hdf5File, OpenOptions, SliceInfo, SliceInfoElem};
use std::time::Instant;

// Tessera's own bitshuffle+LZ4 decoder (it depends on lz4_flex only), so both libraries read the
// DECTRIS files: the C library through hdf5plugin's plugin.
#[path = "../../../src/dataset/formats/hdf5/bitshuffle.rs"]
#[allow(dead_code)]
mod bitshuffle;

type Res<T> = Result<T, String>;

fn pure(path: &str, ds_path: &str) -> Res<(Vec<u64>, f64)> {
    let mut reg = FilterRegistry::new();
    reg.register(
        bitshuffle::FILTER_BITSHUFFLE,
        Box::new(|_, data, elem| bitshuffle::decode(data, elem).map_err(hdf5_reader::error::Error::FilterError)),
    );
    let f = Hdf5File::open_with_options(path, OpenOptions::default().with_filter_registry(reg))
        .map_err(|e| e.to_string())?;
    let ds = f.dataset(ds_path).map_err(|e| e.to_string())?;
    let shape = ds.shape().to_vec();
    let nav = &shape[..shape.len() - 2];
    let last = *nav.last().ok_or("fewer than 3 dimensions")?;
    let rows: u64 = nav[..nav.len() - 1].iter().product();
    let mut sum = 0.0;
    for r in 0..rows {
        let mut sel = Vec::new();
        if nav.len() == 2 {
            sel.push(SliceInfoElem::Index(r));
        }
        sel.push(SliceInfoElem::Slice { start: 0, end: last, step: 1 });
        for &d in &shape[shape.len() - 2..] {
            sel.push(SliceInfoElem::Slice { start: 0, end: d, step: 1 });
        }
        let sel = SliceInfo { selections: sel };
        use hdf5_reader::Datatype as D;
        sum += match ds.dtype() {
            D::FixedPoint { size: 1, signed: false, .. } => total(ds.read_slice::<u8>(&sel)),
            D::FixedPoint { size: 2, signed: false, .. } => total(ds.read_slice::<u16>(&sel)),
            D::FixedPoint { size: 4, signed: false, .. } => total(ds.read_slice::<u32>(&sel)),
            D::FixedPoint { size: 2, signed: true, .. } => total(ds.read_slice::<i16>(&sel)),
            D::FloatingPoint { size: 4, .. } => total(ds.read_slice::<f32>(&sel)),
            other => return Err(format!("dtype {other:?}")),
        }?;
    }
    Ok((shape, sum))
}

fn total<T: Copy + Into<f64>, E: ToString>(a: Result<ndarray::ArrayD<T>, E>) -> Res<f64> {
    Ok(a.map_err(|e| e.to_string())?.iter().map(|&v| v.into()).sum())
}

fn binding(path: &str, ds_path: &str) -> Res<(Vec<u64>, f64)> {
    let f = c::File::open(path).map_err(|e| e.to_string())?;
    let ds = f.dataset(ds_path).map_err(|e| e.to_string())?;
    let shape: Vec<u64> = ds.shape().iter().map(|&d| d as u64).collect();
    let desc = ds.dtype().and_then(|t| t.to_descriptor()).map_err(|e| e.to_string())?;
    use c::types::{FloatSize, IntSize, TypeDescriptor as T};
    macro_rules! read {
        ($t:ty) => {{
            let mut sum = 0.0;
            if shape.len() == 4 {
                for y in 0..shape[0] as usize {
                    let a = ds.read_slice::<$t, _, ndarray::Ix3>(ndarray::s![y, .., .., ..]).map_err(|e| e.to_string())?;
                    sum += a.iter().map(|&v| f64::from(v)).sum::<f64>();
                }
            } else if shape.len() == 3 {
                let a = ds.read::<$t, ndarray::Ix3>().map_err(|e| e.to_string())?;
                sum += a.iter().map(|&v| f64::from(v)).sum::<f64>();
            } else {
                return Err(format!("{} dimensions", shape.len()));
            }
            sum
        }};
    }
    let sum = match desc {
        T::Unsigned(IntSize::U1) => read!(u8),
        T::Unsigned(IntSize::U2) => read!(u16),
        T::Unsigned(IntSize::U4) => read!(u32),
        T::Integer(IntSize::U2) => read!(i16),
        T::Float(FloatSize::U4) => read!(f32),
        other => return Err(format!("dtype {other:?}")),
    };
    Ok((shape, sum))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (path, ds_path) = (&args[1], &args[2]);
    let reps: usize = args.get(3).map_or(1, |r| r.parse().unwrap());
    for (name, read) in [("hdf5-reader (pure Rust)", pure as fn(&str, &str) -> Res<(Vec<u64>, f64)>), ("hdf5-metno (C 1.10)", binding)] {
        let mut best = f64::MAX;
        let mut out = Err(String::new());
        for _ in 0..reps {
            let t = Instant::now();
            out = read(path, ds_path);
            best = best.min(t.elapsed().as_secs_f64());
        }
        match out {
            Ok((shape, sum)) => println!("{name:<24} {shape:?} sum={sum} best={best:.4}s"),
            Err(e) => println!("{name:<24} ERROR {e}"),
        }
    }
}
