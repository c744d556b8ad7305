//! Every crossing of Arrow data between Python and the core, in one module: the typed
//! arguments a binding takes (`FromPyObject` newtypes, as pyo3-arrow has them) and the
//! conversions of core results back to pyarrow. No other binding touches the Arrow C
//! interfaces or arrow-pyarrow.
//!
//! In: [`PyBatch`] (a record batch), [`PyBatches`] of [`Exported`] (batches kept exported,
//! for the zero-copy test before any import), [`PyStream`] (a table or stream),
//! [`PySchema`], [`PyValues`] (a primitive array of one type without nulls: row ids, split
//! ids, positions), [`PyOffsets`] (row offsets: a list of ints or an int64 array) and
//! [`PyOrder`] (an epoch's offsets, uint32 kept as it is). Data comes in through the Arrow
//! PyCapsule interface
//! (`__arrow_c_array__`, `__arrow_c_stream__`, `__arrow_c_schema__`), so any Arrow
//! library's arrays and batches are read, with no validation pass over data that pyarrow or
//! this crate already produced.
//!
//! Out: [`to_pyarrow`] (an array, a batch or a schema) and [`batch_to_py`], the hot path of
//! a take: pyarrow's `RecordBatch._import_from_c` given a pyarrow schema object kept per
//! column selection (no public pyarrow call imports an array against a ready schema, and
//! importing the schema again for every batch costs as much as the rest of the crossing;
//! arrow-pyarrow's own export uses the same call).

use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::ffi::{from_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::ffi_stream::RecordBatchStreamReader;
use arrow_array::{
    make_array, Array, ArrayRef, ArrowPrimitiveType, PrimitiveArray, RecordBatch,
    RecordBatchOptions, RecordBatchReader, StructArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, ScalarBuffer};
use arrow_data::ArrayData;
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use pyo3::exceptions::{PyIndexError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCapsule, PyCapsuleMethods, PyList, PyType};

use crate::dlpack::HostTensor;
use crate::dtype::DType;
use crate::error::Error;
use crate::tensor::{block_of, Block, Placed};

fn record_batch_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    TYPE.import(py, "pyarrow", "RecordBatch")
}

/// A `pyarrow.RecordBatch` over the batch's buffers (no copy). `schema` is the batch's
/// schema as a pyarrow object when the caller has one ready: pyarrow then skips building it
/// again, which is most of the cost of a crossing for a batch of many columns.
pub fn batch_to_py<'py>(
    py: Python<'py>,
    batch: RecordBatch,
    schema: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let data = StructArray::from(batch.clone()).into_data();
    let mut array = FFI_ArrowArray::new(&data);
    let import = pyo3::intern!(py, "_import_from_c");
    match schema {
        Some(schema) => {
            record_batch_type(py)?.call_method1(import, (&raw mut array as usize, schema))
        }
        None => {
            // The struct's own export carries no schema metadata: export the batch schema.
            let mut schema =
                FFI_ArrowSchema::try_from(batch.schema().as_ref()).map_err(Error::from)?;
            record_batch_type(py)?
                .call_method1(import, (&raw mut array as usize, &raw mut schema as usize))
        }
    }
}

/// A core Arrow value as its pyarrow object: an array (`ArrayData`), a record batch or a
/// schema.
pub fn to_pyarrow<'py>(py: Python<'py>, value: &impl ToPyArrow) -> PyResult<Bound<'py, PyAny>> {
    value.to_pyarrow(py)
}

/// A record batch argument: a pyarrow RecordBatch, or anything with `__arrow_c_array__` of
/// struct type, imported without a copy (see [`batch_from_py`]).
pub struct PyBatch(RecordBatch);

impl PyBatch {
    pub fn into_inner(self) -> RecordBatch {
        self.0
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for PyBatch {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        batch_from_py(&obj).map(PyBatch)
    }
}

/// A pyarrow RecordBatch (or anything with `__arrow_c_array__` of struct type) as a Rust
/// batch, trusting its producer.
pub fn batch_from_py(obj: &Bound<'_, PyAny>) -> PyResult<RecordBatch> {
    obj.extract::<Exported>()?.into_batch()
}

/// A pyarrow batch exported through the C Data Interface: its structs, read as they are (the
/// zero-copy check needs only where the columns lie) or imported as a Rust batch.
pub struct Exported {
    array: FFI_ArrowArray,
    schema: FFI_ArrowSchema,
}

impl<'a, 'py> FromPyObject<'a, 'py> for Exported {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let (array, schema) = exported_structs(&obj)?;
        Ok(Exported { array, schema })
    }
}

