//! The element types of tensors: their names, DLPack codes and sizes, how Arrow types map to
//! them, which one holds a mix of columns, and the conversion of a value into each.

use arrow_schema::{DataType, SchemaRef};
use half::f16;

use crate::error::{Error, Result};

/// Element types a tensor can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F16,
    F32,
    F64,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Bool,
    Int,
    Float,
}

impl DType {
    pub const ALL: [DType; 12] = [
        DType::Bool,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::F16,
        DType::F32,
        DType::F64,
    ];

    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 | DType::F16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// The name torch gives the type.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::F16 => "float16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    pub fn from_name(name: &str) -> Result<Self> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| {
                Error::Type(format!(
                    "dtype {name} is not one a tensor can be built as; use one of {}",
                    DType::ALL.map(|d| d.name()).join(", ")
                ))
            })
    }

    pub fn from_arrow(dt: &DataType) -> Option<Self> {
        Some(match dt {
            DataType::Boolean => DType::Bool,
            DataType::Int8 => DType::I8,
            DataType::Int16 => DType::I16,
            DataType::Int32 => DType::I32,
            DataType::Int64 => DType::I64,
            DataType::UInt8 => DType::U8,
            DataType::UInt16 => DType::U16,
            DataType::UInt32 => DType::U32,
            DataType::UInt64 => DType::U64,
            DataType::Float16 => DType::F16,
            DataType::Float32 => DType::F32,
            DataType::Float64 => DType::F64,
            _ => return None,
        })
    }

    /// DLPack's type code (0 int, 1 uint, 2 float, 6 bool) and bit width.
    pub fn dlpack_code(self) -> (u8, u8) {
        let code = match self.kind() {
            Kind::Bool => 6,
            Kind::Int if self.signed() => 0,
            Kind::Int => 1,
            Kind::Float => 2,
        };
        (code, (self.size() * 8) as u8)
    }

    fn kind(self) -> Kind {
        match self {
            DType::Bool => Kind::Bool,
            DType::F16 | DType::F32 | DType::F64 => Kind::Float,
            _ => Kind::Int,
        }
    }

    pub fn signed(self) -> bool {
        matches!(self, DType::I8 | DType::I16 | DType::I32 | DType::I64)
    }

    fn int(size: usize, signed: bool) -> DType {
        match (size, signed) {
            (1, true) => DType::I8,
            (2, true) => DType::I16,
            (4, true) => DType::I32,
            (8, true) => DType::I64,
            (1, false) => DType::U8,
            (2, false) => DType::U16,
            (4, false) => DType::U32,
            _ => DType::U64,
        }
    }
}

/// Runs `$body` with `$T` the Rust type of the tensor element type `$dtype` (`bool`, `i8` ...
/// `half::f16`, `f32`, `f64`): the one dispatch from a runtime [`DType`] to code generic over
/// the element, for a target type and a source type alike. With `bool => $other`, `$other`
/// runs for `Bool` instead (Arrow packs bools in bits: a slice of them is not `&[bool]`).
#[macro_export]
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        $crate::with_dtype!($dtype, $T => $body, bool => {
            type $T = bool;
            $body
        })
    };
    ($dtype:expr, $T:ident => $body:expr, bool => $bool:expr) => {
        match $dtype {
            $crate::dtype::DType::Bool => $bool,
            $crate::dtype::DType::I8 => {
                type $T = i8;
                $body
            }
            $crate::dtype::DType::I16 => {
                type $T = i16;
                $body
            }
            $crate::dtype::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::dtype::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::dtype::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::dtype::DType::U16 => {
                type $T = u16;
                $body
            }
            $crate::dtype::DType::U32 => {
                type $T = u32;
                $body
            }
            $crate::dtype::DType::U64 => {
                type $T = u64;
                $body
            }
            $crate::dtype::DType::F16 => {
                type $T = half::f16;
                $body
            }
            $crate::dtype::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::dtype::DType::F64 => {
                type $T = f64;
                $body
            }
        }
    };
}

