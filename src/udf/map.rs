//! `map`: a per-frame Rust closure becomes a nav-shaped result without writing a UDF (LiberTEM's
//! AutoUDF).

use super::{Buffers, Meta, Method, Tile, Udf, Views};
use crate::dataset::{DType, Pixel};
use crate::error::Error;
use ndarray::{ArrayViewD, IxDyn};
use std::sync::Arc;

type FrameFn = dyn Fn(ArrayViewD<'_, f64>, &mut [f64]) + Send + Sync;

/// A UDF made of a per-frame function: `result[nav, ..] = f(frame)`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tessera::Result<()> {
/// use tessera::{Context, dataset::DatasetSpec, udf::map};
/// let ctx = Context::new()?;
/// ctx.register_spec("scan", DatasetSpec::parse("synthetic,nav=4x4,sig=16x16,dtype=uint16")?)?;
/// let brightest = map("brightest", |frame| frame.iter().cloned().fold(f64::MIN, f64::max));
/// let res = ctx.run_udf("scan", brightest, None).await?;
/// assert_eq!(res.buffer("result")?.shape(), &[4, 4]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Map {
    name: String,
    extra: Vec<usize>,
    f: Arc<FrameFn>,
    frame: Vec<f64>,
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Map({}, {:?})", self.name, self.extra)
    }
}

/// A UDF named `name` whose nav-shaped `result` (float64) holds `f(frame)` for every frame; the frame
/// arrives as f64 with the sig shape.
pub fn map(name: &str, f: impl Fn(ArrayViewD<'_, f64>) -> f64 + Send + Sync + 'static) -> Map {
    Map::new(name, &[], move |frame, out| out[0] = f(frame))
}

impl Map {
    /// A UDF whose `result` has `extra` axes per frame: `f` fills the frame's `extra`-sized slice.
    pub fn new(
        name: &str,
        extra: &[usize],
        f: impl Fn(ArrayViewD<'_, f64>, &mut [f64]) + Send + Sync + 'static,
    ) -> Self {
        Map { name: name.to_string(), extra: extra.to_vec(), f: Arc::new(f), frame: Vec::new() }
    }
}

impl Udf for Map {
    fn name(&self) -> &str {
        &self.name
    }
    fn buffers(&self, _meta: &Meta) -> crate::Result<Buffers> {
        if self.name.is_empty() {
            return Err(Error::udf("map", "the UDF needs a name"));
        }
        Ok(Buffers::new().nav_extra("result", &self.extra, DType::F64))
    }
    fn method(&self) -> Method {
        Method::Frame
    }
    fn process_frame<T: Pixel>(&mut self, frame: &Tile<'_, T>, out: &mut Views<'_>) -> crate::Result<()> {
        self.frame.clear();
        self.frame.extend(frame.data().iter().map(|v| v.to_f64()));
        let mut shape = vec![];
        shape.extend_from_slice(&frame.view().shape()[1..]);
        let view = ArrayViewD::from_shape(IxDyn(&shape), &self.frame).expect("frame length matches the sig shape");
        (self.f)(view, out.nav("result"));
        Ok(())
    }
}