/// The batches of one table, each kept exported (see [`Exported`]); a list is read item by
/// item with no iterator made (one list a call on the conversion's hot path).
pub struct PyBatches(pub Vec<Exported>);

impl<'a, 'py> FromPyObject<'a, 'py> for PyBatches {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let batches = match obj.cast::<PyList>() {
            Ok(list) => list.iter().map(|b| b.extract()).collect::<PyResult<_>>()?,
            Err(_) => obj.extract()?,
        };
        Ok(PyBatches(batches))
    }
}

impl Exported {
    /// The batch, imported (its buffers shared, not copied).
    pub fn into_batch(self) -> PyResult<RecordBatch> {
        match self.primitive_batch() {
            Ok(batch) => Ok(batch),
            Err(exported) => exported.import(),
        }
    }

    /// The batch built straight from the structs when every column is a primitive number
    /// array, as a training batch's are: no schema parsed from its strings, no validation
    /// pass over what pyarrow made. `Err(self)` for anything else, imported the general way.
    #[allow(clippy::result_large_err)] // the Err is the input handed back, moved once
    fn primitive_batch(self) -> std::result::Result<RecordBatch, Self> {
        struct Column<'a> {
            name: &'a str,
            nullable: bool,
            data_type: DataType,
            offset: usize,
            nulls: usize,
            validity: *const u8,
            values: *const u8,
        }
        let (array, schema) = (&self.array, &self.schema);
        let rows = array.len();
        if schema.format() != "+s"
            || array.offset() != 0
            || array.null_count_opt() != Some(0)
            || rows == 0
            || array.num_children() != schema.children().count()
        {
            return Err(self);
        }
        #[allow(clippy::disallowed_methods)] // one a child of an array held already
        let mut columns = Vec::with_capacity(array.num_children());
        for c in 0..array.num_children() {
            let (child, field) = (array.child(c), schema.child(c));
            let Some(data_type) = format_type(field.format()) else {
                return Err(self);
            };
            let Some(nulls) = child.null_count_opt() else {
                return Err(self);
            };
            if child.len() != rows
                || child.num_buffers() != 2
                || child.num_children() != 0
                || child.dictionary().is_some()
                || child.buffer(1).is_null()
                || (nulls > 0 && child.buffer(0).is_null())
            {
                return Err(self);
            }
            columns.push(Column {
                name: field.name().unwrap_or(""),
                nullable: field.nullable(),
                data_type,
                offset: child.offset(),
                nulls,
                validity: child.buffer(0),
                values: child.buffer(1),
            });
        }
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(c.name, c.data_type.clone(), c.nullable))
            .collect();
        let columns: Vec<(DataType, usize, usize, *const u8, *const u8)> = columns
            .into_iter()
            .map(|c| (c.data_type, c.offset, c.nulls, c.validity, c.values))
            .collect();
        // Every buffer below is kept alive by the exported array, released when the last goes.
        let owner = Arc::new(self.array);
        let share = |ptr: *const u8, len: usize| {
            let ptr = NonNull::new(ptr as *mut u8).expect("checked not null");
            // SAFETY: `ptr` is one of the exported array's buffers, at least `len` bytes long
            // by the C Data Interface (offset + length values, or as many bits), and `owner`
            // keeps it alive and unchanged until the Buffer goes.
            unsafe { Buffer::from_custom_allocation(ptr, len, owner.clone()) }
        };
        let arrays: Vec<ArrayRef> = columns
            .into_iter()
            .map(|(data_type, offset, nulls, validity, values)| {
                let width = data_type.primitive_width().expect("a primitive format");
                let values = share(values, (offset + rows) * width);
                let nulls = (nulls > 0).then(|| {
                    let bits = share(validity, (offset + rows).div_ceil(8));
                    // SAFETY: the exported null count is the count of the bits' zeros.
                    unsafe {
                        NullBuffer::new_unchecked(BooleanBuffer::new(bits, offset, rows), nulls)
                    }
                });
                let builder = ArrayData::builder(data_type)
                    .len(rows)
                    .offset(offset)
                    .add_buffer(values)
                    .nulls(nulls);
                // SAFETY: the layout pyarrow exported for this primitive type: one values
                // buffer of offset + length elements and an optional validity bitmap.
                make_array(unsafe { builder.build_unchecked() })
            })
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
                .expect("fields made from the columns themselves"),
        )
    }

    /// The batch, imported through arrow-rs's C Data Interface import.
    fn import(self) -> PyResult<RecordBatch> {
        // SAFETY: pyarrow filled both structs; from_ffi takes over the array's release.
        let data = unsafe { from_ffi(self.array, &self.schema) }.map_err(Error::from)?;
        let rows = data.len();
        // The fields as from_ffi read them, not parsed a second time (the batch is converted,
        // never stored: its schema-level metadata is not needed).
        let (fields, columns, _) = StructArray::from(data).into_parts();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let schema = Arc::new(Schema::new(fields));
        Ok(RecordBatch::try_new_with_options(schema, columns, &options).map_err(Error::from)?)
    }

    /// The batch's values when they form one `(columns, rows)` block (see
    /// [`block_of`]), read from where the exported columns lie, before any import.
    fn block(&self) -> Option<Block> {
        let (array, schema) = (&self.array, &self.schema);
        if schema.format() != "+s" || array.offset() != 0 {
            return None;
        }
        let placed = (0..array.num_children()).map(|c| {
            let child = array.child(c);
            let dtype = format_dtype(schema.child(c).format())
                .filter(|_| child.num_buffers() == 2 && !child.buffer(1).is_null());
            // The column's first value; `offset` is within the buffer by the C Data
            // Interface. A column of no tensor type is placed with none, which no block takes.
            let first = match dtype {
                Some(d) => child.buffer(1).wrapping_add(child.offset() * d.size()),
                None => std::ptr::null(),
            };
            Placed {
                first,
                dtype,
                len: child.len(),
                // An unknown count is taken as nulls: no block holds it.
                nulls: child.null_count_opt().unwrap_or(usize::MAX),
            }
        });
        block_of(placed).filter(|b| b.rows == array.len())
    }

    /// The batch as one `(columns, rows)` tensor over its own memory, with no import, when
    /// its values form one block (see [`block_of`]) that `accept` takes (the type asked for,
    /// and `lending`'s word that this tensor may share it); `Err(self)` otherwise.
    #[allow(clippy::result_large_err)] // the Err is the input handed back, moved once
    pub fn into_block_tensor(
        self,
        accept: impl FnOnce(&Block) -> bool,
    ) -> std::result::Result<HostTensor, Self> {
        let Some(block) = self.block().filter(|b| accept(b)) else {
            return Err(self);
        };
        let start = NonNull::new(block.start as *mut u8).expect("a block starts at a value");
        // Every value of the block stays alive with the exported array, released when the
        // Buffer goes (its release frees pyarrow's hold on them).
        let owner = Arc::new(self.array);
        // SAFETY: the block's bytes from `start` are the exported batch's values (checked by
        // `block`), kept alive and unchanged by `owner` for as long as the Buffer lives.
        let buffer = unsafe { Buffer::from_custom_allocation(start, block.bytes(), owner) };
        let shape = vec![block.columns as i64, block.rows as i64];
        Ok(HostTensor::from_buffer(buffer, block.dtype, shape))
    }
}

