"""Images: JPEG bytes to RandomResizedCrop(224) + flip uint8 tensors, one epoch each way.

Two sets, each made once and kept as an Arrow file in the temporary folder, named by its size
and the seed, so a rerun reads the same bytes. ImageNet-sized: N (default 20,000) JPEGs at
quality 90, random crops 256-512 px a side of the colour photos scikit-image ships
(``skimage.data``: astronaut, coffee, chelsea, rocket, the Hubble deep field,
immunohistochemistry, retina), cut with a seeded numpy generator and encoded with PIL. Large:
``--large`` (default 2,000) JPEGs of 1 to 4 megapixels, each a random part (60-100% a side) of
one of the same photos upscaled (bicubic) to a size drawn from that range. Without
scikit-image the sets are synthetic instead (textured gradients), and the run says so. Ways,
each in a process of its own, in one run:

- ``pil-torchvision-dataloader`` (the baseline): PIL decode, then torchvision's
  ``v2.RandomResizedCrop(224)``, ``RandomHorizontalFlip`` and ``PILToTensor`` in a DataLoader
  with 2 spawned workers, batches of 64 stacked by the default collate;
- ``pil-dataloader``: only where torchvision is missing, the same with a hand-written crop,
  resize (bilinear) and flip in its place;
- ``pil-alone``: PIL decode alone, in one process (no crop, no loader);
- ``torchvision-decode-jpeg``: ``torchvision.io.decode_jpeg`` of each image (a tensor from
  ``torch.frombuffer``), in one process, no crop;
- ``pil-draft-dataloader``: as the baseline, with PIL's ``draft()`` before the decode: the crop
  is drawn from the header's size (torchvision's ``RandomResizedCrop.get_params``), the JPEG
  decoded at the smallest DCT scale that keeps the crop at least 224 px a side, then cropped,
  resized (bilinear) and flipped;
- ``lancetorch-loader-full``: ``Loader(..., per_column=True, decode={"jpeg": Image(size=(224,
  224), crop="random", flip=True, jpeg="full")})``: every pixel decoded, as before;
- ``lancetorch-loader``: the same with ``jpeg="crop"`` (the default): only the crop decoded,
  DCT-scaled where it allows;
- ``lancetorch-decoder``: ``to_batch`` of ready batches of the same bytes with ``jpeg="crop"``,
  the decoder with no loader around it (the limit the loader is held to).
- SPDL and NVIDIA DALI's CPU pipeline where they import and run (``spdl.io`` needs FFmpeg's
  shared libraries; DALI a wheel for this platform); otherwise left out with the reason.

Each way is timed from its first batch to its last (worker start-up and shut-down left out;
with few images the ways that work ahead gain, as they make batches while the first is
awaited). Prints images/s, ratios to the PIL DataLoader and to the decoder alone, and each
process's peak resident memory from the end of its set-up to the end of the epoch (the
DataLoader's workers are processes of their own: their peak is printed beside, not added
in). A way that cannot run here (torchvision missing) is left out with the reason.

    python benches/bench_images.py [--images N] [--large M] [--seed S] [--write]
                                   [--before DIR] [--files DIR]

``--write`` also writes the printed table to benches/results/bench_images.txt.
``--before DIR`` runs the lancetorch ways a second time, in the same run, with the
``lancetorch`` package in DIR (the ``python`` folder of the build before a change, main's
say), named ``<way> (before)``. ``--files DIR`` writes the two sets' JPEGs as files under
``DIR/<set>/`` instead of running the ways, for ``benches/bench_jpeg_stages.rs`` (each stage
of the crop decode timed).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import lancetorch
import numpy as np
import pyarrow as pa
import torch
from lancetorch.decode import Image
from lancetorch.loader import Loader
from lancetorch.util import to_batch
from PIL import Image as PILImage
from pyarrow import ipc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _memory  # benches/_memory.py, found through the path above

SIZE = 224
PHOTOS = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
]
RESULTS = Path(__file__).resolve().parent / "results" / "bench_images.txt"


# -- the set -------------------------------------------------------------------------------------
def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_photos(n: int, seed: int) -> list[bytes]:
    """Random crops, 256-512 px a side (less where the photo is smaller), of skimage's photos."""
    import skimage.data

    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        photo = photos[rng.integers(len(photos))]
        ph, pw = photo.shape[:2]
        h, w = rng.integers(256, min(512, ph) + 1), rng.integers(256, min(512, pw) + 1)
        top, left = rng.integers(0, ph - h + 1), rng.integers(0, pw - w + 1)
        out.append(_jpeg(np.ascontiguousarray(photo[top : top + h, left : left + w, :3])))
    return out


