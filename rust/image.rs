//! Images stored as encoded bytes (JPEG, PNG) decoded, cropped and resized into one uint8
//! tensor of `(rows, 3, height, width)` or `(rows, height, width, 3)`, on the calling thread
//! and one pool thread.
//!
//! A crop is either the largest centered one of the output's aspect ratio, or a random one as
//! torchvision's `RandomResizedCrop` draws it (an area fraction in `scale`, an aspect ratio in
//! `ratio`, log-uniform); either is optionally mirrored, half the time, after the crop. The
//! random draws of an image come from a generator seeded by `(seed, epoch, the image's bytes)`:
//! the same on every run and in every process, different from one epoch to the next.

use std::io::Cursor;
use std::sync::Mutex;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_buffer::Buffer;
use arrow_schema::DataType;
use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::dlpack::HostTensor;
use crate::dtype::DType;
use crate::error::{Error, Result};

/// Images larger than this many pixels are refused before their pixels are allocated.
pub const MAX_PIXELS: u64 = 1 << 28;

#[derive(Clone, Copy, Debug)]
pub enum Crop {
    Center {
        flip: bool,
    },
    Random {
        scale: (f64, f64),
        ratio: (f64, f64),
        flip: bool,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub width: u32,
    pub height: u32,
    pub channels_last: bool,
    pub crop: Crop,
    pub seed: u64,
    pub epoch: u64,
    /// A JPEG decoded only where its crop lies, at the largest DCT scale that still covers
    /// the output ([`jpeg_plan`]); otherwise every pixel at full size.
    pub jpeg_crop: bool,
}

/// Below this fraction of the image's area, a crop that no DCT scale helps is still decoded
/// as a region by libjpeg; above it the full decode by zune-jpeg (with SIMD; libjpeg's C code
/// takes 1.5-1.6 times as long for the whole image) costs less (see docs/performance.md).
const REGION_AREA: f64 = 0.55;

/// An image's pixels as 8-bit RGB, row-major.
#[derive(Debug)]
struct Rgb {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

fn decode(bytes: &[u8]) -> std::result::Result<Rgb, String> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        decode_jpeg(bytes, &jpeg_layout(bytes)?)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        decode_webp(bytes)
    } else if bytes.is_empty() {
        Err("it is empty".into())
    } else {
        Err("it is not JPEG, PNG or WebP".into())
    }
}

fn checked(width: u32, height: u32) -> std::result::Result<(), String> {
    if width == 0 || height == 0 {
        return Err(format!("it is {width}x{height} pixels"));
    }
    if width as u64 * height as u64 > MAX_PIXELS {
        return Err(format!(
            "it is {width}x{height}, over the {MAX_PIXELS}-pixel limit"
        ));
    }
    Ok(())
}

/// A JPEG decoded strictly: a file cut short, a header claiming more pixels than the file's
/// scans can code (see [`crate::jpeg`]), entropy-coded data the decoder cannot read, or a last
/// scan whose data runs out before its last block is an error, not an image with a gray part.
/// The layout is read, and the size checked, before any pixel is allocated ([`jpeg_layout`]).
fn decode_jpeg(bytes: &[u8], layout: &crate::jpeg::Layout) -> std::result::Result<Rgb, String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;

    let jpeg = |why: String| format!("JPEG: {why}");
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_strict_mode(true)
        .set_max_width(1 << 16)
        .set_max_height(1 << 16);
    let guarded = crate::jpeg::with_sentinel(bytes, layout);
    let bytes = guarded.as_deref().unwrap_or(bytes);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|e| jpeg(e.to_string()))?;
    let (width, height) = decoder
        .dimensions()
        .map(|(w, h)| (w as u32, h as u32))
        .ok_or("JPEG: no dimensions")?;
    if (width, height) != (layout.width, layout.height) {
        return Err(format!(
            "JPEG: the decoder reads {width}x{height} pixels where the frame header says {}x{}",
            layout.width, layout.height
        ));
    }
    let size = decoder
        .output_buffer_size()
        .filter(|&n| n == width as usize * height as usize * 3)
        .ok_or("JPEG: the decoder gives another output size than RGB")?;
    let mut pixels = pixel_buffer(size)?;
    decoder.decode_into(&mut pixels).map_err(|e| {
        jpeg(format!(
            "its image data cannot be decoded ({e}): it is corrupt or cut short"
        ))
    })?;
    Ok(Rgb {
        width,
        height,
        pixels,
    })
}

