//! UDF results in Rust: the result struct's tensors as typed ndarrays.

use super::adapter::VALID;
use crate::dataset::DType;
use crate::error::{Error, Result};
use crate::tensor::tensor_shape;
use arrow::array::{Array, AsArray, StructArray};
use arrow::datatypes::*;
use ndarray::{ArrayD, IxDyn};
use std::collections::BTreeMap;

/// One result buffer as a typed n-d array.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum ResultBuffer {
    U8(ArrayD<u8>),
    U16(ArrayD<u16>),
    U32(ArrayD<u32>),
    U64(ArrayD<u64>),
    I8(ArrayD<i8>),
    I16(ArrayD<i16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
}

macro_rules! each_variant {
    ($self:expr, $a:ident => $body:expr) => {
        match $self {
            ResultBuffer::U8($a) => $body,
            ResultBuffer::U16($a) => $body,
            ResultBuffer::U32($a) => $body,
            ResultBuffer::U64($a) => $body,
            ResultBuffer::I8($a) => $body,
            ResultBuffer::I16($a) => $body,
            ResultBuffer::I32($a) => $body,
            ResultBuffer::I64($a) => $body,
            ResultBuffer::F32($a) => $body,
            ResultBuffer::F64($a) => $body,
        }
    };
}

impl ResultBuffer {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            ResultBuffer::U8(_) => DType::U8,
            ResultBuffer::U16(_) => DType::U16,
            ResultBuffer::U32(_) => DType::U32,
            ResultBuffer::U64(_) => DType::U64,
            ResultBuffer::I8(_) => DType::I8,
            ResultBuffer::I16(_) => DType::I16,
            ResultBuffer::I32(_) => DType::I32,
            ResultBuffer::I64(_) => DType::I64,
            ResultBuffer::F32(_) => DType::F32,
            ResultBuffer::F64(_) => DType::F64,
        }
    }
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        each_variant!(self, a => a.shape())
    }
    /// The values widened to f64 (exact except for 64-bit integers beyond 2^53).
    #[allow(clippy::unnecessary_cast)] // the F64 arm casts f64 to f64
    pub fn to_f64(&self) -> ArrayD<f64> {
        each_variant!(self, a => a.mapv(|v| v as f64))
    }
    /// The values as little-endian bytes in C order.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        each_variant!(self, a => a.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
    /// The f32 array, if that is the dtype.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            ResultBuffer::F32(a) => Some(a),
            _ => None,
        }
    }
    /// The f64 array, if that is the dtype.
    pub fn as_f64(&self) -> Option<&ArrayD<f64>> {
        match self {
            ResultBuffer::F64(a) => Some(a),
            _ => None,
        }
    }

    /// Reads row `row` of a tensor column.
    pub fn from_tensor(field: &Field, column: &dyn Array, row: usize) -> Result<Self> {
        let shape = tensor_shape(field)
            .ok_or_else(|| Error::Shape(format!("column '{}' is not an arrow.fixed_shape_tensor", field.name())))?;
        let list = column
            .as_fixed_size_list_opt()
            .ok_or_else(|| Error::Shape(format!("column '{}' is not a FixedSizeList", field.name())))?;
        let values = list.value(row);
        macro_rules! conv {
            ($t:ty, $v:ident) => {{
                let a = values.as_primitive::<$t>();
                ResultBuffer::$v(
                    ArrayD::from_shape_vec(IxDyn(&shape), a.values().to_vec())
                        .map_err(|e| Error::Shape(format!("{}: {e}", field.name())))?,
                )
            }};
        }
        Ok(match values.data_type() {
            DataType::UInt8 => conv!(UInt8Type, U8),
            DataType::UInt16 => conv!(UInt16Type, U16),
            DataType::UInt32 => conv!(UInt32Type, U32),
            DataType::UInt64 => conv!(UInt64Type, U64),
            DataType::Int8 => conv!(Int8Type, I8),
            DataType::Int16 => conv!(Int16Type, I16),
            DataType::Int32 => conv!(Int32Type, I32),
            DataType::Int64 => conv!(Int64Type, I64),
            DataType::Float32 => conv!(Float32Type, F32),
            DataType::Float64 => conv!(Float64Type, F64),
            other => return Err(Error::Unsupported(format!("tensor of {other} in '{}'", field.name()))),
        })
    }
}

/// The results of one UDF: buffer name → array, and which frames were seen.
#[derive(Clone, Debug, PartialEq)]
pub struct Results {
    /// Result buffers by LiberTEM's names.
    pub buffers: BTreeMap<String, ResultBuffer>,
    /// Nav-shaped mask of the frames that were processed (present when the UDF has nav buffers).
    pub valid: Option<ArrayD<bool>>,
}

impl Results {
    /// Reads row `row` of a UDF result struct column.
    pub fn from_struct(array: &StructArray, row: usize) -> Result<Self> {
        let mut buffers = BTreeMap::new();
        let mut valid = None;
        for (field, column) in array.fields().iter().zip(array.columns()) {
            let buf = ResultBuffer::from_tensor(field, column.as_ref(), row)?;
            if field.name() == VALID {
                valid = Some(buf.to_f64().mapv(|v| v != 0.0));
            } else {
                buffers.insert(field.name().clone(), buf);
            }
        }
        Ok(Results { buffers, valid })
    }
    /// A buffer by name.
    pub fn get(&self, name: &str) -> Option<&ResultBuffer> {
        self.buffers.get(name)
    }
    /// A buffer by name, or an error naming the buffers there are.
    pub fn buffer(&self, name: &str) -> Result<&ResultBuffer> {
        self.get(name).ok_or_else(|| {
            Error::Shape(format!("no result buffer '{name}' (have: {:?})", self.buffers.keys().collect::<Vec<_>>()))
        })
    }
}
