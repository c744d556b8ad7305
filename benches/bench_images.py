"""Images: JPEG bytes to RandomResizedCrop(224) + flip uint8 tensors, one epoch each way.

The set: N (default 2,000) JPEGs at quality 90, 256-420 px a side, made with PIL from
textured gradients (synthetic stand-ins for photos). Ways, in one run:

- ``pil-dataloader``: PIL decode, crop, resize (bilinear) and flip in a DataLoader with 2
  spawned workers, then a stack, as a torchvision-style pipeline does;
- ``pil-alone``: PIL decode alone, in this process (no crop, no loader);
- ``lancetorch-loader``: ``Loader(..., decode={"jpeg": Image(crop="random", flip=True)})``;
- ``lancetorch-decoder``: ``to_batch`` of ready batches of the same bytes, the decoder with no
  loader around it (the limit the loader is held to).

Prints images/s and ratios to ``pil-dataloader`` and to ``lancetorch-decoder``.

    python benches/bench_images.py [--images N]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import pyarrow as pa
import torch
from PIL import Image as PILImage

import lancetorch
from lancetorch.decode import Image
from lancetorch.loader import Loader
from lancetorch.util import to_batch

SIZE = 224


def make_images(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = rng.integers(256, 421, size=2)
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / w, y * 255 / h, (x * y) % 255], axis=-1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        PILImage.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, images: list[bytes]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng(i)
        img = PILImage.open(io.BytesIO(self.images[i])).convert("RGB")
        w, h = img.size
        for _ in range(10):  # RandomResizedCrop's draw
            area = w * h * rng.uniform(0.08, 1.0)
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            cw, ch = int(round((area * aspect) ** 0.5)), int(round((area / aspect) ** 0.5))
            if 0 < cw <= w and 0 < ch <= h:
                left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
                break
        else:
            left, top, cw, ch = 0, 0, w, h
        img = img.resize((SIZE, SIZE), PILImage.BILINEAR, box=(left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            img = img.transpose(PILImage.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    n, size = args.images, args.batch_size
    images = make_images(n)
    spec = {"jpeg": Image(size=(SIZE, SIZE), crop="random", flip=True, seed=0)}
    results = {}

    loader = torch.utils.data.DataLoader(
        PILDataset(images), batch_size=size, shuffle=True, num_workers=2,
        multiprocessing_context="spawn")
    results["pil-dataloader"] = rate(lambda: [b for b in loader], n)

    results["pil-alone"] = rate(
        lambda: [PILImage.open(io.BytesIO(b)).convert("RGB").load() for b in images], n)

    table = lancetorch.connect("memory://").create_table(
        "images", pa.table({"jpeg": pa.array(images, pa.binary()), "id": np.arange(n)}))
    ours = Loader(table, size, seed=0, per_column=True, decode=spec)
    results["lancetorch-loader"] = rate(lambda: [b for b in ours], n)

    batches = [pa.record_batch({"jpeg": pa.array(images[i : i + size], pa.binary())})
               for i in range(0, n, size)]
    results["lancetorch-decoder"] = rate(lambda: [to_batch(b, spec) for b in batches], n)

    mib = sum(map(len, images)) / 2**20
    print(f"{n:,} JPEGs ({mib:,.0f} MiB), RandomResizedCrop({SIZE}) + flip, batches of {size}")
    base, limit = results["pil-dataloader"], results["lancetorch-decoder"]
    for name, value in results.items():
        print(f"  {name:<20} {value:>9,.0f} img/s   {value / base:5.2f}x PIL DataLoader   "
              f"{value / limit:5.2f}x the decoder alone")


if __name__ == "__main__":
    main()
