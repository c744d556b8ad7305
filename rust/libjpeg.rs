//! A region of a JPEG decoded by libjpeg-turbo's C code (the copy the `mozjpeg-sys` crate
//! vendors, compiled by `cc` without its assembly SIMD): at a DCT scale of 1/1, 1/2, 1/4 or 1/8
//! (a scaled inverse DCT, no pixel of the full size made), only the columns of the region
//! (`jpeg_crop_scanline`, to whole iMCUs), with the rows above it entropy-decoded but not
//! transformed (`jpeg_skip_scanlines`) and the rows below it not read at all. Unscaled, it
//! trades a little accuracy for speed: the fast integer inverse DCT and box (merged) chroma
//! upsampling.
//!
//! Errors: libjpeg's `error_exit` unwinds back here (the C code is compiled with
//! `-fexceptions`, the callbacks are `C-unwind`), and so does every warning, which libjpeg
//! gives for damaged data it would otherwise go past (a gray part, a skipped marker) and for
//! some harmless oddities (an unknown JFIF version): the caller decodes such a file whole
//! instead, strictly. The decoder is destroyed either way.

use std::ffi::{c_int, c_ulong};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use mozjpeg_sys as sys;

/// Pixels around the region decoded too, so that the resize's filter finds the neighbours of
/// the crop's edge pixels as in the full image.
const MARGIN: u32 = 2;

