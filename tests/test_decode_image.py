"""Image decoding (lancetorch.decode.Image): pixels against PIL's, crops and their seeds, and
every kind of bad image refused with its row named."""

from __future__ import annotations

import io
import struct
import zlib

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch
from lancetorch.decode import Image
from lancetorch.loader import Loader
from lancetorch.util import to_batch
from PIL import Image as PILImage


def encode(array: np.ndarray, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    mode = {2: "L", 3: "RGB"}[array.ndim] if array.dtype == np.uint8 else None
    PILImage.fromarray(array, mode=mode).save(out, format=fmt, **kw)
    return out.getvalue()


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth image with some texture (as photos are), uint8 RGB."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], axis=-1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def decode(images: list, **kw) -> torch.Tensor:
    batch = pa.record_batch({"img": pa.array(images, pa.binary())})
    return to_batch(batch, {"img": Image(**kw)})["img"]


def pil_rgb(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("h, w", [(16, 16), (31, 45), (120, 80)])
def test_png_pixels_equal_pils(h, w):
    data = encode(photo(h, w), "PNG")
    got = decode([data, data], size=(h, w), layout="NHWC")
    assert got.shape == (2, h, w, 3) and got.dtype == torch.uint8
    assert np.array_equal(got[0].numpy(), pil_rgb(data))
    nchw = decode([data], size=(h, w))
    assert np.array_equal(nchw[0].permute(1, 2, 0).numpy(), pil_rgb(data))


def test_jpeg_pixels_within_two_levels_of_pils():
    data = encode(photo(96, 128, 1), "JPEG", quality=90)
    got = decode([data], size=(96, 128), layout="NHWC")[0].numpy().astype(float)
    assert np.abs(got - pil_rgb(data)).mean() <= 2.0


@pytest.mark.parametrize(
    "kind", ["gray png", "rgba png", "16-bit png", "palette png", "gray jpeg", "cmyk jpeg"]
)
def test_other_color_kinds_become_rgb(kind):
    rgb = photo(24, 20, 2)
    if kind == "gray png":
        data, want = encode(rgb[..., 0], "PNG"), np.repeat(rgb[..., :1], 3, axis=-1)
    elif kind == "rgba png":
        rgba = np.concatenate([rgb, np.full((24, 20, 1), 77, np.uint8)], axis=-1)
        out = io.BytesIO()
        PILImage.fromarray(rgba, mode="RGBA").save(out, format="PNG")
        data, want = out.getvalue(), rgb
    elif kind == "16-bit png":
        out = io.BytesIO()
        PILImage.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(out, format="PNG")
        data, want = out.getvalue(), np.repeat(rgb[..., :1], 3, axis=-1)
    elif kind == "palette png":
        out = io.BytesIO()
        PILImage.fromarray(rgb).convert("P").save(out, format="PNG")
        data = out.getvalue()
        want = pil_rgb(data)
    elif kind == "gray jpeg":
        data = encode(rgb[..., 0], "JPEG", quality=95)
        want = pil_rgb(data)
    else:
        out = io.BytesIO()
        PILImage.fromarray(rgb).convert("CMYK").save(out, format="JPEG", quality=95)
        data = out.getvalue()
        want = pil_rgb(data)
    got = decode([data], size=(24, 20), layout="NHWC")[0].numpy().astype(float)
    assert np.abs(got - want).mean() <= 2.0, kind


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_webp_lossless_pixels_equal_pils_and_lossy_within_two_levels(mode):
    rgb = photo(40, 56, 3)
    pixels = (
        rgb
        if mode == "RGB"
        else np.concatenate([rgb, np.full((40, 56, 1), 200, np.uint8)], axis=-1)
    )
    lossless = io.BytesIO()
    PILImage.fromarray(pixels, mode=mode).save(lossless, format="WEBP", lossless=True)
    got = decode([lossless.getvalue()], size=(40, 56), layout="NHWC")[0].numpy()
    assert np.array_equal(got, rgb)
    lossy = encode(rgb, "WEBP", quality=90)
    got = decode([lossy], size=(40, 56), layout="NHWC")[0].numpy().astype(float)
    assert np.abs(got - pil_rgb(lossy)).mean() <= 2.0


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "bad, words",
    [
        (b"", "empty"),
        (b"GIF89a....", "not JPEG, PNG or WebP"),
        ("truncated jpeg", "JPEG"),
        ("corrupt png", "PNG"),
        (None, "null"),
        (_png_claiming(100_000, 100_000), "pixel limit"),
        ("truncated webp", "WebP"),
    ],
)
def test_bad_images_are_refused_naming_the_row(bad, words):
    good = encode(photo(8, 8), "PNG")
    if bad == "truncated webp":
        bad = encode(photo(64, 64), "WEBP", quality=80)[:100]
    if bad == "truncated jpeg":
        bad = encode(photo(64, 64), "JPEG")[:200]
    elif bad == "corrupt png":
        raw = bytearray(good)
        raw[40:60] = b"\xff" * 20
        bad = bytes(raw)
    with pytest.raises(
        ValueError,
        match=rf"column 'img': the image at row 2 of the batch cannot be read: .*{words}",
    ):
        decode([good, good, bad, good], size=(8, 8))


# JPEGs of each coding Pillow makes: baseline 4:4:4 and 4:2:0, progressive, with restart
# markers, optimized Huffman tables, grayscale.
JPEG_KINDS = {
    "baseline 4:4:4": dict(quality=90, subsampling=0),
    "baseline 4:2:0": dict(quality=90, subsampling=2),
    "progressive": dict(quality=90, progressive=True),
    "restart markers": dict(quality=90, restart_marker_blocks=1),
    "optimized": dict(quality=75, optimize=True),
    "gray": dict(quality=90),
}


def jpeg_of(kind: str, seed: int = 0) -> bytes:
    rgb = photo(40, 56, seed)
    return encode(rgb[..., 0] if kind == "gray" else rgb, "JPEG", **JPEG_KINDS[kind])


@pytest.mark.parametrize("kind", sorted(JPEG_KINDS))
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.8, 0.97, -3, -2, -1])
def test_a_truncated_jpeg_is_refused_naming_the_column_and_row(kind, keep):
    """Cut in its headers, in its image data, or by just its last bytes (the end-of-image
    marker): an error, where the decoder's tolerant mode gave an image with a gray part."""
    data = jpeg_of(kind)
    cut = data[: int(len(data) * keep)] if keep > 0 else data[:keep]
    good = jpeg_of(kind, seed=1)
    decode([good, data], size=(40, 56))  # the whole file reads
    with pytest.raises(
        ValueError,
        match=rf"column 'img': the image at row 1 of the batch cannot be read: JPEG: it ends "
        rf"after {len(cut)} bytes, .* it is truncated",
    ):
        decode([good, cut], size=(40, 56))