def make_large_photos(n: int, seed: int) -> list[bytes]:
    """1-4 megapixel JPEGs: random parts of skimage's photos, upscaled (bicubic)."""
    import skimage.data

    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        photo = photos[rng.integers(len(photos))]
        ph, pw = photo.shape[:2]
        h, w = int(ph * rng.uniform(0.6, 1.0)), int(pw * rng.uniform(0.6, 1.0))
        top, left = rng.integers(0, ph - h + 1), rng.integers(0, pw - w + 1)
        pixels = rng.uniform(1e6, 4e6)
        aspect = rng.uniform(0.75, 1.5)
        width = int((pixels * aspect) ** 0.5)
        part = PILImage.fromarray(np.ascontiguousarray(photo[top : top + h, left : left + w, :3]))
        upscaled = part.resize((width, int(pixels / width)), PILImage.BICUBIC)
        out.append(_jpeg(np.asarray(upscaled)))
    return out


def make_large_synthetic(n: int, seed: int) -> list[bytes]:
    """Textured gradients upscaled to 1-4 megapixels: the stand-in without scikit-image."""
    rng = np.random.default_rng(seed)
    out = []
    for small in make_synthetic(n, seed):
        size = (int(rng.integers(1200, 2300)), int(rng.integers(900, 1700)))
        out.append(_jpeg(np.asarray(PILImage.open(io.BytesIO(small)).resize(size))))
    return out


def make_synthetic(n: int, seed: int) -> list[bytes]:
    """Textured gradients, 256-420 px a side: the stand-in where scikit-image is missing."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = rng.integers(256, 421, size=2)
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / w, y * 255 / h, (x * y) % 255], axis=-1)
        out.append(_jpeg(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)))
    return out


def image_set(n: int, seed: int, large: bool = False) -> tuple[Path, str]:
    """The set's Arrow file (made on first use) and what it holds."""
    try:
        import skimage.data  # noqa: F401

        kind, make = "photos", make_large_photos if large else make_photos
    except ImportError:
        kind, make = "synthetic", make_large_synthetic if large else make_synthetic
    kind = f"large-{kind}" if large else kind
    path = Path(tempfile.gettempdir()) / f"lancetorch-bench-images-{kind}-{n}-{seed}.arrow"
    if path.exists():
        try:
            if read_set(path).num_rows == n:
                return path, kind
        except (OSError, pa.ArrowInvalid):
            pass  # a file cut short: make it again
    print(f"making the set ({kind}, {n:,} images) in {path} ...", flush=True)
    images = make(n, seed)
    schema = pa.schema([("jpeg", pa.binary()), ("id", pa.int64())])
    part = path.with_suffix(f".{os.getpid()}.part")
    with ipc.new_file(part, schema) as writer:  # batches of 1,024: no 2 GiB offsets
        for i in range(0, n, 1024):
            chunk = images[i : i + 1024]
            ids = np.arange(i, i + len(chunk))
            writer.write_batch(
                pa.record_batch([pa.array(chunk, pa.binary()), pa.array(ids)], schema=schema)
            )
    os.replace(part, path)
    return path, kind


def read_set(path: Path) -> pa.Table:
    """The set, memory-mapped (no copy until a row is read)."""
    return ipc.open_file(pa.memory_map(str(path))).read_all()


# -- the ways ------------------------------------------------------------------------------------
class PILDataset(torch.utils.data.Dataset):
    """PIL decode and a transform per row; each worker maps the set's file itself."""

    def __init__(self, path: Path, n: int, transform: Callable) -> None:
        self.path, self.n, self.transform, self.column = path, n, transform, None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.column is None:
            self.column = read_set(self.path).column("jpeg")
        img = PILImage.open(io.BytesIO(self.column[i].as_py()))
        if not isinstance(self.transform, DraftTransform):
            img = img.convert("RGB")
        return self.transform(img, i)


def torchvision_transform():
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop(SIZE), v2.RandomHorizontalFlip(), v2.PILToTensor()])


class TorchvisionTransform:
    """``v2.RandomResizedCrop`` + ``RandomHorizontalFlip`` + ``PILToTensor`` (made per process)."""

    def __init__(self) -> None:
        self.transform = None

    def __call__(self, img: PILImage.Image, i: int) -> torch.Tensor:
        if self.transform is None:
            self.transform = torchvision_transform()
        return self.transform(img)


