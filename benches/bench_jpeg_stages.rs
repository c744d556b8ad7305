//! Where the time of `Image(jpeg="crop")` goes: each stage of a JPEG's decode timed on its
//! own, one image at a time on this thread, against zune-jpeg's full decode.
//!
//! For each folder of JPEGs (`bench_images.py --files DIR` writes the bench's two sets there),
//! a `RandomResizedCrop(224)` is drawn per image (torchvision's draws, seeded) and these are
//! timed in this thread's CPU time, milliseconds an image (each image's best of 3 runs; all of
//! an image's stages one after another, so that the machine's load falls on all alike):
//!
//! - `zune full`: zune-jpeg decodes every pixel (`jpeg="full"`);
//! - `libjpeg 1/1`, `libjpeg 1/8`: libjpeg-turbo's C code decodes the whole image at 1/1 and
//!   at 1/8 (the 1/8 decode is nearly all entropy decoding: one coefficient a block
//!   transformed, 1/64 of the pixels converted);
//! - `floor`: every row down to the crop's bottom edge at 1/8: what any region decode of a
//!   baseline JPEG without restart markers must do (entropy-decode each block above the
//!   crop's bottom edge);
//! - `region`: the crop's region at the scale `jpeg="crop"` picks (the largest of 1/2, 1/4,
//!   1/8 that still covers the output), or none: a 1/1 region, or zune's full decode where
//!   the crop is over `REGION_AREA` of the image;
//! - `resize`: the resize of the crop to 224 x 224 after the region decode (and after the
//!   full decode, for `jpeg="full"`);
//! - `render crop`, `render full`: `images_to_tensor` of one image, the whole path.
//!
//! ```text
//! python benches/bench_images.py --images 1000 --large 200 --files target/bench-jpegs
//! cargo bench --no-default-features --bench bench_jpeg_stages -- target/bench-jpegs/*
//! ```

use std::hint::black_box;
use std::path::Path;

use arrow_array::BinaryArray;
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use lancetorch_native::image::{images_to_tensor, Crop, Spec};
use lancetorch_native::libjpeg::decode_region;
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const SIZE: u32 = 224;
/// The area fraction under which `jpeg="crop"` decodes an unscaled crop as a region
/// (`REGION_AREA` in rust/image.rs).
const REGION_AREA: f64 = 0.55;

struct Item {
    bytes: Vec<u8>,
    width: u32,
    height: u32,
    crop: (f64, f64, f64, f64),
    /// The DCT scale denominator `jpeg="crop"` decodes the crop at; `None`: zune's full decode.
    plan: Option<u32>,
}

fn uniform(rng: &mut Xoshiro256PlusPlus, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

/// torchvision's `RandomResizedCrop` draw (scale 0.08-1, ratio 3/4-4/3, 10 tries, then the
/// whole image).
fn draw(w: f64, h: f64, rng: &mut Xoshiro256PlusPlus) -> (f64, f64, f64, f64) {
    for _ in 0..10 {
        let target = w * h * uniform(rng, 0.08, 1.0);
        let aspect = uniform(rng, (0.75f64).ln(), (4.0f64 / 3.0).ln()).exp();
        let (cw, ch) = ((target * aspect).sqrt(), (target / aspect).sqrt());
        if cw <= w && ch <= h {
            return (uniform(rng, 0.0, w - cw), uniform(rng, 0.0, h - ch), cw, ch);
        }
    }
    (0.0, 0.0, w, h)
}

fn load(dir: &Path) -> Vec<Item> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a folder entry").path())
        .collect();
    paths.sort();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    paths
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).expect("a JPEG");
            let layout = lancetorch_native::jpeg::layout(&bytes).expect("a JPEG's layout");
            let (width, height) = (layout.width, layout.height);
            let crop = draw(width as f64, height as f64, &mut rng);
            let denom = [8u32, 4, 2]
                .into_iter()
                .find(|&d| crop.2 / d as f64 >= SIZE as f64 && crop.3 / d as f64 >= SIZE as f64)
                .unwrap_or(1);
            let small = crop.2 * crop.3 < REGION_AREA * width as f64 * height as f64;
            let plan = (denom > 1 || small).then_some(denom);
            Item {
                bytes,
                width,
                height,
                crop,
                plan,
            }
        })
        .collect()
}

fn zune(bytes: &[u8]) -> Vec<u8> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options)
        .decode()
        .expect("zune-jpeg decodes it")
}

fn resize(pixels: &[u8], width: u32, height: u32, crop: (f64, f64, f64, f64)) -> Vec<u8> {
    let src = ImageRef::new(width, height, pixels, PixelType::U8x3).expect("an image");
    let mut dst = Image::new(SIZE, SIZE, PixelType::U8x3);
    let options = ResizeOptions::new()
        .crop(crop.0, crop.1, crop.2, crop.3)
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .expect("a resize");
    dst.into_vec()
}

/// The decoded pixels `render` resizes, their size and the crop within them.
type Decoded = (Vec<u8>, u32, u32, (f64, f64, f64, f64));

fn region(item: &Item) -> Decoded {
    match item.plan {
        None => (zune(&item.bytes), item.width, item.height, item.crop),
        Some(denom) => {
            let r = decode_region(&item.bytes, denom, item.crop).expect("libjpeg decodes it");
            let s = denom as f64;
            let (x, y) = (
                (item.crop.0 / s - r.left as f64).max(0.0),
                (item.crop.1 / s - r.top as f64).max(0.0),
            );
            let w = (item.crop.2 / s).min(r.width as f64 - x);
            let h = (item.crop.3 / s).min(r.height as f64 - y);
            (r.pixels, r.width, r.height, (x, y, w, h))
        }
    }
}

