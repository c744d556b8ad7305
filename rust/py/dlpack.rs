//! DLPack capsules and the `DLPackTensor` provider: how a core `HostTensor` reaches a consumer
//! such as `torch.from_dlpack`.

use std::ffi::c_void;
use std::sync::Mutex;

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

use crate::dlpack::{
    delete_legacy, delete_versioned, DLManagedTensor, DLManagedTensorVersioned, HostTensor, DL_CPU,
    LEGACY_NAME, VERSIONED_NAME,
};
use crate::dtype::DType;

/// Capsule destructor: frees the tensor only if no consumer took it (renamed it "used_...").
unsafe extern "C" fn drop_versioned_capsule(capsule: *mut ffi::PyObject) {
    // SAFETY: called by Python with a capsule; IsValid sets no error.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, VERSIONED_NAME.as_ptr()) == 1 {
            let ptr = ffi::PyCapsule_GetPointer(capsule, VERSIONED_NAME.as_ptr());
            delete_versioned(ptr as *mut DLManagedTensorVersioned);
        }
    }
}

unsafe extern "C" fn drop_legacy_capsule(capsule: *mut ffi::PyObject) {
    // SAFETY: as above.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, LEGACY_NAME.as_ptr()) == 1 {
            let ptr = ffi::PyCapsule_GetPointer(capsule, LEGACY_NAME.as_ptr());
            delete_legacy(ptr as *mut DLManagedTensor);
        }
    }
}

/// A legacy DLPack capsule owning `tensor` until a consumer takes it.
pub fn legacy_capsule(py: Python<'_>, tensor: HostTensor) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: see `__dlpack__`.
    unsafe {
        let raw = ffi::PyCapsule_New(
            tensor.into_legacy() as *mut c_void,
            LEGACY_NAME.as_ptr(),
            Some(drop_legacy_capsule),
        );
        Bound::from_owned_ptr_or_err(py, raw)
    }
}

/// A tensor waiting to be taken by a DLPack consumer: `torch.from_dlpack(t)`.
///
/// It can be consumed once; the capsule it hands out owns the memory from then on.
#[pyclass(name = "DLPackTensor", module = "lancetorch._native", frozen)]
pub struct PyDLPackTensor {
    inner: Mutex<Option<HostTensor>>,
    shape: Vec<i64>,
    dtype: DType,
}

impl PyDLPackTensor {
    pub fn new(tensor: HostTensor) -> Self {
        let shape = tensor.shape().to_vec();
        let dtype = tensor.dtype();
        PyDLPackTensor {
            inner: Mutex::new(Some(tensor)),
            shape,
            dtype,
        }
    }
}

#[pymethods]
impl PyDLPackTensor {
    /// Hand the tensor out as a DLPack capsule: versioned when the consumer asks for 1.x.
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<Bound<'py, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = stream; // host memory: no stream to synchronise with
        if let Some((kind, _)) = dl_device {
            if kind != DL_CPU {
                return Err(PyBufferError::new_err(
                    "this tensor lives in host memory; move it with .to(device) after from_dlpack",
                ));
            }
        }
        if copy == Some(true) {
            return Err(PyValueError::new_err(
                "copy=True is not supported; copy the tensor after from_dlpack",
            ));
        }
        let tensor = self
            .inner
            .lock()
            .expect("dlpack lock")
            .take()
            .ok_or_else(|| {
                PyBufferError::new_err("this tensor was already handed to a DLPack consumer")
            })?;
        let versioned = matches!(max_version, Some((major, _)) if major >= 1);
        // SAFETY: the pointer comes from a leaked Box, and the destructor frees it only while
        // the capsule keeps its original name (i.e. no consumer took ownership).
        unsafe {
            if !versioned {
                return legacy_capsule(py, tensor);
            }
            let raw = ffi::PyCapsule_New(
                tensor.into_versioned() as *mut c_void,
                VERSIONED_NAME.as_ptr(),
                Some(drop_versioned_capsule),
            );
            Bound::from_owned_ptr_or_err(py, raw)
        }
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        (DL_CPU, 0)
    }

    #[getter]
    fn shape(&self) -> Vec<i64> {
        self.shape.clone()
    }

    /// The element type's name as torch spells it (`"float32"`, `"bool"`).
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype.name()
    }
}