class DraftTransform:
    """The crop drawn from the header's size, ``draft()`` to the smallest DCT scale that keeps
    it at least 224 px a side, then the crop, a bilinear resize and a flip."""

    def __init__(self) -> None:
        self.params = None

    def __call__(self, img: PILImage.Image, i: int) -> torch.Tensor:
        if self.params is None:
            from torchvision import transforms

            self.params = transforms.RandomResizedCrop.get_params
        w, h = img.size
        top, left, ch, cw = self.params(img, (0.08, 1.0), (3 / 4, 4 / 3))  # header only
        img.draft("RGB", (max(1, w * SIZE // cw), max(1, h * SIZE // ch)))
        sx, sy = img.size[0] / w, img.size[1] / h
        box = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
        img = img.convert("RGB").resize((SIZE, SIZE), PILImage.BILINEAR, box=box)
        if torch.rand(()) < 0.5:
            img = img.transpose(PILImage.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def hand_transform(img: PILImage.Image, i: int) -> torch.Tensor:
    """RandomResizedCrop's draw, a bilinear resize and a flip, written out with PIL."""
    rng = np.random.default_rng(i)
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(0.08, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = round((area * aspect) ** 0.5), round((area / aspect) ** 0.5)
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            break
    else:
        left, top, cw, ch = 0, 0, w, h
    img = img.resize((SIZE, SIZE), PILImage.BILINEAR, box=(left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        img = img.transpose(PILImage.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def _dataloader(path: Path, table: pa.Table, size: int, transform: Callable) -> Iterator[int]:
    loader = torch.utils.data.DataLoader(
        PILDataset(path, table.num_rows, transform),
        batch_size=size,
        shuffle=True,
        num_workers=2,
        multiprocessing_context="spawn",
    )
    return (len(batch) for batch in loader)


def _blobs(table: pa.Table) -> list[bytes]:
    return table.column("jpeg").to_pylist()


def _per_image(blobs: list[bytes], size: int, decode: Callable) -> Iterator[int]:
    for i in range(0, len(blobs), size):
        for b in blobs[i : i + size]:
            decode(b)
        yield len(blobs[i : i + size])


def _pil_alone(path: Path, table: pa.Table, size: int) -> Iterator[int]:
    return _per_image(
        _blobs(table), size, lambda b: PILImage.open(io.BytesIO(b)).convert("RGB").load()
    )


def _torchvision_decode(path: Path, table: pa.Table, size: int) -> Iterator[int]:
    from torchvision.io import decode_jpeg

    warnings.filterwarnings("ignore", message=".*non-writable.*")  # decode_jpeg only reads
    return _per_image(
        _blobs(table), size, lambda b: decode_jpeg(torch.frombuffer(b, dtype=torch.uint8))
    )


SPEC = {"jpeg": Image(size=(SIZE, SIZE), crop="random", flip=True, seed=0)}
FULL = {"jpeg": Image(size=(SIZE, SIZE), crop="random", flip=True, seed=0, jpeg="full")}


def _lancetorch_loader(
    path: Path, table: pa.Table, size: int, spec: dict | None = None
) -> Iterator[int]:
    ours = lancetorch.connect("memory://").create_table("images", table)
    loader = Loader(ours, size, seed=0, per_column=True, decode=spec or SPEC)
    return (len(batch["jpeg"]) for batch in loader)


def _dali(path: Path, table: pa.Table, size: int) -> Iterator[int]:
    """DALI's CPU pipeline: ``fn.decoders.image_random_crop`` (its region decode), resize,
    flip, on 2 threads, fed the set's bytes batch by batch."""
    from nvidia.dali import fn, pipeline_def, types

    blobs = [np.frombuffer(b, np.uint8) for b in _blobs(table)]
    batches = [blobs[i : i + size] for i in range(0, len(blobs), size)]
    feed = iter(batches)

    @pipeline_def(batch_size=size, num_threads=2, device_id=None, prefetch_queue_depth=1)
    def pipe():  # type: ignore[no-untyped-def]
        jpegs = fn.external_source(source=lambda: next(feed), batch=True, dtype=types.UINT8)
        img = fn.decoders.image_random_crop(jpegs, device="cpu", output_type=types.RGB, seed=0)
        img = fn.resize(img, resize_x=SIZE, resize_y=SIZE)
        img = fn.flip(img, horizontal=fn.random.coin_flip())
        return fn.transpose(img, perm=[2, 0, 1])

    pipeline = pipe()
    pipeline.build()
    return (len(pipeline.run()[0]) for _ in batches)


def dali_missing() -> str | None:
    """Why DALI's CPU pipeline cannot run here, or None."""
    try:
        from nvidia.dali import fn, pipeline_def, types  # noqa: F401
    except Exception as e:  # noqa: BLE001  (not installed, no wheel for this platform)
        return f"nvidia-dali unusable ({type(e).__name__}: {str(e)[:80]})"
    return None


def spdl_missing() -> str | None:
    """Why SPDL's image decode cannot run here, or None."""
    try:
        import spdl.io

        spdl.io.demux_image(_jpeg(np.zeros((8, 8, 3), np.uint8)))
    except Exception as e:  # noqa: BLE001  (not installed, or FFmpeg's libraries missing)
        return f"spdl unusable ({type(e).__name__}: {str(e)[:100]})"
    return "spdl imports and demuxes here, but this bench has no SPDL way written yet"


def _lancetorch_decoder(path: Path, table: pa.Table, size: int) -> Iterator[int]:
    column = table.select(["jpeg"])
    batches = [
        column.slice(i, size).combine_chunks().to_batches()[0]
        for i in range(0, table.num_rows, size)
    ]
    return (len(to_batch(b, SPEC)["jpeg"]) for b in batches)


WAYS: dict[str, Callable[[Path, pa.Table, int], Iterator[int]]] = {
    "pil-torchvision-dataloader": lambda path, table, size: _dataloader(
        path, table, size, TorchvisionTransform()
    ),
    "pil-dataloader": lambda path, table, size: _dataloader(path, table, size, hand_transform),
    "pil-draft-dataloader": lambda path, table, size: _dataloader(
        path, table, size, DraftTransform()
    ),
    "pil-alone": _pil_alone,
    "torchvision-decode-jpeg": _torchvision_decode,
    "dali-cpu": _dali,
    "lancetorch-loader-full": lambda path, table, size: _lancetorch_loader(path, table, size, FULL),
    "lancetorch-loader": _lancetorch_loader,
    "lancetorch-decoder": _lancetorch_decoder,
}


def torchvision_missing() -> str | None:
    """Why torchvision's ways cannot run here, or None."""
    try:
        from torchvision.io import decode_jpeg

        torchvision_transform()
        pixels = np.zeros((8, 8, 3), np.uint8)
        decode_jpeg(torch.frombuffer(bytearray(_jpeg(pixels)), dtype=torch.uint8))
    except Exception as e:  # noqa: BLE001  (not installed, or built for another torch)
        return f"torchvision unusable ({type(e).__name__}: {str(e)[:80]})"
    return None


def run_way(name: str, path: Path, size: int) -> dict:
    """One way in this process: set-up, the first batch, then the rest of the epoch timed."""
    table = read_set(path)
    batches = WAYS[name](path, table, size)
    reset = _memory.reset_peak()
    base = _memory.rss_mib()
    next(batches)
    start = end = time.perf_counter()
    done = 0
    for rows in batches:  # the clock stops at the last batch, before the workers shut down
        done, end = done + rows, time.perf_counter()
    seconds = end - start
    peak = _memory.hwm_mib() if reset else _memory.self_peak_mib()
    return {
        "img_s": done / seconds,
        "peak_mib": peak,
        "over_mib": peak - base,
        "workers_peak_mib": _memory.children_peak_mib(),
    }


BEFORE = " (before)"


def run_set(
    path: Path, kind: str, n: int, size: int, skipped: dict[str, str], before: str | None
) -> list[str]:
    """Every way on one set, each in a process of its own: the set's lines of the table."""
    results = {}
    runs = []  # each lancetorch way beside its run with the build before, if any
    for name in WAYS:
        runs.append((name, None))
        if before and name.startswith("lancetorch"):
            runs.append((name + BEFORE, before))
    for name, package in runs:
        if name in skipped:
            continue
        env = dict(os.environ)
        if package:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [package, env.get("PYTHONPATH")]))
        way = name.removesuffix(BEFORE)
        cmd = [sys.executable, __file__, "--way", way, "--set", str(path)]
        proc = subprocess.run(
            [*cmd, "--batch-size", str(size)], capture_output=True, text=True, check=False, env=env
        )
        if proc.returncode != 0:
            print(f"  {name}: failed\n{proc.stderr[-2000:]}", flush=True)
            skipped = {**skipped, name: f"failed: {proc.stderr.strip().splitlines()[-1][:100]}"}
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {name}: {results[name]['img_s']:,.0f} img/s", flush=True)

    mib = path.stat().st_size / 2**20
    photos = f"{len(PHOTOS)} scikit-image photos"
    what = {
        "photos": f"random 256-512 px crops of {photos}",
        "large-photos": f"1-4 megapixel upscaled parts of {photos}",
        "synthetic": "synthetic gradients (scikit-image missing)",
        "large-synthetic": "synthetic gradients, 1-4 megapixels (scikit-image missing)",
    }[kind]
    lines = [
        f"{n:,} JPEGs ({mib:,.0f} MiB, {what}, quality 90), "
        f"RandomResizedCrop({SIZE}) + flip, batches of {size}",
        f"  {'way':<35} {'img/s':>9}   {'vs full-decode Loader':>21}   "
        f"{'vs PIL DataLoader':>17}   {'peak MiB':>8}   {'over set-up':>11}",
    ]
    base_name = next(
        (w for w in ("pil-torchvision-dataloader", "pil-dataloader") if w in results), None
    )
    base = results[base_name]["img_s"] if base_name else None
    full = results.get("lancetorch-loader-full", {}).get("img_s")
    for name, r in results.items():
        value = r["img_s"]
        vs_full = f"{value / full:.2f}x" if full else "-"
        vs_base = f"{value / base:.2f}x" if base else "-"
        lines.append(
            f"  {name:<35} {value:>9,.0f}   {vs_full:>21}   {vs_base:>17}   "
            f"{r['peak_mib']:>8,.0f}   {r['over_mib']:>11,.0f}"
        )
    for name, why in skipped.items():
        if name != "pil-dataloader" or base_name is None:
            lines.append(f"  {name:<35} left out: {why}")
    for name in ("pil-torchvision-dataloader", "pil-draft-dataloader"):
        if name in results:
            lines.append(
                f"  {name}: the parent's peak; its 2 workers are processes of their own, "
                f"the larger peaked at {results[name]['workers_peak_mib']:,.0f} MiB"
            )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--large", type=int, default=2_000, help="images of the 1-4 MP set")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write", action="store_true", help=f"also write {RESULTS.name}")
    p.add_argument("--before", help="another build's python folder: its lancetorch ways too")
    p.add_argument("--files", help="write the sets' JPEGs as files under this folder, and stop")
    p.add_argument("--way", help=argparse.SUPPRESS)  # a child: run this way, print JSON
    p.add_argument("--set", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.way:
        print(json.dumps(run_way(args.way, Path(args.set), args.batch_size)))
        return

    if args.files:
        for n, large in [(args.images, False), (args.large, True)]:
            path, kind = image_set(n, args.seed, large)
            folder = Path(args.files) / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i, data in enumerate(read_set(path).column("jpeg").to_pylist()):
                (folder / f"{i:06}.jpg").write_bytes(data)
            print(f"wrote {n:,} JPEGs to {folder}")
        return

    size = args.batch_size
    if min(args.images, args.large) <= size:
        p.error("--images and --large must be more than one batch: the first is not timed")
    skipped = {"pil-dataloader": "torchvision is there: its pipeline is the baseline"}
    missing = torchvision_missing()
    if missing:
        names = ("pil-torchvision-dataloader", "torchvision-decode-jpeg", "pil-draft-dataloader")
        skipped = {w: missing for w in names}
    if why := dali_missing():
        skipped["dali-cpu"] = why
    lines = []
    for n, large in [(args.images, False), (args.large, True)]:
        path, kind = image_set(n, args.seed, large)
        print(f"{kind}: {n:,} images", flush=True)
        lines += run_set(path, kind, n, size, skipped, args.before)
    lines.append(f"  {'spdl':<35} left out: {spdl_missing()}")
    lines += [
        "  peak MiB: the way's process (the set memory-mapped), from the end of its set-up to "
        "the epoch's end; over set-up: that peak less the process's size then",
        '  lancetorch-loader: jpeg="crop" (only the crop decoded, DCT-scaled where it '
        'allows); lancetorch-loader-full: jpeg="full" (every pixel decoded, as before)',
        '  GPU decode (Image(device="cuda"), DALI\'s mixed decoder): not measured, no GPU '
        "machine was lent to this run",
    ]
    print("\n".join(lines))
    if args.write:
        RESULTS.write_text("\n".join(lines) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