/// The tensor type of a C Data Interface primitive format (bool, which Arrow packs in bits,
/// is not one).
fn format_dtype(format: &str) -> Option<DType> {
    DType::from_arrow(&format_type(format)?)
}

/// The Arrow number type of a C Data Interface primitive format.
fn format_type(format: &str) -> Option<DataType> {
    Some(match format {
        "c" => DataType::Int8,
        "C" => DataType::UInt8,
        "s" => DataType::Int16,
        "S" => DataType::UInt16,
        "i" => DataType::Int32,
        "I" => DataType::UInt32,
        "l" => DataType::Int64,
        "L" => DataType::UInt64,
        "e" => DataType::Float16,
        "f" => DataType::Float32,
        "g" => DataType::Float64,
        _ => return None,
    })
}

/// The values of a list of exact Python ints, read through the C API: a batch of a thousand
/// offsets arrives this way once per batch, and the checked per-item conversion costs several
/// times more than the read.
fn ints_of_list(list: &Bound<'_, PyList>) -> PyResult<Vec<i64>> {
    let py = list.py();
    // The critical section keeps other threads from changing the list while its items are
    // read through borrowed references (a no-op where the GIL does that already); owned
    // references would cost a reference count write to every int.
    pyo3::sync::critical_section::with_critical_section(list.as_any(), || {
        let n = list.len();
        #[allow(clippy::disallowed_methods)] // one an item of a list held already
        let mut out = Vec::with_capacity(n);
        for pos in 0..n {
            // SAFETY: `pos` is below the length of a list nothing else can change meanwhile;
            // the borrowed item is used before anything runs that could drop it.
            let item = unsafe { ffi::PyList_GetItem(list.as_ptr(), pos as ffi::Py_ssize_t) };
            if item.is_null() {
                return Err(PyErr::fetch(py));
            }
            // SAFETY: `item` is a live object.
            if unsafe { ffi::PyLong_CheckExact(item) } == 0 {
                return Err(PyTypeError::new_err(format!(
                    "row offset at position {pos} is not an int"
                )));
            }
            // SAFETY: as above; an exact int runs no `__index__`.
            let value = unsafe { ffi::PyLong_AsLongLong(item) };
            if value == -1 && PyErr::take(py).is_some() {
                // SAFETY: as above.
                let int = unsafe { Bound::from_borrowed_ptr(py, item) };
                return Err(PyIndexError::new_err(format!(
                    "row offset {int} (position {pos} of the request) is out of range"
                )));
            }
            out.push(value);
        }
        Ok(out)
    })
}