/// A JPEG's layout, its size within the limit and its scans holding the bytes that size
/// needs: what is checked before either decoder allocates a pixel.
fn jpeg_layout(bytes: &[u8]) -> std::result::Result<crate::jpeg::Layout, String> {
    let jpeg = |why: String| format!("JPEG: {why}");
    let layout = crate::jpeg::layout(bytes).map_err(jpeg)?;
    checked(layout.width, layout.height)?;
    layout.check_coded_bytes(bytes.len()).map_err(jpeg)?;
    Ok(layout)
}

/// The DCT scale denominator (1, 2, 4 or 8) to decode a JPEG's `crop` at with libjpeg: the
/// largest at which the crop still has at least the output's pixels in both dimensions; or
/// `None` where the full decode is the cheaper (no scale helps and the crop is over
/// [`REGION_AREA`] of the image) or libjpeg would not give RGB (a CMYK JPEG).
fn jpeg_plan(layout: &crate::jpeg::Layout, crop: (f64, f64, f64, f64), spec: &Spec) -> Option<u32> {
    if !matches!(layout.sampling.len(), 1 | 3) {
        return None;
    }
    let (_, _, cw, ch) = crop;
    let denom = [8u32, 4, 2]
        .into_iter()
        .find(|&d| cw / d as f64 >= spec.width as f64 && ch / d as f64 >= spec.height as f64)
        .unwrap_or(1);
    let area = layout.width as f64 * layout.height as f64;
    (denom > 1 || cw * ch < REGION_AREA * area).then_some(denom)
}

/// `size` zeroed bytes for decoded pixels, from [`crate::memory::zeroed`]: refused past the
/// memory free, and costing only the pages the decoder writes (a PNG that claims a large size
/// and ends early writes few).
fn pixel_buffer(size: usize) -> std::result::Result<Vec<u8>, String> {
    crate::memory::zeroed(size).map_err(|e| e.to_string())
}

/// A WebP decoded whole: a file shorter than its RIFF header says is refused as truncated
/// (the decoder reads some such files without an error).
fn decode_webp(bytes: &[u8]) -> std::result::Result<Rgb, String> {
    let riff = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as u64 + 8;
    if (bytes.len() as u64) < riff {
        return Err(format!(
            "WebP: its RIFF header says {riff} bytes and it has {}: it is truncated",
            bytes.len()
        ));
    }
    let mut decoder =
        image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(|e| format!("WebP: {e}"))?;
    let (width, height) = decoder.dimensions();
    checked(width, height)?;
    decoder.set_memory_limit((MAX_PIXELS * 4) as usize);
    let size = decoder.output_buffer_size().ok_or("WebP: too large")?;
    let mut buffer = pixel_buffer(size)?;
    // An animation gives its first frame.
    decoder
        .read_image(&mut buffer)
        .map_err(|e| format!("WebP: {e}"))?;
    let pixels = rgb_of(buffer, if decoder.has_alpha() { 4 } else { 3 })?;
    Ok(Rgb {
        width,
        height,
        pixels,
    })
}

/// A PNG decoded whole: the chunks are read to the end chunk, each checked (CRC).
fn decode_png(bytes: &[u8]) -> std::result::Result<Rgb, String> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    decoder.set_limits(png::Limits {
        bytes: (MAX_PIXELS * 4) as usize,
    });
    let mut reader = decoder.read_info().map_err(|e| format!("PNG: {e}"))?;
    let (width, height) = (reader.info().width, reader.info().height);
    checked(width, height)?;
    let size = reader.output_buffer_size().ok_or("PNG: too large")?;
    let mut buffer = pixel_buffer(size)?;
    let frame = reader
        .next_frame(&mut buffer)
        .map_err(|e| format!("PNG: {e}"))?;
    // The chunks after the image, to its end chunk: a file cut short there is refused too.
    reader.finish().map_err(|e| format!("PNG: {e}"))?;
    buffer.truncate(frame.buffer_size());
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("PNG: a palette was left unexpanded".into()),
    };
    if frame.bit_depth != png::BitDepth::Eight {
        return Err(format!(
            "PNG: {:?} bits a sample after expansion",
            frame.bit_depth
        ));
    }
    let pixels = rgb_of(buffer, channels)?;
    Ok(Rgb {
        width,
        height,
        pixels,
    })
}

