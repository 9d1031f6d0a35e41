//! Arrow's canonical `arrow.fixed_shape_tensor` extension type, written so that pyarrow reads it.
//!
//! Storage is a `FixedSizeList` with a *nullable* item field (pyarrow's Parquet reader drops the
//! extension otherwise) and the metadata is written by hand as `{"shape":[..]}` (arrow-rs writes
//! `"dim_names":null`, which pyarrow refuses).

use crate::dataset::{Axis, Calibration, DType, Geometry};
use crate::geometry::Shape;
use arrow::array::{Array, ArrayRef, FixedSizeListArray};
use arrow::datatypes::{DataType, Field};
use std::collections::HashMap;
use std::sync::Arc;

/// Field metadata key of an extension type's name.
pub const EXTENSION_NAME: &str = "ARROW:extension:name";
/// Field metadata key of an extension type's parameters.
pub const EXTENSION_METADATA: &str = "ARROW:extension:metadata";
/// The canonical tensor extension's name.
pub const FIXED_SHAPE_TENSOR: &str = "arrow.fixed_shape_tensor";

/// Metadata keys Tessera puts on the `tile` field: the dataset's geometry.
pub mod keys {
    /// JSON array: the nav shape.
    pub const NAV_SHAPE: &str = "tessera.nav_shape";
    /// JSON array: the sig shape.
    pub const SIG_SHAPE: &str = "tessera.sig_shape";
    /// numpy name of the native pixel type.
    pub const DTYPE: &str = "tessera.dtype";
    /// The dataset's table name.
    pub const DATASET: &str = "tessera.dataset";
    /// JSON: the dataset's [`Calibration`](crate::dataset::Calibration), where the file has one.
    pub const CALIBRATION: &str = "tessera.calibration";
    /// JSON array on result tensors: per dimension, its calibrated [`Axis`](crate::dataset::Axis)
    /// or `null`.
    pub const AXES: &str = "tessera.axes";
}

/// The storage type of a tensor of `shape` with elements of `item`.
pub fn tensor_type(item: &DataType, shape: &[usize]) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new("item", item.clone(), true)), shape.iter().product::<usize>() as i32)
}

/// The extension metadata of a tensor of `shape`.
pub fn tensor_metadata(shape: &[usize]) -> HashMap<String, String> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    HashMap::from([
        (EXTENSION_NAME.to_string(), FIXED_SHAPE_TENSOR.to_string()),
        (EXTENSION_METADATA.to_string(), format!("{{\"shape\":[{}]}}", dims.join(","))),
    ])
}

/// A tensor field whose dimensions are named (`dim_names` in the extension metadata, which pyarrow
/// shows) and, where known, calibrated (`tessera.axes`).
pub fn named_tensor_field(
    name: &str,
    item: &DataType,
    shape: &[usize],
    names: &[String],
    axes: &[Option<Axis>],
) -> Field {
    let mut md = tensor_metadata(shape);
    if names.len() == shape.len() {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let quoted = serde_json::to_string(names).expect("json");
        md.insert(EXTENSION_METADATA.into(), format!("{{\"shape\":[{}],\"dim_names\":{quoted}}}", dims.join(",")));
    }
    if axes.iter().any(Option::is_some) {
        md.insert(keys::AXES.into(), serde_json::to_string(axes).expect("json"));
    }
    Field::new(name, tensor_type(item, shape), false).with_metadata(md)
}

/// A field holding one tensor of `shape` per row.
///
/// ```
/// use arrow::datatypes::DataType;
/// let f = tessera::tensor::tensor_field("intensity", &DataType::Float32, &[16, 16], false);
/// assert_eq!(tessera::tensor::tensor_shape(&f), Some(vec![16, 16]));
/// ```
pub fn tensor_field(name: &str, item: &DataType, shape: &[usize], nullable: bool) -> Field {
    Field::new(name, tensor_type(item, shape), nullable).with_metadata(tensor_metadata(shape))
}

/// The shape of a tensor field, if it is one.
pub fn tensor_shape(field: &Field) -> Option<Vec<usize>> {
    if field.metadata().get(EXTENSION_NAME).map(|s| s.as_str()) != Some(FIXED_SHAPE_TENSOR) {
        return None;
    }
    let meta: serde_json::Value = serde_json::from_str(field.metadata().get(EXTENSION_METADATA)?).ok()?;
    meta.get("shape")?.as_array()?.iter().map(|v| v.as_u64().map(|d| d as usize)).collect()
}

/// The field of a tile column of a dataset with `geometry`, carrying the geometry as metadata.
pub fn tile_field(geometry: &Geometry, dataset: &str, calibration: &Calibration) -> Field {
    let mut md = tensor_metadata(geometry.sig.dims());
    if !calibration.is_empty() {
        md.insert(keys::CALIBRATION.into(), calibration.to_json());
    }
    md.insert(keys::NAV_SHAPE.into(), serde_json::to_string(geometry.nav.dims()).expect("json"));
    md.insert(keys::SIG_SHAPE.into(), serde_json::to_string(geometry.sig.dims()).expect("json"));
    md.insert(keys::DTYPE.into(), geometry.dtype.name().into());
    md.insert(keys::DATASET.into(), dataset.into());
    Field::new("tile", tensor_type(&geometry.dtype.arrow(), geometry.sig.dims()), false).with_metadata(md)
}

/// The calibration carried by a tile field (empty if none).
pub fn tile_calibration(field: &Field) -> Calibration {
    field.metadata().get(keys::CALIBRATION).and_then(|j| Calibration::from_json(j)).unwrap_or_default()
}

/// The dataset geometry and name carried by a tile field; `None` if the field is not a tile.
pub fn tile_geometry(field: &Field) -> Option<(Geometry, String)> {
    let md = field.metadata();
    let nav: Vec<usize> = serde_json::from_str(md.get(keys::NAV_SHAPE)?).ok()?;
    let sig: Vec<usize> = serde_json::from_str(md.get(keys::SIG_SHAPE)?).ok()?;
    let (dtype, _) = DType::parse(md.get(keys::DTYPE)?).ok()?;
    let DataType::FixedSizeList(item, n) = field.data_type() else { return None };
    if item.data_type() != &dtype.arrow() || *n as usize != sig.iter().product::<usize>() {
        return None;
    }
    let name = md.get(keys::DATASET).cloned().unwrap_or_default();
    Some((Geometry { nav: Shape::new(nav), sig: Shape::new(sig), dtype }, name))
}

/// Wraps one tensor's flat values as a one-row tensor array.
pub fn one_tensor(values: ArrayRef, shape: &[usize]) -> FixedSizeListArray {
    let item = Arc::new(Field::new("item", values.data_type().clone(), true));
    debug_assert_eq!(values.len(), shape.iter().product::<usize>());
    FixedSizeListArray::new(item, shape.iter().product::<usize>() as i32, values, None)
}
