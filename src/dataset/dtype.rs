//! Pixel and result element types.

use crate::error::{Error, Result};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float32Type, Float64Type, Int16Type, Int32Type, UInt8Type, UInt16Type, UInt32Type,
};
use serde::{Deserialize, Serialize};

/// An element type, named as numpy names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum DType {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
}

/// Byte order of multi-byte values in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ByteOrder {
    /// Least significant byte first (x86, numpy's `<`).
    #[default]
    Little,
    /// Most significant byte first (numpy's `>`, Merlin MIB).
    Big,
}

impl ByteOrder {
    /// The machine's own order.
    pub const NATIVE: ByteOrder = if cfg!(target_endian = "little") { ByteOrder::Little } else { ByteOrder::Big };
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
        }
    }
    /// numpy's name (`uint16`, `float32`...).
    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }
    /// Whether this is a floating point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
    /// Whether Tessera's kernels take this type as native pixel type (u8, u16, u32, i16, i32, f32,
    /// f64); other types widen when decoded.
    pub fn is_pixel(self) -> bool {
        !matches!(self, DType::U64 | DType::I64 | DType::I8)
    }
    /// The Arrow type of one element.
    pub fn arrow(self) -> DataType {
        match self {
            DType::U8 => DataType::UInt8,
            DType::U16 => DataType::UInt16,
            DType::U32 => DataType::UInt32,
            DType::U64 => DataType::UInt64,
            DType::I8 => DataType::Int8,
            DType::I16 => DataType::Int16,
            DType::I32 => DataType::Int32,
            DType::I64 => DataType::Int64,
            DType::F32 => DataType::Float32,
            DType::F64 => DataType::Float64,
        }
    }
    /// The element type of an Arrow type, if it is one.
    pub fn from_arrow(dt: &DataType) -> Option<DType> {
        Some(match dt {
            DataType::UInt8 => DType::U8,
            DataType::UInt16 => DType::U16,
            DataType::UInt32 => DType::U32,
            DataType::UInt64 => DType::U64,
            DataType::Int8 => DType::I8,
            DataType::Int16 => DType::I16,
            DataType::Int32 => DType::I32,
            DataType::Int64 => DType::I64,
            DataType::Float32 => DType::F32,
            DataType::Float64 => DType::F64,
            _ => return None,
        })
    }
    /// numpy's `result_type(self, float32)`: the float type a sum of this type is kept in
    /// (float32 for types of up to 16 bits and float32, float64 otherwise), as LiberTEM 0.16 does.
    pub fn float_result(self) -> DType {
        match self {
            DType::U8 | DType::U16 | DType::I8 | DType::I16 | DType::F32 => DType::F32,
            _ => DType::F64,
        }
    }

    /// Parses a numpy dtype name with optional byte order: `uint16`, `u2`, `<u2`, `>u2`, `float32`,
    /// `f4`, `>f8`, `int16`... A missing byte order means little-endian (numpy's default on x86).
    ///
    /// ```
    /// use tessera::dataset::{ByteOrder, DType};
    /// assert_eq!(DType::parse(">u2").unwrap(), (DType::U16, ByteOrder::Big));
    /// assert_eq!(DType::parse("float32").unwrap(), (DType::F32, ByteOrder::Little));
    /// assert!(DType::parse("complex64").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<(DType, ByteOrder)> {
        let t = text.trim();
        let (order, rest) = match t.chars().next() {
            Some('<') => (ByteOrder::Little, &t[1..]),
            Some('>') => (ByteOrder::Big, &t[1..]),
            Some('=') => (ByteOrder::NATIVE, &t[1..]),
            Some('|') => (ByteOrder::NATIVE, &t[1..]),
            _ => (ByteOrder::Little, t),
        };
        let dt = match rest.to_ascii_lowercase().as_str() {
            "u1" | "uint8" | "b1" | "bool" | "ubyte" => DType::U8,
            "u2" | "uint16" => DType::U16,
            "u4" | "uint32" => DType::U32,
            "u8" | "uint64" => DType::U64,
            "i1" | "int8" => DType::I8,
            "i2" | "int16" => DType::I16,
            "i4" | "int32" => DType::I32,
            "i8" | "int64" => DType::I64,
            "f4" | "float32" | "single" => DType::F32,
            "f8" | "float64" | "double" => DType::F64,
            _ => {
                return Err(Error::Spec(format!(
                    "unknown dtype '{text}' (use a numpy name such as uint8, uint16, uint32, int16, int32, \
                     float32, float64, optionally with byte order as in '>u2')"
                )));
            }
        };
        Ok((dt, order))
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A native pixel type that Tessera's kernels are generic over.
pub trait Pixel: arrow::datatypes::ArrowNativeType + Copy + Send + Sync + PartialOrd + Default + 'static {
    /// The Arrow primitive type with this native type.
    type Arrow: ArrowPrimitiveType<Native = Self>;
    /// The matching [`DType`].
    const DTYPE: DType;
    /// Widening conversion to f64 (exact for every pixel type).
    fn to_f64(self) -> f64;
    /// Conversion to f32 (rounds for 32-bit integers and f64).
    fn to_f32(self) -> f32;
    /// Conversion from f64 (saturating for integers).
    fn from_f64(v: f64) -> Self;
    /// Reverses the byte order.
    fn swap_bytes(self) -> Self;
}

macro_rules! impl_pixel {
    ($t:ty, $arrow:ty, $dt:expr, $swap:expr) => {
        impl Pixel for $t {
            type Arrow = $arrow;
            const DTYPE: DType = $dt;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn swap_bytes(self) -> Self {
                let f: fn($t) -> $t = $swap;
                f(self)
            }
        }
    };
}
impl_pixel!(u8, UInt8Type, DType::U8, |v| v);
impl_pixel!(u16, UInt16Type, DType::U16, u16::swap_bytes);
impl_pixel!(u32, UInt32Type, DType::U32, u32::swap_bytes);
impl_pixel!(i16, Int16Type, DType::I16, i16::swap_bytes);
impl_pixel!(i32, Int32Type, DType::I32, i32::swap_bytes);
impl_pixel!(f32, Float32Type, DType::F32, |v| f32::from_bits(v.to_bits().swap_bytes()));
impl_pixel!(f64, Float64Type, DType::F64, |v| f64::from_bits(v.to_bits().swap_bytes()));

/// Runs `$body` with the type alias `$T` bound to the native pixel type of `$dtype`; evaluates
/// `$other` for a dtype that is not a pixel type.
#[macro_export]
#[doc(hidden)]
macro_rules! with_pixel_type {
    ($dtype:expr, $T:ident => $body:expr, _ => $other:expr) => {
        match $dtype {
            $crate::dataset::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::dataset::DType::U16 => {
                type $T = u16;
                $body
            }
            $crate::dataset::DType::U32 => {
                type $T = u32;
                $body
            }
            $crate::dataset::DType::I16 => {
                type $T = i16;
                $body
            }
            $crate::dataset::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::dataset::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::dataset::DType::F64 => {
                type $T = f64;
                $body
            }
            _ => $other,
        }
    };
}