/// The type that holds every column, as `torch.result_type` picks it for tensors: floats beat
/// ints beat bool; the widest float wins; signed and unsigned ints meet in a signed int twice as
/// wide as the unsigned one (uint8 with int8 gives int16). Torch has no rule for uint16-64 with
/// signed ints; there we go on the same way (uint32 with int32 gives int64) and refuse uint64
/// with a signed int, which no integer type holds.
pub fn promote(dtypes: &[DType]) -> Result<DType> {
    let Some(kind) = dtypes.iter().map(|d| d.kind()).max() else {
        return Ok(DType::F32);
    };
    let widest = |pred: &dyn Fn(DType) -> bool| {
        dtypes
            .iter()
            .copied()
            .filter(|&d| pred(d))
            .map(DType::size)
            .max()
    };
    Ok(match kind {
        Kind::Bool => DType::Bool,
        Kind::Float => match widest(&|d| d.kind() == Kind::Float) {
            Some(2) => DType::F16,
            Some(4) => DType::F32,
            _ => DType::F64,
        },
        Kind::Int => {
            let s = widest(&|d| d.kind() == Kind::Int && d.signed());
            let u = widest(&|d| d.kind() == Kind::Int && !d.signed());
            match (s, u) {
                (Some(s), None) => DType::int(s, true),
                (None, Some(u)) => DType::int(u, false),
                (Some(s), Some(u)) if u < 8 => DType::int(s.max(2 * u), true),
                _ => {
                    return Err(Error::Type(
                        "uint64 and signed integer columns have no common integer type; pass \
                         dtype= (for example torch.float64 or torch.int64)"
                            .into(),
                    ))
                }
            }
        }
    })
}

/// Conversion into a tensor element type.
pub(crate) trait Element: Copy + Send + Sync + 'static {
    fn from_f64(v: f64) -> Self;
    fn from_i64(v: i64) -> Self;
    fn from_u64(v: u64) -> Self;
}

macro_rules! element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            #[inline(always)]
            fn from_f64(v: f64) -> Self { v as $t }
            #[inline(always)]
            fn from_i64(v: i64) -> Self { v as $t }
            #[inline(always)]
            fn from_u64(v: u64) -> Self { v as $t }
        }
    )*};
}
element!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

impl Element for bool {
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn from_i64(v: i64) -> Self {
        v != 0
    }
    fn from_u64(v: u64) -> Self {
        v != 0
    }
}

impl Element for f16 {
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    fn from_i64(v: i64) -> Self {
        f16::from_f64(v as f64)
    }
    fn from_u64(v: u64) -> Self {
        f16::from_f64(v as f64)
    }
}

/// A number as Arrow stores it (every tensor element type but bool, which Arrow packs in
/// bits), with its Arrow array type, converted into a tensor element the way a cast in Rust
/// converts it.
pub(crate) trait Native: arrow_buffer::ArrowNativeType {
    type Arrow: arrow_array::ArrowPrimitiveType<Native = Self>;

    fn to_element<T: Element>(self) -> T;
}

macro_rules! native {
    ($via:ident: $($t:ty => $arrow:ident),*) => {$(
        impl Native for $t {
            type Arrow = arrow_array::types::$arrow;

            #[inline(always)]
            fn to_element<T: Element>(self) -> T {
                native!(@convert $via, self)
            }
        }
    )*};
    (@convert signed, $v:expr) => { T::from_i64($v as i64) };
    (@convert unsigned, $v:expr) => { T::from_u64($v as u64) };
    (@convert float, $v:expr) => { T::from_f64($v as f64) };
    (@convert half, $v:expr) => { T::from_f64($v.to_f64()) };
}
native!(signed: i8 => Int8Type, i16 => Int16Type, i32 => Int32Type, i64 => Int64Type);
native!(unsigned: u8 => UInt8Type, u16 => UInt16Type, u32 => UInt32Type, u64 => UInt64Type);
native!(float: f32 => Float32Type, f64 => Float64Type);
native!(half: f16 => Float16Type);

/// Same column names and types in the same order (nullability and metadata may differ).
pub fn same_columns(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields().iter())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_follows_torch() {
        use DType::*;
        assert_eq!(promote(&[F32, I64]).unwrap(), F32);
        assert_eq!(promote(&[I64, F16]).unwrap(), F16);
        assert_eq!(promote(&[U8, I8]).unwrap(), I16);
        assert_eq!(promote(&[U8, I32]).unwrap(), I32);
        assert_eq!(promote(&[Bool, U8]).unwrap(), U8);
        assert_eq!(promote(&[Bool, Bool]).unwrap(), Bool);
        assert_eq!(promote(&[F16, F64, I8]).unwrap(), F64);
        assert!(promote(&[U64, I8]).is_err());
    }
}