/// Decoded pixels (8-bit RGB, row-major) of a region of the scaled image, whose top left
/// pixel is `(left, top)` of the scaled image.
pub struct Region {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Why libjpeg stopped (its message code), carried by the unwind from its callbacks.
struct Failure(c_int);

unsafe extern "C-unwind" fn error_exit(common: &mut sys::jpeg_common_struct) {
    // SAFETY: `err` is the error manager set up in `decode_region`, alive while `common` is.
    let code = unsafe { (*common.err).msg_code };
    resume_unwind(Box::new(Failure(code)));
}

unsafe extern "C-unwind" fn emit_message(common: &mut sys::jpeg_common_struct, level: c_int) {
    if level < 0 {
        // SAFETY: as in `error_exit`.
        let code = unsafe { (*common.err).msg_code };
        resume_unwind(Box::new(Failure(code)));
    }
}

/// The region of `bytes` decoded at `1 / denom` of its size (`denom` 1, 2, 4 or 8) that
/// covers `crop` (`(left, top, width, height)` in pixels of the full size), with a margin of
/// [`MARGIN`] pixels, widened to whole iMCUs left and right.
///
/// The file's layout must have been checked first ([`crate::jpeg::layout`], the size limit):
/// libjpeg allocates its buffers from the header's size.
pub fn decode_region(
    bytes: &[u8],
    denom: u32,
    crop: (f64, f64, f64, f64),
) -> std::result::Result<Region, String> {
    // SAFETY: all-zero is the state libjpeg expects these structs in before it fills them.
    let mut errors: Box<sys::jpeg_error_mgr> = Box::new(unsafe { std::mem::zeroed() });
    let mut info: Box<sys::jpeg_decompress_struct> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: both boxes outlive every call below; the decompressor is destroyed before they
    // drop.
    unsafe {
        let manager = sys::jpeg_std_error(&mut errors);
        manager.error_exit = Some(error_exit);
        manager.emit_message = Some(emit_message);
        info.common.err = manager;
    }
    let created = catch_unwind(AssertUnwindSafe(|| unsafe {
        sys::jpeg_CreateDecompress(
            &mut *info,
            sys::JPEG_LIB_VERSION,
            std::mem::size_of::<sys::jpeg_decompress_struct>(),
        )
    }));
    if created.is_err() {
        return Err("libjpeg could not start".into());
    }
    // SAFETY: `info` is created; `bytes` outlives the decode.
    let result = catch_unwind(AssertUnwindSafe(|| unsafe {
        read(&mut info, bytes, denom, crop)
    }));
    // SAFETY: created above; destroying frees what libjpeg allocated, after an error too.
    unsafe { sys::jpeg_destroy_decompress(&mut info) };
    match result {
        Ok(region) => region,
        Err(payload) => match payload.downcast::<Failure>() {
            Ok(failure) => Err(format!("libjpeg stopped with its message {}", failure.0)),
            Err(other) => resume_unwind(other),
        },
    }
}

unsafe fn read(
    info: &mut sys::jpeg_decompress_struct,
    bytes: &[u8],
    denom: u32,
    (left, top, width, height): (f64, f64, f64, f64),
) -> std::result::Result<Region, String> {
    // SAFETY (the whole body): `info` is a created decompressor (the caller's contract).
    unsafe {
        sys::jpeg_mem_src(info, bytes.as_ptr(), bytes.len() as c_ulong);
        sys::jpeg_read_header(info, 1);
        info.out_color_space = sys::J_COLOR_SPACE::JCS_RGB;
        info.scale_num = 1;
        info.scale_denom = denom;
        if denom == 1 {
            // Unscaled, the inverse DCT and the chroma upsampling are most of the time past
            // the entropy decoding: the fast integer DCT, and chroma upsampling merged with
            // the colour conversion (each chroma sample covers its 2x1 or 2x2 pixels). Scaled
            // (the reduced DCTs, chroma scaled to the luma's size) neither setting applies.
            info.dct_method = sys::J_DCT_METHOD::JDCT_IFAST;
            info.do_fancy_upsampling = 0;
        } else {
            info.dct_method = sys::J_DCT_METHOD::JDCT_ISLOW;
        }
        sys::jpeg_start_decompress(info);
        if info.output_components != 3 {
            return Err(format!(
                "libjpeg gives {} channels, not RGB",
                info.output_components
            ));
        }
        let (full_width, full_height) = (info.output_width, info.output_height);
        let s = denom as f64;
        let span = |from: f64, size: f64, limit: u32| {
            let lo = ((from / s).floor() as u32).saturating_sub(MARGIN);
            let hi = (((from + size) / s).ceil() as u32 + MARGIN).min(limit);
            (lo.min(hi.saturating_sub(1)), hi)
        };
        let (x0, x1) = span(left, width, full_width);
        let (y0, y1) = span(top, height, full_height);
        let (mut x, mut w) = (x0, x1 - x0);
        if w < full_width {
            sys::jpeg_crop_scanline(info, &mut x, &mut w);
        }
        let w = info.output_width;
        let rows = y1 - y0;
        let stride = w as usize * 3;
        let mut pixels =
            crate::memory::zeroed(stride * rows as usize).map_err(|e| e.to_string())?;
        if y0 > 0 && sys::jpeg_skip_scanlines(info, y0) != y0 {
            return Err(format!("libjpeg could not skip {y0} rows"));
        }
        // A whole row group a call (2 rows with merged 4:2:0 upsampling; at most 4): one row
        // at a time, libjpeg would make the group in a spare buffer and copy each row out.
        let group = info.rec_outbuf_height.clamp(1, 4) as u32;
        let base = pixels.as_mut_ptr();
        let mut done = 0u32;
        while done < rows {
            let want = group.min(rows - done);
            let mut lines: [*mut u8; 4] = [std::ptr::null_mut(); 4];
            for (i, line) in lines.iter_mut().take(want as usize).enumerate() {
                *line = base.add((done as usize + i) * stride);
            }
            let n = sys::jpeg_read_scanlines(info, lines.as_mut_ptr(), want);
            if n == 0 {
                return Err(format!(
                    "its data ends at row {} of {full_height}",
                    y0 + done
                ));
            }
            done += n;
        }
        if y1 == full_height {
            sys::jpeg_finish_decompress(info); // the rest of the file read and checked
        } else {
            sys::jpeg_abort_decompress(info);
        }
        Ok(Region {
            left: x,
            top: y0,
            width: w,
            height: rows,
            pixels,
        })
    }
}