/// The values of an imported primitive array of type `T` without nulls, shared with the
/// producer, or a TypeError: "`what` must be ...". The one reader of ids and offsets.
fn values_of<T: ArrowPrimitiveType>(
    data: ArrayData,
    what: &str,
) -> PyResult<ScalarBuffer<T::Native>> {
    if data.data_type() != &T::DATA_TYPE || data.null_count() > 0 {
        let nulls = if data.null_count() > 0 {
            " with nulls"
        } else {
            ""
        };
        return Err(Error::Type(format!(
            "{what} must be {} without nulls, not {}{nulls}",
            T::DATA_TYPE,
            data.data_type()
        ))
        .into());
    }
    Ok(PrimitiveArray::<T>::from(data).values().clone())
}

/// A primitive Arrow array of type `T` without nulls (row ids, split ids, positions): its
/// values, shared with the producer.
pub struct PyValues<T: ArrowPrimitiveType>(pub ScalarBuffer<T::Native>);

impl<T: ArrowPrimitiveType> std::ops::Deref for PyValues<T> {
    type Target = [T::Native];

    fn deref(&self) -> &[T::Native] {
        &self.0
    }
}

impl<'a, 'py, T: ArrowPrimitiveType> FromPyObject<'a, 'py> for PyValues<T> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        values_of::<T>(array_from_py(&obj)?, "the array").map(PyValues)
    }
}

/// Row offsets: a list of Python ints (a DataLoader's batch) or an int64 Arrow array (shared,
/// not copied). A list holding anything but plain ints raises TypeError; the Python layer then
/// explains which element and why (or accepts numpy integers through the array path).
pub enum PyOffsets {
    Listed(Vec<i64>),
    Shared(ScalarBuffer<i64>),
}

impl std::ops::Deref for PyOffsets {
    type Target = [i64];

    fn deref(&self) -> &[i64] {
        match self {
            PyOffsets::Listed(v) => v,
            PyOffsets::Shared(v) => v,
        }
    }
}

