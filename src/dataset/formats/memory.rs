//! In-memory datasets from ndarray arrays.

use crate::dataset::{BufferPool, Dataset, DatasetSpec, Geometry, Pixel};
use crate::error::{Error, Result};
use crate::geometry::Shape;
use arrow::buffer::Buffer;
use ndarray::ArrayD;

/// A dataset held in memory: the last two axes of the array are the frame, the others the scan.
///
/// ```
/// use tessera::dataset::{formats::memory::MemoryDataset, Dataset};
/// let data = ndarray::ArrayD::<u16>::zeros(vec![4, 5, 8, 8]);
/// let ds = MemoryDataset::new(data).unwrap();
/// assert_eq!(ds.geometry().nav.dims(), &[4, 5]);
/// ```
#[derive(Debug)]
pub struct MemoryDataset {
    spec: DatasetSpec,
    geometry: Geometry,
    data: Buffer,
}

impl MemoryDataset {
    /// Wraps `array` (copied once into C order if it is not already).
    pub fn new<T: Pixel>(array: ArrayD<T>) -> Result<Self> {
        let dims = array.shape().to_vec();
        if dims.len() < 3 {
            return Err(Error::Shape(format!(
                "an in-memory dataset needs nav axes and 2 sig axes, got shape {dims:?}"
            )));
        }
        let k = dims.len() - 2;
        let geometry =
            Geometry { nav: Shape::new(dims[..k].to_vec()), sig: Shape::new(dims[k..].to_vec()), dtype: T::DTYPE };
        let vec: Vec<T> = if array.is_standard_layout() {
            array.into_raw_vec_and_offset().0
        } else {
            array.as_standard_layout().iter().copied().collect()
        };
        let mut spec = DatasetSpec { format: Some("memory".into()), path: None, options: Default::default() };
        spec.options.insert("nav".into(), geometry.nav.to_string());
        spec.options.insert("sig".into(), geometry.sig.to_string());
        spec.options.insert("dtype".into(), T::DTYPE.name().into());
        Ok(MemoryDataset { spec, geometry, data: Buffer::from_vec(vec) })
    }
}

impl Dataset for MemoryDataset {
    fn spec(&self) -> &DatasetSpec {
        &self.spec
    }
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    fn read(&self, runs: &[(usize, usize)], pool: &BufferPool) -> Result<Buffer> {
        let fb = self.geometry.frame_bytes();
        if let [(start, count)] = runs {
            return Ok(self.data.slice_with_length(start * fb, count * fb));
        }
        let n: usize = runs.iter().map(|r| r.1).sum();
        pool.fill(n * fb, |out| {
            let mut pos = 0;
            for &(start, count) in runs {
                out[pos..pos + count * fb].copy_from_slice(&self.data[start * fb..(start + count) * fb]);
                pos += count * fb;
            }
            Ok(())
        })
    }
}
