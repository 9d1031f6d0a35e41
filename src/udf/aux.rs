//! Aux data: per-frame parameters (weights, shifts) from a registered array or an .npy file.
//!
//! `aux('name' | '/path/values.npy', nav_index)` returns the frame's value — Float64 for a 1-D or 2-D
//! array (one value per frame), a fixed-size list of k Float64 for an array of 3 or more axes whose
//! last axis has k entries (shifts of a 2-D scan: `(ny, nx, 2)`). Pass it to a UDF parameter that takes aux data:
//!
//! ```sql
//! SELECT udf_apply_masks(tile, masks('disk(32, 32, 8)'), shifts => aux('shifts.npy', nav_index)) FROM scan
//! ```

use crate::dataset::formats::npy::{NpyHeader, read_npy_f64};
use crate::error::Error;
use arrow::array::{Array, AsArray, FixedSizeListArray, Float64Array};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// One aux array: the values, frame-major, and how many each frame has.
type AuxArray = Arc<(Vec<f64>, usize)>;

/// Arrays registered for `aux('name', nav_index)`: values per frame, `k` values each.
#[derive(Debug, Default, Clone)]
pub struct AuxRegistry {
    arrays: Arc<RwLock<HashMap<String, AuxArray>>>,
}

impl AuxRegistry {
    /// Registers `values` (frames × `per_frame`) as `name`.
    pub fn insert(&self, name: &str, values: Vec<f64>, per_frame: usize) {
        self.arrays
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.into(), Arc::new((values, per_frame.max(1))));
    }

    /// The array `name`, or the .npy file it names (cached); `nav` is the number of frames.
    fn get(&self, name: &str) -> crate::Result<AuxArray> {
        if let Some(a) = self.arrays.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(a.clone());
        }
        if !name.to_ascii_lowercase().ends_with(".npy") {
            return Err(Error::Spec(format!("aux: no array named '{name}' is registered (or give an .npy path)")));
        }
        let h = NpyHeader::read(name)?;
        let values = read_npy_f64(name, &h)?;
        // 1-D and 2-D arrays hold one value per frame (a scan's shape); from 3-D on, the last axis
        // holds each frame's values (shifts of a 2-D scan: (ny, nx, 2)).
        let per_frame = if h.shape.len() >= 2 && h.shape.len() != 2 { *h.shape.last().expect("non-empty") } else { 1 };
        let a = Arc::new((values, per_frame));
        self.arrays.write().unwrap_or_else(|e| e.into_inner()).insert(name.into(), a.clone());
        Ok(a)
    }
}

/// `aux(name, nav_index)`.
#[derive(Debug)]
pub struct AuxFunction {
    signature: Signature,
    registry: AuxRegistry,
}

impl AuxFunction {
    /// The function over `registry`.
    pub fn new(registry: AuxRegistry) -> Self {
        AuxFunction { signature: Signature::exact(vec![DataType::Utf8, DataType::Int64], Volatility::Stable), registry }
    }
}

impl PartialEq for AuxFunction {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.registry.arrays, &other.registry.arrays)
    }
}
impl Eq for AuxFunction {}
impl std::hash::Hash for AuxFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "aux".hash(state)
    }
}

impl ScalarUDFImpl for AuxFunction {
    fn name(&self) -> &str {
        "aux"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let Some(Some(ScalarValue::Utf8(Some(name)))) = args.scalar_arguments.first() else {
            return plan_err!("aux: the first argument must be a literal name or .npy path");
        };
        let a = self.registry.get(name).map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
        let dt = if a.1 == 1 {
            DataType::Float64
        } else {
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float64, true)), a.1 as i32)
        };
        Ok(Arc::new(Field::new("aux", dt, true)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let name = match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(s))) => s.clone(),
            _ => return exec_err!("aux: the first argument must be a literal"),
        };
        let a = self.registry.get(&name)?;
        let (values, k) = (&a.0, a.1);
        let idx = args.args[1].clone().into_array(n)?;
        let idx = idx.as_primitive::<Int64Type>();
        let frames = values.len() / k;
        let mut out = Vec::with_capacity(n * k);
        for i in 0..n {
            let f = idx.value(i);
            if idx.is_null(i) || f < 0 || f as usize >= frames {
                return exec_err!("aux('{name}'): nav_index {f} is outside its {frames} frames");
            }
            out.extend_from_slice(&values[f as usize * k..(f as usize + 1) * k]);
        }
        let values = Arc::new(Float64Array::from(out));
        Ok(ColumnarValue::Array(if k == 1 {
            values
        } else {
            Arc::new(FixedSizeListArray::try_new(
                Arc::new(Field::new("item", DataType::Float64, true)),
                k as i32,
                values,
                None,
            )?)
        }))
    }
}
