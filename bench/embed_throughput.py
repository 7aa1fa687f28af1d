"""Forward-only vs end-to-end embedding throughput, in one process, on this machine's device.

Forward-only: the backbone's `img_encode` on an already transformed batch held on the device.
End to end: `biobench.embed.embed` on a folder of JPEGs (decode, transform, copy, forward, parquet write).
Prints both in images/s and their ratio (issue 6 asks for end to end >= 85% of forward-only on a GPU)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from biobench.devices import claim_device
from biobench.embed import DTYPES, EmbedJob, embed
from biobench.images import open_rgb
from biobench.models import ModelSpec, load_backbone


def write_jpegs(folder: Path, n: int, size: tuple[int, int]) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = folder / f"{i:06d}.jpg"
        pixels = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize(size, Image.BILINEAR).save(path, quality=90)
        rows.append({"example_id": f"{i:06d}", "split": "test", "label": i % 10, "label_name": str(i % 10),
                     "path": str(path), "group": None})
    manifest = folder / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(manifest)
    return manifest


def forward_only(spec: ModelSpec, sample: Path, device: torch.device, batches: int) -> float:
    backbone = load_backbone(spec)
    backbone.to(device)
    image = backbone.make_transform()(open_rgb(sample))
    batch = image.unsqueeze(0).repeat(spec.batch_size, 1, 1, 1).to(device).contiguous(
        memory_format=torch.channels_last)
    dtype = DTYPES[spec.dtype]
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        backbone.img_encode(batch)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(batches):
            backbone.img_encode(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return batches * spec.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vit_small_patch16_224")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    spec = ModelSpec(name=args.model, org="timm", checkpoint=args.model, weights="random", dtype=args.dtype,
                     batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = write_jpegs(folder, args.images, (500, 375))
        with claim_device(args.device) as device:
            name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
            forward = forward_only(spec, folder / "000000.jpg", device, max(1, args.images // args.batch_size))
        meta = embed(EmbedJob(manifest, "test", spec, folder / "emb.parquet", device=args.device,
                              num_workers=args.workers, log_every_s=1e9))
    print(f"device: {name}; torch {torch.__version__}; model {args.model}, {args.dtype}, batch {args.batch_size}, "
          f"{args.images} JPEGs of 500x375")
    print(f"forward only : {forward:8.1f} images/s")
    print(f"end to end   : {meta['images_per_s']:8.1f} images/s (decode with PIL in {args.workers} workers)")
    print(f"ratio        : {meta['images_per_s'] / forward:.2f} (target on a GPU: >= 0.85)")


if __name__ == "__main__":
    main()