@pytest.mark.parametrize("kind", sorted(set(JPEG_KINDS) - {"progressive"}))
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.8, 0.97])
def test_a_cut_jpeg_given_its_end_marker_back_is_refused(kind, keep):
    """The scan's data runs out before its last block: the decoder would read zeros past the
    marker (a gray part), and reads a code no table has instead. (A progressive JPEG cut at a
    scan's end is a whole JPEG of fewer scans, and its DC refinement scans carry raw bits, so
    a cut there cannot be told.)"""
    data = jpeg_of(kind)
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")  # the scan's data
    mended = data[: start + int((len(data) - 2 - start) * keep)] + b"\xff\xd9"
    with pytest.raises(
        ValueError,
        match=r"the image at row 0 of the batch cannot be read: JPEG: its image data cannot be "
        r"decoded \(.*\): it is corrupt or cut short",
    ):
        decode([mended], size=(40, 56))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP lossy", "WEBP lossless"])
def test_truncated_png_and_webp_are_refused_at_every_cut(fmt):
    """Every cut of the file, to its last byte (the PNG end chunk's checksum, the WebP padding),
    is an error naming the row."""
    kind, _, mode = fmt.partition(" ")
    data = encode(photo(12, 16), kind, **({"lossless": mode == "lossless"} if mode else {}))
    decode([data], size=(12, 16))
    for cut in range(12, len(data)):
        why = "PNG: unexpected end of file" if kind == "PNG" else "WebP: .* it is truncated"
        with pytest.raises(
            ValueError, match=f"the image at row 0 of the batch cannot be read: {why}"
        ):
            decode([data[:cut]], size=(12, 16))