/// Pixels of 1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA) bytes as RGB, alpha dropped: RGBA
/// in place, gray into a new buffer from [`pixel_buffer`].
fn rgb_of(mut buffer: Vec<u8>, channels: usize) -> std::result::Result<Vec<u8>, String> {
    let count = buffer.len() / channels;
    match channels {
        3 => Ok(buffer),
        4 => {
            for i in 0..count {
                buffer.copy_within(4 * i..4 * i + 3, 3 * i);
            }
            buffer.truncate(3 * count);
            Ok(buffer)
        }
        _ => {
            let mut rgb = pixel_buffer(3 * count)?;
            for (px, out) in buffer.chunks_exact(channels).zip(rgb.chunks_exact_mut(3)) {
                out.fill(px[0]);
            }
            Ok(rgb)
        }
    }
}

/// A 64-bit key of the image's bytes (FNV-1a), to seed its random crop.
fn content_key(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn uniform(rng: &mut Xoshiro256PlusPlus, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

/// The source rectangle `(left, top, width, height)` to resize into the output, and whether
/// to mirror it.
fn crop_of(
    src: (u32, u32),
    spec: &Spec,
    rng: &mut Xoshiro256PlusPlus,
) -> ((f64, f64, f64, f64), bool) {
    let (w, h) = (src.0 as f64, src.1 as f64);
    let center = |aspect: f64| {
        let (cw, ch) = if w / h > aspect {
            (h * aspect, h)
        } else {
            (w, w / aspect)
        };
        ((w - cw) / 2.0, (h - ch) / 2.0, cw, ch)
    };
    match spec.crop {
        Crop::Center { flip } => {
            let mirror = flip && rng.next_u64() & 1 == 1;
            (center(spec.width as f64 / spec.height as f64), mirror)
        }
        Crop::Random { scale, ratio, flip } => {
            let area = w * h;
            let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
            let mut rect = None;
            for _ in 0..10 {
                let target = area * uniform(rng, scale.0, scale.1);
                let aspect = uniform(rng, log_lo, log_hi).exp();
                let (cw, ch) = ((target * aspect).sqrt(), (target / aspect).sqrt());
                if cw <= w && ch <= h && cw >= 1.0 && ch >= 1.0 {
                    let left = uniform(rng, 0.0, w - cw);
                    let top = uniform(rng, 0.0, h - ch);
                    rect = Some((left, top, cw, ch));
                    break;
                }
            }
            // As torchvision falls back: the whole image, its aspect clamped into `ratio`.
            let rect = rect.unwrap_or_else(|| center((w / h).clamp(ratio.0, ratio.1)));
            let mirror = flip && rng.next_u64() & 1 == 1;
            (rect, mirror)
        }
    }
}

/// One image into its place in the output (`height * width * 3` bytes).
fn render(bytes: &[u8], spec: &Spec, out: &mut [u8]) -> std::result::Result<(), String> {
    let key = spec.seed ^ spec.epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ content_key(bytes);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(key);
    // The crop is drawn from the image's size (a JPEG's from its header, the size its full
    // decode has), so either decode crops the same rectangle.
    let (rgb, (left, top, cw, ch), mirror) = if bytes.starts_with(&[0xFF, 0xD8]) {
        let layout = jpeg_layout(bytes)?;
        let (crop, mirror) = crop_of((layout.width, layout.height), spec, &mut rng);
        match spec
            .jpeg_crop
            .then(|| jpeg_plan(&layout, crop, spec))
            .flatten()
        {
            None => (decode_jpeg(bytes, &layout)?, crop, mirror),
            // Anything libjpeg stops at, an error or a warning (some harmless, such as an
            // unknown JFIF version), is left to the full decode, strict as before: a damaged
            // file is refused with its reason, a harmless oddity read.
            Some(denom) => match crate::libjpeg::decode_region(bytes, denom, crop) {
                Err(_) => (decode_jpeg(bytes, &layout)?, crop, mirror),
                Ok(region) => {
                    let s = denom as f64;
                    let (x, y) = (
                        (crop.0 / s - region.left as f64).max(0.0),
                        (crop.1 / s - region.top as f64).max(0.0),
                    );
                    let w = (crop.2 / s).min(region.width as f64 - x);
                    let h = (crop.3 / s).min(region.height as f64 - y);
                    let rgb = Rgb {
                        width: region.width,
                        height: region.height,
                        pixels: region.pixels,
                    };
                    (rgb, (x, y, w, h), mirror)
                }
            },
        }
    } else {
        let rgb = decode(bytes)?;
        let (crop, mirror) = crop_of((rgb.width, rgb.height), spec, &mut rng);
        (rgb, crop, mirror)
    };
    let src = Image::from_vec_u8(rgb.width, rgb.height, rgb.pixels, PixelType::U8x3)
        .map_err(|e| format!("{e}"))?;
    let mut dst = Image::new(spec.width, spec.height, PixelType::U8x3);
    let options = ResizeOptions::new()
        .crop(left, top, cw, ch)
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| format!("{e}"))?;
    let (w, h) = (spec.width as usize, spec.height as usize);
    let rows = dst.buffer().chunks_exact(w * 3);
    if spec.channels_last {
        for (src, row) in rows.zip(out.chunks_exact_mut(w * 3)) {
            if mirror {
                for (s, d) in src.chunks_exact(3).rev().zip(row.chunks_exact_mut(3)) {
                    d.copy_from_slice(s);
                }
            } else {
                row.copy_from_slice(src);
            }
        }
    } else {
        let (r, gb) = out.split_at_mut(w * h);
        let (g, b) = gb.split_at_mut(w * h);
        let planes = r
            .chunks_exact_mut(w)
            .zip(g.chunks_exact_mut(w))
            .zip(b.chunks_exact_mut(w));
        for (src, ((r, g), b)) in rows.zip(planes) {
            if mirror {
                to_planes(src.chunks_exact(3).rev(), r, g, b);
            } else {
                to_planes(src.chunks_exact(3), r, g, b);
            }
        }
    }
    Ok(())
}

/// RGB pixels into their places in the three planes, one plane a channel.
fn to_planes<'a>(pixels: impl Iterator<Item = &'a [u8]>, r: &mut [u8], g: &mut [u8], b: &mut [u8]) {
    for (px, ((r, g), b)) in pixels.zip(r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut())) {
        (*r, *g, *b) = (px[0], px[1], px[2]);
    }
}