impl PyOffsets {
    /// The offsets of an imported array: int64 without nulls.
    fn of_array(data: ArrayData) -> PyResult<Self> {
        values_of::<arrow_array::types::Int64Type>(data, "row offsets").map(PyOffsets::Shared)
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for PyOffsets {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(list) = obj.cast::<PyList>() {
            return Ok(PyOffsets::Listed(ints_of_list(&list)?));
        }
        PyOffsets::of_array(array_from_py(&obj)?)
    }
}

/// An epoch's row offsets: a uint32 Arrow array kept as it is (half the memory of int64, for
/// a table whose offsets all fit), or any [`PyOffsets`].
pub enum PyOrder {
    Narrow(ScalarBuffer<u32>),
    Wide(PyOffsets),
}

impl<'a, 'py> FromPyObject<'a, 'py> for PyOrder {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(list) = obj.cast::<PyList>() {
            return Ok(PyOrder::Wide(PyOffsets::Listed(ints_of_list(&list)?)));
        }
        let data = array_from_py(&obj)?;
        if data.data_type() == &DataType::UInt32 && data.null_count() == 0 {
            return values_of::<arrow_array::types::UInt32Type>(data, "row offsets")
                .map(PyOrder::Narrow);
        }
        PyOffsets::of_array(data).map(PyOrder::Wide)
    }
}

/// A stream of record batches (a pyarrow Table or RecordBatchReader, or anything with
/// `__arrow_c_stream__`), read to its end: its schema and batches, shared, not copied.
pub struct PyStream {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl<'a, 'py> FromPyObject<'a, 'py> for PyStream {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let reader = RecordBatchStreamReader::from_pyarrow_bound(&obj)?;
        let schema = reader.schema();
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::from)?;
        Ok(PyStream { schema, batches })
    }
}

/// A schema (a pyarrow Schema, or anything with `__arrow_c_schema__`).
pub struct PySchema(pub Schema);

impl<'a, 'py> FromPyObject<'a, 'py> for PySchema {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Schema::from_pyarrow_bound(&obj).map(PySchema)
    }
}

/// An Arrow array's data (any Arrow PyCapsule producer's), imported without a copy.
fn array_from_py(obj: &Bound<'_, PyAny>) -> PyResult<ArrayData> {
    let (array, schema) = exported_structs(obj)?;
    // SAFETY: the producer filled both structs; from_ffi takes over the array's release.
    Ok(unsafe { from_ffi(array, &schema) }.map_err(Error::from)?)
}

/// The C Data Interface structs an object exports through the Arrow PyCapsule interface
/// (`__arrow_c_array__`, which pyarrow's arrays and batches, polars and other Arrow
/// libraries have), moved out of their capsules: the capsules then release nothing, and the
/// structs release the producer's data when dropped.
fn exported_structs(obj: &Bound<'_, PyAny>) -> PyResult<(FFI_ArrowArray, FFI_ArrowSchema)> {
    let py = obj.py();
    let Some(method) = obj.getattr_opt(pyo3::intern!(py, "__arrow_c_array__"))? else {
        return Err(PyTypeError::new_err(format!(
            "expected Arrow data (an object with __arrow_c_array__, such as a pyarrow array \
             or record batch), got {}",
            obj.get_type().name()?
        )));
    };
    let (schema, array): (Bound<'_, PyCapsule>, Bound<'_, PyCapsule>) =
        method.call0()?.extract().map_err(|_| {
            PyTypeError::new_err("__arrow_c_array__ must return a (schema, array) capsule pair")
        })?;
    let named = |capsule: &Bound<'_, PyCapsule>, name: &std::ffi::CStr| {
        capsule.pointer_checked(Some(name)).map_err(|_| {
            PyTypeError::new_err(format!(
                "__arrow_c_array__ must return an '{}' capsule where it returned another",
                name.to_string_lossy()
            ))
        })
    };
    let schema = named(&schema, c"arrow_schema")?;
    let array = named(&array, c"arrow_array")?;
    // SAFETY: the capsules hold an exported schema and array by the PyCapsule interface;
    // `from_raw` moves each out, leaving a released struct for the capsule's destructor.
    unsafe {
        Ok((
            FFI_ArrowArray::from_raw(array.cast().as_ptr()),
            FFI_ArrowSchema::from_raw(schema.cast().as_ptr()),
        ))
    }
}