def test_skip_drops_the_truncated_rows_and_keeps_the_others_as_they_decode():
    images = [jpeg_of(kind, seed) for seed, kind in enumerate(sorted(JPEG_KINDS))]
    cut = {1: images[1][: len(images[1]) // 2], 4: images[4][:-2]}
    batch = pa.record_batch(
        {
            "id": list(range(len(images))),
            "img": pa.array([cut.get(i, image) for i, image in enumerate(images)], pa.binary()),
        }
    )
    out = to_batch(batch, {"img": Image(size=(40, 56), on_error="skip")})
    keep = [i for i in range(len(images)) if i not in cut]
    assert out["id"].tolist() == keep
    alone = decode([images[i] for i in keep], size=(40, 56))
    assert torch.equal(out["img"], alone)


def _claiming(data: bytes, width: int, height: int) -> bytes:
    """A real JPEG with its frame header (SOF0 or SOF2) saying another size."""
    raw = bytearray(data)
    at = next(i for i in range(len(raw) - 1) if raw[i] == 0xFF and raw[i + 1] in (0xC0, 0xC2))
    raw[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_claiming_more_pixels_than_its_bytes_code_is_refused(progressive):
    small = encode(photo(16, 16), "JPEG", quality=90, progressive=progressive)
    bomb = _claiming(small, 16384, 16384)
    kind = "one bit a block in a progressive" if progressive else "two bits a block in a baseline"
    with pytest.raises(
        ValueError,
        match=rf"column 'img': the image at row 0 of the batch cannot be read: JPEG: its header "
        rf"claims 16384x16384 pixels, more than its {len(bomb)} bytes can code: .*{kind} JPEG",
    ):
        decode([bomb], size=(8, 8))
    decode([small], size=(8, 8))  # the same file at its own size reads


@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
def test_a_large_size_claimed_on_few_bytes_costs_no_memory(kind):
    """In a process of its own, reading the file leaves the peak memory where it was: the JPEG
    is refused before its pixels are allocated (decoding it to gray took over 700 MB), and the
    PNG's buffer is paid for only as far as its data fills it."""
    import subprocess
    import sys

    if kind == "JPEG":
        bomb = _claiming(encode(photo(16, 16), "JPEG", quality=90), 16384, 16384)
    else:
        bomb = _png_claiming(16383, 16383)  # under the 2**28-pixel limit
    child = (
        "import resource, sys, pyarrow as pa\n"
        "from lancetorch.decode import Image\n"
        "from lancetorch.util import to_batch\n"
        "def read(data):\n"
        "    batch = pa.record_batch({'img': pa.array([data], pa.binary())})\n"
        "    return to_batch(batch, {'img': Image(size=(8, 8), on_error='skip')})['img']\n"
        "read(b'warm up')\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "assert len(read(sys.stdin.buffer.read())) == 0\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    grown_kib = subprocess.run(
        [sys.executable, "-c", child], input=bomb, capture_output=True, check=True
    ).stdout
    assert int(grown_kib) < 64 * 1024


FLAT_JPEGS = [
    dict(quality=95, subsampling=0, optimize=True),
    dict(quality=10, subsampling=0, optimize=True),
    dict(quality=95, subsampling=2, optimize=True),
    dict(quality=95, subsampling=0, progressive=True),
    dict(quality=10, subsampling=2, progressive=True),
    dict(quality=95),
]


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("options", FLAT_JPEGS, ids=str)
def test_flat_jpegs_the_bound_is_tightest_for_still_decode(mode, options):
    """A solid color is the fewest bytes a JPEG can be: a baseline one with optimized tables
    codes two bits a block, exactly what the rule asks; a progressive one two (its DC first and
    refinement scans), twice what it asks."""
    color = (200, 30, 90) if mode == "RGB" else 77
    data = io.BytesIO()
    PILImage.new(mode, (520, 392), color).save(data, format="JPEG", **options)
    got = decode([data.getvalue()], size=(49, 65), layout="NHWC")[0].numpy().astype(int)
    assert np.abs(got - pil_rgb(data.getvalue())[0, 0]).max() <= 2


@pytest.mark.slow
def test_a_large_flat_jpeg_still_decodes():
    data = io.BytesIO()
    PILImage.new("RGB", (4000, 4000), (200, 30, 90)).save(
        data, format="JPEG", quality=95, subsampling=2, optimize=True
    )
    got = decode([data.getvalue()], size=(4, 4), layout="NHWC")[0].numpy().astype(int)
    assert np.abs(got - pil_rgb(data.getvalue())[0, 0]).max() <= 2


def test_center_crop_and_resize_follow_the_aspect():
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = 255  # a white square in the middle third
    got = decode([encode(wide, "PNG")], size=(10, 10), layout="NHWC")[0].numpy()
    assert got[:, 1:-1].min() == 255  # the center crop is the white square (its edges blend)


def test_random_crops_repeat_for_a_seed_and_epoch_and_vary_otherwise():
    data = [encode(photo(64, 80, s), "PNG") for s in range(4)]
    kw = dict(size=(32, 32), crop="random", flip=True, seed=5)
    batch = pa.record_batch({"img": pa.array(data, pa.binary())})
    first = to_batch(batch, {"img": Image(**kw)}, epoch=1)["img"]
    again = to_batch(batch, {"img": Image(**kw)}, epoch=1)["img"]
    other = to_batch(batch, {"img": Image(**kw)}, epoch=2)["img"]
    seeded = to_batch(batch, {"img": Image(**{**kw, "seed": 6})}, epoch=1)["img"]
    assert torch.equal(first, again)
    assert not torch.equal(first, other) and not torch.equal(first, seeded)
    assert first.shape == (4, 3, 32, 32)


def test_image_spec_arguments_are_checked():
    for bad in [
        dict(size=(0, 4)),
        dict(layout="CHW"),
        dict(crop="resize"),
        dict(scale=(0.5, 0.1)),
        dict(ratio=(0, 1)),
        dict(seed=-1),
    ]:
        with pytest.raises(ValueError):
            Image(**bad)
    with pytest.raises(TypeError, match="images are binary columns"):
        to_batch(pa.record_batch({"img": ["not bytes"]}), {"img": Image()})


def test_flip_mirrors_the_center_crop_for_about_half_the_images():
    # Image(flip=True) with the default center crop once did nothing.
    data = [encode(photo(20, 30, s), "PNG") for s in range(64)]
    plain = decode(data, size=(8, 12))
    flipped = decode(data, size=(8, 12), flip=True)
    mirrored = [torch.equal(f, p.flip(-1)) for f, p in zip(flipped, plain)]
    kept = [torch.equal(f, p) for f, p in zip(flipped, plain)]
    assert all(m or k for m, k in zip(mirrored, kept))  # each image as it was, or mirrored
    assert 16 <= sum(mirrored) <= 48, sum(mirrored)
    assert torch.equal(flipped, decode(data, size=(8, 12), flip=True))  # the same every run
    other = decode(data, size=(8, 12), flip=True, seed=1)
    assert not torch.equal(flipped, other)  # the seed draws the flips


def test_an_int_size_is_a_square_and_other_shapes_are_refused():
    data = [encode(photo(20, 30), "PNG")]
    assert Image(size=7).size == (7, 7)
    assert Image(size=np.int64(7)).size == (7, 7)
    assert decode(data, size=7).shape == (1, 3, 7, 7)
    assert torch.equal(decode(data, size=7), decode(data, size=(7, 7)))
    with pytest.raises(ValueError, match="has 3 values"):
        Image(size=(4, 4, 3))
    for bad in ["224", 224.0, True, (4, 4.0), None]:
        with pytest.raises(TypeError, match="size="):
            Image(size=bad)
    with pytest.raises(ValueError, match="size=0"):
        Image(size=0)


def test_image_settings_of_another_type_are_refused_not_converted():
    for bad in [
        dict(flip=1),
        dict(flip="yes"),
        dict(seed=1.5),
        dict(seed="1"),
        dict(layout=1),
        dict(scale="0.5"),
        dict(ratio=("1", "2")),
    ]:
        with pytest.raises(TypeError):
            Image(**bad)


def test_a_spec_class_for_an_instance_is_refused_before_any_row_is_read(mem_db):
    table = mem_db.create_table("t", {"img": pa.array([encode(photo(8, 8), "PNG")], pa.binary())})
    from lancetorch.permutation import Permutation

    calls = [
        lambda: Loader(table, 1, per_column=True, decode={"img": Image}),
        lambda: to_batch(table.__getitems__([0]), {"img": Image}),
        lambda: Permutation.identity(table).with_format("torch_dict", decode={"img": Image}),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=r"the class Image, not a spec: write Image\(\.\.\.\)"):
            call()


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_the_loader_decodes_images(tmp_path, where):
    db = lancetorch.connect("memory://" if where == "memory" else tmp_path)
    pictures = [photo(20 + i % 5, 30, i) for i in range(40)]
    table = db.create_table(
        "img",
        pa.table(
            {
                "id": np.arange(40),
                "jpeg": pa.array([encode(p, "PNG") for p in pictures], pa.binary()),
            }
        ),
    )
    seen = []
    for batch in Loader(
        table, 16, seed=2, per_column=True, decode={"jpeg": Image(size=(10, 15), layout="NHWC")}
    ):
        assert batch["jpeg"].shape == (len(batch["id"]), 10, 15, 3)
        seen += batch["id"].tolist()
    assert sorted(seen) == list(range(40))


def test_skipped_images_leave_every_column_of_their_row(mem_db):
    good = encode(photo(8, 8), "PNG")
    images = [good, b"junk", good, None, good, good]
    batch = pa.record_batch(
        {"id": [0, 1, 2, 3, 4, 5], "img": pa.array(images, pa.binary()), "s": list("abcdef")}
    )
    out = to_batch(batch, {"img": Image(size=(4, 4), on_error="skip")})
    assert out["id"].tolist() == [0, 2, 4, 5] and out["s"] == ["a", "c", "e", "f"]
    assert out["img"].shape == (4, 3, 4, 4)
    assert Image(size=(4, 4), on_error="skip").decode(batch, "img")["img"].shape[0] == 4
    table = mem_db.create_table("mixed", pa.Table.from_batches([batch]))
    loader = Loader(
        table,
        4,
        shuffle=False,
        per_column=True,
        decode={"img": Image(size=(4, 4), on_error="skip")},
    )
    got = [b for b in loader]
    assert sum((b["id"].tolist() for b in got), []) == [0, 2, 4, 5]
    assert all(len(b["s"]) == len(b["id"]) == b["img"].shape[0] for b in got)
    assert loader.stats()["skipped"] == 2
    with pytest.raises(ValueError, match="on_error"):
        Image(on_error="ignore")


def test_images_to_column_round_trips_through_image():
    from lancetorch.util import images_to_column

    pictures = [photo(12, 10, s) for s in range(3)]
    column = images_to_column(
        [pictures[0], PILImage.fromarray(pictures[1]), encode(pictures[2], "PNG"), None]
    )
    assert column.type == pa.binary() and column.null_count == 1
    got = decode(column.to_pylist()[:3], size=(12, 10), layout="NHWC")
    assert all(np.array_equal(got[i].numpy(), pictures[i]) for i in range(3))
    jpeg = images_to_column([pictures[0]], format="JPEG", quality=95)
    assert jpeg[0].as_py()[:2] == b"\xff\xd8"
    with pytest.raises(TypeError, match="image 1 is ndarray of float64"):
        images_to_column([pictures[0], np.zeros((4, 4))])


def test_random_crops_are_the_same_in_another_process():
    """The draws come from (seed, epoch, the image's bytes): a worker process, with its own
    threads and its own order of work, makes the same crops."""
    import pickle
    import subprocess
    import sys

    data = [encode(photo(48, 64, s), "PNG") for s in range(6)]
    batch = pa.record_batch({"img": pa.array(data, pa.binary())})
    spec = Image(size=(16, 16), crop="random", flip=True, seed=11)
    here = to_batch(batch, {"img": spec}, epoch=3)["img"]
    child = (
        "import sys, pickle, pyarrow as pa\n"
        "from lancetorch.util import to_batch\n"
        "batch, spec = pickle.loads(sys.stdin.buffer.read())\n"
        "out = to_batch(batch, {'img': spec}, epoch=3)['img']\n"
        "sys.stdout.buffer.write(out.numpy().tobytes())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child],
        input=pickle.dumps((batch, spec)),
        capture_output=True,
        check=True,
    ).stdout
    assert out == here.numpy().tobytes()


# -- jpeg="crop": only the crop decoded, DCT-scaled where the crop allows ------------------------
# Against a full decode with the same crop and resize: the mean Image's docstring states, and
# the largest pixel difference these photos give room for (its docstring allows single pixels
# at sharp edges more; docs/performance.md has what photos show).
MEAN_LEVELS, MAX_LEVELS = 2.0, 32


def edged_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """``photo`` with sharp-edged blocks of other colours on it: detail a scaled DCT loses."""
    out = photo(h, w, seed).astype(np.int16)
    rng = np.random.default_rng(seed + 100)
    for _ in range(40):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        out[y : y + rng.integers(4, h // 4), x : x + rng.integers(4, w // 4)] += rng.integers(
            -90, 90, 3
        )
    return np.clip(out, 0, 255).astype(np.uint8)


def center_box(w: int, h: int, out_h: int, out_w: int) -> tuple[float, float, float, float]:
    """The center crop Image draws: the largest centered box of the output's aspect."""
    aspect = out_w / out_h
    cw, ch = (h * aspect, h) if w / h > aspect else (w, w / aspect)
    return ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)


def assert_within_tolerance(got: np.ndarray, want: np.ndarray) -> None:
    error = np.abs(got.astype(float) - want.astype(float))
    assert error.mean() <= MEAN_LEVELS and error.max() <= MAX_LEVELS, (
        error.mean(),
        error.max(),
    )


FUSED_KINDS = {
    "baseline 4:4:4": dict(quality=90, subsampling=0),
    "baseline 4:2:0": dict(quality=90, subsampling=2),
    "progressive": dict(quality=90, progressive=True),
    "restart markers": dict(quality=90, restart_marker_blocks=3),
    "gray": dict(quality=90),
}


# Output sizes of a 960x720 photo's center crop at each DCT scale (the crop 720 px high): 1/8
# (90 px, the crop 8 times it), 1/4 (160), 1/2 (300), none but a region (a 60x900 strip, 8% of
# the image), and none at all (a 400 px square: its crop is 75% of the image, decoded whole).
SCALES = {"1/8": (90, 90), "1/4": (160, 160), "1/2": (300, 300), "region": (60, 900)}


@pytest.mark.parametrize("kind", sorted(FUSED_KINDS))
@pytest.mark.parametrize("scale", sorted(SCALES) + ["whole"])
def test_a_center_crop_is_within_the_tolerance_of_pils_full_decode(kind, scale):
    rgb = edged_photo(720, 960, seed=len(kind))
    data = encode(rgb[..., 1] if kind == "gray" else rgb, "JPEG", **FUSED_KINDS[kind])
    out_h, out_w = SCALES.get(scale, (400, 400))
    full = PILImage.open(io.BytesIO(data)).convert("RGB")
    want = np.asarray(
        full.resize((out_w, out_h), PILImage.BILINEAR, box=center_box(960, 720, out_h, out_w))
    )
    got = decode([data], size=(out_h, out_w), layout="NHWC")[0].numpy()
    assert_within_tolerance(got, want)
    exact = decode([data], size=(out_h, out_w), layout="NHWC", jpeg="full")[0].numpy()
    assert np.abs(exact.astype(float) - want).mean() <= 1.0  # the full decode, as before
    if scale == "whole":  # no scale helps and the crop is most of the image: the same decode
        assert np.array_equal(got, exact)


def test_random_crops_are_the_same_rectangles_in_either_mode():
    """The crops are drawn from the header's size as the full decode draws them: each image of
    the batch, each epoch, is within the tolerance of its full decode (another rectangle would
    be far off), and the output of a crop too large for any scale is the full decode's."""
    data = [encode(edged_photo(600 + 40 * s, 800, s), "JPEG", quality=90) for s in range(6)]
    for size, epoch in [((224, 224), 0), ((224, 224), 1), ((64, 96), 2)]:
        kw = dict(size=size, crop="random", flip=True, seed=3, layout="NHWC")
        batch = pa.record_batch({"img": pa.array(data, pa.binary())})
        fused = to_batch(batch, {"img": Image(**kw)}, epoch=epoch)["img"].numpy()
        exact = to_batch(batch, {"img": Image(**kw, jpeg="full")}, epoch=epoch)["img"].numpy()
        for got, want in zip(fused, exact):
            assert_within_tolerance(got, want)
        assert not np.array_equal(fused, exact)  # some of them did decode scaled


def test_a_cmyk_jpeg_is_decoded_whole_in_either_mode():
    rgb = edged_photo(400, 400)
    out = io.BytesIO()
    PILImage.fromarray(rgb).convert("CMYK").save(out, format="JPEG", quality=95)
    got = decode([out.getvalue()], size=(50, 50), crop="random", seed=2)
    assert torch.equal(
        got, decode([out.getvalue()], size=(50, 50), crop="random", seed=2, jpeg="full")
    )
    want = np.asarray(PILImage.fromarray(rgb).resize((50, 50), PILImage.BILINEAR)).astype(float)
    assert np.abs(got[0].permute(1, 2, 0).numpy() - want).mean() < 40  # RGB, not CMYK bytes


def test_fused_random_crops_repeat_across_runs_and_in_spawned_dataloader_workers():
    """Seeded by (seed, epoch, bytes) as before: two runs, and the 2 spawned workers of a
    DataLoader reading a Permutation's torch_dict format, make the same crops."""
    from lancetorch.permutation import Permutation
    from torch.utils.data import DataLoader

    data = [encode(edged_photo(500, 700, s), "JPEG", quality=85) for s in range(8)]
    spec = Image(size=(112, 112), crop="random", flip=True, seed=9)
    batch = pa.record_batch({"img": pa.array(data, pa.binary())})
    first = to_batch(batch, {"img": spec})["img"]
    assert torch.equal(first, to_batch(batch, {"img": spec})["img"])
    table = lancetorch.connect("memory://").create_table("t", pa.table({"img": batch["img"]}))
    perm = Permutation.identity(table).with_format("torch_dict", decode={"img": spec})
    loader = DataLoader(
        perm,
        batch_size=2,
        shuffle=False,
        num_workers=2,
        multiprocessing_context="spawn",
    )
    images = torch.cat([b["img"] for b in loader])
    assert torch.equal(images, first)


def test_the_jpeg_setting_is_checked():
    with pytest.raises(ValueError, match="jpeg must be one of 'crop', 'full', got 'fast'"):
        Image(jpeg="fast")
    with pytest.raises(TypeError, match="jpeg"):
        Image(jpeg=1)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_a_cut_jpeg_is_refused_when_its_crop_is_decoded_scaled(keep):
    """Cut short: refused as before. Cut and given its end marker back inside the rows the
    crop needs (a center crop keeps them all here): libjpeg's warning is an error."""
    data = encode(edged_photo(480, 480), "JPEG", quality=90)
    cut = data[: int(len(data) * keep)]
    with pytest.raises(ValueError, match=r"JPEG: it ends after .* it is truncated"):
        decode([cut], size=(60, 60))
    with pytest.raises(
        ValueError,
        match=r"row 0 of the batch cannot be read: JPEG: its image data cannot be decoded "
        r"\(.*\): it is corrupt or cut short",
    ):
        decode([cut + b"\xff\xd9"], size=(60, 60))


def test_a_jpeg_libjpeg_warns_about_is_decoded_whole_instead():
    """An unknown JFIF version is harmless, but libjpeg warns: the full decode reads the file
    (the same pixels as jpeg="full"), where the same file with version 1 is decoded scaled."""
    data = encode(edged_photo(480, 480), "JPEG", quality=90)
    assert data[6:11] == b"JFIF\0" and data[11] == 1
    odd = data[:11] + b"\x02" + data[12:]
    full = decode([odd], size=(60, 60), jpeg="full")
    assert torch.equal(decode([odd], size=(60, 60)), full)
    assert not torch.equal(decode([data], size=(60, 60)), full)