/// The images of a binary column as one uint8 tensor. A null is refused like a bad image.
///
/// With `skip`, an image that cannot be read is left black and its row is returned among the
/// failed ones instead of refusing the batch.
pub fn images_to_tensor(
    array: &dyn Array,
    name: &str,
    spec: Spec,
    skip: bool,
) -> Result<(HostTensor, Vec<usize>)> {
    let rows = array.len();
    let values: Vec<Option<&[u8]>> = match array.data_type() {
        DataType::Binary => array.as_binary::<i32>().iter().collect(),
        DataType::LargeBinary => array.as_binary::<i64>().iter().collect(),
        DataType::BinaryView => array.as_binary_view().iter().collect(),
        other => {
            return Err(Error::Type(format!(
                "column '{name}' is {other}; images are binary columns of JPEG, PNG or WebP bytes"
            )))
        }
    };
    let per = spec.width as usize * spec.height as usize * 3;
    let cells = rows
        .checked_mul(per)
        .ok_or_else(|| Error::Value(format!("column '{name}': {rows} images do not fit")))?;
    let mut out = crate::memory::filled::<u8>(cells, 0)?;
    let failures: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let items: Vec<(usize, &mut [u8])> = out
        .chunks_exact_mut(per.max(1))
        .take(rows)
        .enumerate()
        .collect();
    crate::threads::share(items, |(row, slot)| {
        let result = match values[row] {
            None => Err("it is null".to_string()),
            Some(bytes) => render(bytes, &spec, slot),
        };
        if let Err(why) = result {
            failures.lock().expect("failures lock").push((row, why));
        }
    });
    let mut failures = failures.into_inner().expect("failures lock");
    failures.sort_by_key(|f| f.0);
    if let (false, Some((row, why))) = (skip, failures.first()) {
        return Err(Error::Value(format!(
            "column '{name}': the image at row {row} of the batch cannot be read: {why}"
        )));
    }
    for slot in &failures {
        out[slot.0 * per..(slot.0 + 1) * per].fill(0); // nothing half-drawn is left behind
    }
    let (h, w) = (spec.height as i64, spec.width as i64);
    let shape = if spec.channels_last {
        vec![rows as i64, h, w, 3]
    } else {
        vec![rows as i64, 3, h, w]
    };
    let failed = failures.into_iter().map(|f| f.0).collect();
    let tensor = HostTensor::from_buffer(Buffer::from_vec(out), DType::U8, shape);
    Ok((tensor, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_center_crop_keeps_the_output_aspect() {
        let spec = Spec {
            width: 4,
            height: 2,
            channels_last: true,
            crop: Crop::Center { flip: false },
            seed: 0,
            epoch: 0,
            jpeg_crop: true,
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        assert_eq!(
            crop_of((100, 100), &spec, &mut rng).0,
            (0.0, 25.0, 100.0, 50.0)
        );
        assert_eq!(
            crop_of((100, 10), &spec, &mut rng).0,
            (40.0, 0.0, 20.0, 10.0)
        );
    }

    #[test]
    fn a_center_crop_with_flip_mirrors_about_half_the_images() {
        let spec = |flip| Spec {
            width: 4,
            height: 4,
            channels_last: true,
            crop: Crop::Center { flip },
            seed: 0,
            epoch: 0,
            jpeg_crop: true,
        };
        let mirrored = |flip| {
            (0..1000u64)
                .filter(|&k| {
                    crop_of(
                        (10, 10),
                        &spec(flip),
                        &mut Xoshiro256PlusPlus::seed_from_u64(k),
                    )
                    .1
                })
                .count()
        };
        assert_eq!(mirrored(false), 0);
        let n = mirrored(true);
        assert!((400..600).contains(&n), "{n} of 1000 mirrored");
    }

    #[test]
    fn random_crops_stay_inside_and_repeat_for_a_seed() {
        let crop = Crop::Random {
            scale: (0.08, 1.0),
            ratio: (0.75, 4.0 / 3.0),
            flip: true,
        };
        let spec = Spec {
            width: 8,
            height: 8,
            channels_last: true,
            crop,
            seed: 7,
            epoch: 0,
            jpeg_crop: true,
        };
        for key in 0..200u64 {
            let draw = |k| crop_of((64, 48), &spec, &mut Xoshiro256PlusPlus::seed_from_u64(k));
            let ((l, t, w, h), _) = draw(key);
            assert!(l >= 0.0 && t >= 0.0 && l + w <= 64.0 + 1e-9 && t + h <= 48.0 + 1e-9);
            assert_eq!(draw(key), draw(key));
        }
    }

    #[test]
    fn the_largest_dct_scale_that_covers_the_output_is_chosen() {
        let layout = |components: usize| crate::jpeg::Layout {
            width: 2000,
            height: 1000,
            progressive: false,
            sampling: [(1, 1); 4][..components].to_vec(),
            coded_bytes: 0,
            last_scan_end: None,
        };
        let spec = Spec {
            width: 100,
            height: 100,
            channels_last: true,
            crop: Crop::Center { flip: false },
            seed: 0,
            epoch: 0,
            jpeg_crop: true,
        };
        let plan =
            |w: f64, h: f64, components| jpeg_plan(&layout(components), (0.0, 0.0, w, h), &spec);
        assert_eq!(plan(1000.0, 1000.0, 3), Some(8));
        assert_eq!(plan(1000.0, 799.0, 3), Some(4)); // 799 / 8 < 100
        assert_eq!(plan(400.0, 1000.0, 1), Some(4));
        assert_eq!(plan(399.0, 399.0, 3), Some(2));
        assert_eq!(plan(200.0, 200.0, 3), Some(2));
        // No scale helps: a region where the crop is a small part of the image, else all.
        assert_eq!(plan(199.0, 1000.0, 3), Some(1));
        assert_eq!(plan(1999.0, 199.0, 3), Some(1));
        let large = Spec {
            width: 600,
            height: 600,
            ..spec
        };
        let most = (0.0, 0.0, 1200.0, 1000.0); // 60% of the image; half of it is under 600
        assert_eq!(jpeg_plan(&layout(3), most, &large), None);
        assert_eq!(
            jpeg_plan(&layout(3), (0.0, 0.0, 700.0, 700.0), &large),
            Some(1)
        );
        // CMYK: zune-jpeg's full decode, which converts it to RGB.
        assert_eq!(plan(1000.0, 1000.0, 4), None);
    }

    #[test]
    fn pixels_of_each_channel_count_become_rgb() {
        assert_eq!(
            rgb_of(vec![1, 2, 3, 4, 5, 6], 3).unwrap(),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(
            rgb_of(vec![1, 2, 3, 9, 4, 5, 6, 9], 4).unwrap(),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(rgb_of(vec![7, 9, 8, 9], 2).unwrap(), [7, 7, 7, 8, 8, 8]);
        assert_eq!(rgb_of(vec![7, 8], 1).unwrap(), [7, 7, 7, 8, 8, 8]);
    }

    #[test]
    fn bad_bytes_are_refused_with_the_reason() {
        assert!(decode(b"").unwrap_err().contains("empty"));
        assert!(decode(b"GIF89a")
            .unwrap_err()
            .contains("not JPEG, PNG or WebP"));
        assert!(decode(&[0xFF, 0xD8, 0xFF]).unwrap_err().starts_with("JPEG"));
        assert!(decode(b"\x89PNG\r\n\x1a\n\0\0")
            .unwrap_err()
            .starts_with("PNG"));
    }
}