fn render(item: &Item, jpeg_crop: bool) -> usize {
    let spec = Spec {
        width: SIZE,
        height: SIZE,
        channels_last: false,
        crop: Crop::Random {
            scale: (0.08, 1.0),
            ratio: (0.75, 4.0 / 3.0),
            flip: true,
        },
        seed: 0,
        epoch: 0,
        jpeg_crop,
    };
    let array = BinaryArray::from_vec(vec![item.bytes.as_slice()]);
    let (_, failed) = images_to_tensor(&array, "jpeg", spec, false).expect("rendered");
    failed.len()
}

/// This thread's CPU time in seconds (not the time other processes had the core).
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// The CPU time in milliseconds of `stage`, its best of 3 runs (a run another process slowed
/// is left out).
fn time<T>(stage: impl Fn() -> T) -> f64 {
    (0..3)
        .map(|_| {
            let start = cpu_seconds();
            black_box(stage());
            cpu_seconds() - start
        })
        .fold(f64::INFINITY, f64::min)
        * 1e3
}

/// An image and what its resizes start from.
struct Inputs<'a> {
    item: &'a Item,
    decoded: Decoded,
    full: Vec<u8>,
}

fn whole(it: &Item) -> (f64, f64, f64, f64) {
    (0.0, 0.0, it.width as f64, it.height as f64)
}

/// A stage's name, and the stage (what it returns is kept from the optimizer).
type Stage = (&'static str, fn(&Inputs) -> usize);

/// The stages, each timed on every image in turn (all of an image's stages one after
/// another, so that a change in the machine's load falls on all of them alike).
const STAGES: [Stage; 9] = [
    ("zune full", |x| zune(&x.item.bytes).len()),
    ("libjpeg 1/1", |x| {
        pixels(decode_region(&x.item.bytes, 1, whole(x.item)))
    }),
    ("libjpeg 1/8", |x| {
        pixels(decode_region(&x.item.bytes, 8, whole(x.item)))
    }),
    ("floor", |x| {
        let it = x.item;
        let bottom = it.crop.1 + it.crop.3;
        pixels(decode_region(
            &it.bytes,
            8,
            (0.0, 0.0, it.width as f64, bottom),
        ))
    }),
    ("region", |x| region(x.item).0.len()),
    ("resize (crop)", |x| {
        let (pixels, w, h, crop) = &x.decoded;
        resize(pixels, *w, *h, *crop).len()
    }),
    ("resize (full)", |x| {
        let it = x.item;
        resize(&x.full, it.width, it.height, it.crop).len()
    }),
    ("render crop", |x| render(x.item, true)),
    ("render full", |x| render(x.item, false)),
];

fn pixels(region: Result<lancetorch_native::libjpeg::Region, String>) -> usize {
    region.expect("libjpeg decodes it").pixels.len()
}

fn report(dir: &Path) {
    let items = load(dir);
    let mut plans = std::collections::BTreeMap::new();
    for item in &items {
        *plans.entry(item.plan).or_insert(0) += 1;
    }
    let megapixels = items
        .iter()
        .map(|i| i.width as f64 * i.height as f64)
        .sum::<f64>()
        / items.len() as f64;
    println!(
        "{}: {} JPEGs, {:.2} MP on average; plans (None: zune's full decode) {plans:?}",
        dir.display(),
        items.len(),
        megapixels / 1e6
    );
    let mut totals = [0.0f64; STAGES.len()];
    for item in &items {
        let inputs = Inputs {
            item,
            decoded: region(item),
            full: zune(&item.bytes),
        };
        for ((_, stage), total) in STAGES.iter().zip(&mut totals) {
            *total += time(|| stage(&inputs));
        }
    }
    let ms = |total: f64| total / items.len() as f64;
    let zune_full = ms(totals[0]);
    let rows = STAGES
        .iter()
        .zip(totals)
        .map(|((name, _), t)| (name, ms(t)));
    for (name, ms) in rows {
        println!(
            "  {name:<14} {ms:>8.3} ms   {:>5.2} of zune full's",
            ms / zune_full
        );
    }
    by_area(&items);
}

/// The crops no DCT scale helps, by their fraction of the image's area: zune's full decode
/// against libjpeg's 1/1 region (what `REGION_AREA` weighs).
fn by_area(items: &[Item]) {
    let mut bins = [(0usize, 0.0f64, 0.0f64); 10];
    for it in items {
        let scaled = it.crop.2 >= 2.0 * SIZE as f64 && it.crop.3 >= 2.0 * SIZE as f64;
        if scaled {
            continue;
        }
        let area = it.crop.2 * it.crop.3 / (it.width as f64 * it.height as f64);
        let bin = &mut bins[((area * 10.0) as usize).min(9)];
        bin.0 += 1;
        bin.1 += time(|| zune(&it.bytes));
        bin.2 += time(|| decode_region(&it.bytes, 1, it.crop));
    }
    println!("  unscaled crops by area: the 1/1 region's time over zune full's");
    for (b, (n, zune, region)) in bins.iter().enumerate().filter(|(_, bin)| bin.0 > 0) {
        println!(
            "    {:.1}-{:.1}: {n:>4} crops   {:>5.2}",
            b as f64 / 10.0,
            (b + 1) as f64 / 10.0,
            region / zune
        );
    }
}

fn main() {
    for dir in std::env::args().skip(1).filter(|a| !a.starts_with("--")) {
        report(Path::new(&dir));
    }
}
