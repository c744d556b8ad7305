//! DLPack 1.x export: a host tensor handed to any DLPack consumer (torch, numpy, jax).
//!
//! The structs follow `dlpack.h`. The tensor's memory is Arrow buffers owned by Rust; the
//! deleter drops them and nothing else, so a consumer may call it on any thread.

use std::ffi::{c_void, CStr};

use arrow_buffer::Buffer;

use crate::dtype::DType;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DLDevice {
    pub device_type: i32,
    pub device_id: i32,
}

pub const DL_CPU: i32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DLDataType {
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

#[repr(C)]
pub struct DLTensor {
    pub data: *mut c_void,
    pub device: DLDevice,
    pub ndim: i32,
    pub dtype: DLDataType,
    pub shape: *mut i64,
    pub strides: *mut i64,
    pub byte_offset: u64,
}

#[repr(C)]
pub struct DLManagedTensor {
    pub dl_tensor: DLTensor,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

#[repr(C)]
pub struct DLPackVersion {
    pub major: u32,
    pub minor: u32,
}

#[repr(C)]
pub struct DLManagedTensorVersioned {
    pub version: DLPackVersion,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    pub flags: u64,
    pub dl_tensor: DLTensor,
}

pub const LEGACY_NAME: &CStr = c"dltensor";
pub const VERSIONED_NAME: &CStr = c"dltensor_versioned";

/// A dense row-major host tensor over Arrow memory.
#[derive(Debug)]
pub struct HostTensor {
    data: *const u8,
    dtype: DType,
    shape: Vec<i64>,
    strides: Vec<i64>,
    /// The buffers that own the memory `data` points into.
    _owners: Vec<Buffer>,
}

// SAFETY: `data` points into `_owners`, which are immutable, reference-counted and Send + Sync.
unsafe impl Send for HostTensor {}
unsafe impl Sync for HostTensor {}

impl HostTensor {
    /// A C-contiguous tensor of `shape` starting at `data`, kept alive by `owners`.
    ///
    /// # Safety
    /// `data` must point at `shape.product() * dtype.size()` readable bytes that live as long
    /// as `owners`.
    pub unsafe fn new(data: *const u8, dtype: DType, shape: Vec<i64>, owners: Vec<Buffer>) -> Self {
        #[allow(clippy::disallowed_methods)] // one a dimension
        let mut strides = vec![1i64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        HostTensor {
            data,
            dtype,
            shape,
            strides,
            _owners: owners,
        }
    }

    /// The tensor over a whole buffer of `shape`, C-contiguous.
    pub fn from_buffer(buffer: Buffer, dtype: DType, shape: Vec<i64>) -> Self {
        let need: i64 = shape.iter().product::<i64>() * dtype.size() as i64;
        assert!(
            buffer.len() as i64 >= need,
            "buffer smaller than its tensor"
        );
        let data = buffer.as_ptr();
        // SAFETY: checked the size above; the buffer owns the memory.
        unsafe { Self::new(data, dtype, shape, vec![buffer]) }
    }

    /// The same elements under another C-contiguous shape.
    pub fn reshaped(self, shape: Vec<i64>) -> Self {
        assert_eq!(
            shape.iter().product::<i64>(),
            self.shape.iter().product::<i64>(),
            "reshape keeps the element count"
        );
        // SAFETY: same memory, same element count, same owners.
        unsafe { Self::new(self.data, self.dtype, shape, self._owners) }
    }

    pub fn data_ptr(&self) -> *const u8 {
        self.data
    }

    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn dl_tensor(&mut self) -> DLTensor {
        DLTensor {
            data: self.data as *mut c_void,
            device: DLDevice {
                device_type: DL_CPU,
                device_id: 0,
            },
            ndim: self.shape.len() as i32,
            dtype: {
                let (code, bits) = self.dtype.dlpack_code();
                DLDataType {
                    code,
                    bits,
                    lanes: 1,
                }
            },
            shape: self.shape.as_mut_ptr(),
            strides: self.strides.as_mut_ptr(),
            byte_offset: 0,
        }
    }

    /// Leak into a versioned managed tensor; its deleter frees everything.
    pub fn into_versioned(self) -> *mut DLManagedTensorVersioned {
        let mut ctx = Box::new(self);
        let dl_tensor = ctx.dl_tensor();
        Box::into_raw(Box::new(DLManagedTensorVersioned {
            version: DLPackVersion { major: 1, minor: 0 },
            manager_ctx: Box::into_raw(ctx) as *mut c_void,
            deleter: Some(delete_versioned),
            // Read-only is not set: consumers such as torch would copy or warn otherwise, and
            // the memory is a fresh gather owned by this tensor alone (or a batch the caller
            // already holds).
            flags: 0,
            dl_tensor,
        }))
    }

    /// Leak into a legacy (pre-1.0) managed tensor.
    pub fn into_legacy(self) -> *mut DLManagedTensor {
        let mut ctx = Box::new(self);
        let dl_tensor = ctx.dl_tensor();
        Box::into_raw(Box::new(DLManagedTensor {
            dl_tensor,
            manager_ctx: Box::into_raw(ctx) as *mut c_void,
            deleter: Some(delete_legacy),
        }))
    }
}

/// The deleter of a versioned managed tensor.
///
/// # Safety
/// `managed` is null or came from [`HostTensor::into_versioned`], and is deleted once.
pub unsafe extern "C" fn delete_versioned(managed: *mut DLManagedTensorVersioned) {
    if managed.is_null() {
        return;
    }
    // SAFETY: built by `into_versioned` from two boxes; called once by the consumer.
    unsafe {
        let managed = Box::from_raw(managed);
        drop(Box::from_raw(managed.manager_ctx as *mut HostTensor));
    }
}

/// The deleter of a legacy managed tensor.
///
/// # Safety
/// `managed` is null or came from [`HostTensor::into_legacy`], and is deleted once.
pub unsafe extern "C" fn delete_legacy(managed: *mut DLManagedTensor) {
    if managed.is_null() {
        return;
    }
    // SAFETY: built by `into_legacy` from two boxes; called once by the consumer.
    unsafe {
        let managed = Box::from_raw(managed);
        drop(Box::from_raw(managed.manager_ctx as *mut HostTensor));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleter_frees_and_layout_is_row_major() {
        let buf = Buffer::from_vec((0..6i32).collect::<Vec<_>>());
        let t = HostTensor::from_buffer(buf.clone(), DType::I32, vec![2, 3]);
        assert_eq!(t.strides, vec![3, 1]);
        let managed = t.into_versioned();
        unsafe {
            let m = &*managed;
            assert_eq!(m.version.major, 1);
            assert_eq!(m.dl_tensor.ndim, 2);
            assert_eq!(*m.dl_tensor.shape.add(1), 3);
            assert_eq!(
                m.dl_tensor.dtype,
                DLDataType {
                    code: 0,
                    bits: 32,
                    lanes: 1
                }
            );
            assert_eq!(m.dl_tensor.data as *const u8, buf.as_ptr());
            assert_eq!(*(m.dl_tensor.data as *const i32).add(4), 4);
            (m.deleter.unwrap())(managed);
        }
        // Only our clone is left once the tensor is deleted.
        assert_eq!(buf.strong_count(), 1);
    }

    #[test]
    fn legacy_layout() {
        let buf = Buffer::from_vec(vec![1.0f64, 2.0]);
        let managed = HostTensor::from_buffer(buf.clone(), DType::F64, vec![2]).into_legacy();
        unsafe {
            assert_eq!(
                (*managed).dl_tensor.dtype,
                DLDataType {
                    code: 2,
                    bits: 64,
                    lanes: 1
                }
            );
            ((*managed).deleter.unwrap())(managed);
        }
        assert_eq!(buf.strong_count(), 1);
    }
}
