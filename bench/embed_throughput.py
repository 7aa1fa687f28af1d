"""Forward-only vs end-to-end embedding throughput, in one process, on this machine's device.

- forward only: the backbone's `img_encode` on one transformed batch already on the device (the ceiling);
- straightforward: the usual pipeline, the baseline: PIL decode and the model's whole transform in loader workers,
  float32 batches copied to the device, forward, features copied back;
- biobench, for each way it can get pixels (`embed.decode`, the pixel cache): `biobench.embed.embed` end to end,
  parquet written, on the same JPEGs.

Prints images/s and the ratio to forward only (issue 6: >= 0.85 on a GPU for ViT-B/16 at 224 in bfloat16).

    python bench/embed_throughput.py                   # CPU: vit_small_patch16_224, 256 JPEGs
    python bench/embed_throughput.py --images 16384 --workers 8 --model vit_base_patch16_224   # a GPU
"""

from __future__ import annotations

import argparse
import multiprocessing
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
from biobench.preprocess import plan

SIZE = (500, 375)  # the anchors' JPEGs (shared/reference/anchors.md)


def write_jpeg(args: tuple[int, str]) -> None:
    i, path = args
    rng = np.random.default_rng(i)
    blocks = rng.standard_normal((SIZE[1] // 16 + 1, SIZE[0] // 16 + 1, 3))
    smooth = np.kron(blocks, np.ones((16, 16, 1)))[: SIZE[1], : SIZE[0]]
    pixels = (128 + 60 * smooth + 6 * rng.standard_normal((SIZE[1], SIZE[0], 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_jpegs(folder: Path, n: int) -> Path:
    paths = [str(folder / f"{i:06d}.jpg") for i in range(n)]
    with multiprocessing.Pool() as pool:
        pool.map(write_jpeg, enumerate(paths), chunksize=64)
    rows = [{"example_id": Path(p).stem, "split": "test", "label": i % 10, "label_name": str(i % 10), "path": p,
             "group": None} for i, p in enumerate(paths)]
    manifest = folder / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(manifest)
    return manifest


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_only(spec: ModelSpec, sample: str, device: torch.device, batches: int) -> float:
    backbone = load_backbone(spec)
    backbone.to(device)
    pixel_plan = plan(backbone.make_transform())
    image = pixel_plan.pixels(open_rgb(sample))
    batch = pixel_plan.finish(image.unsqueeze(0).repeat(spec.batch_size, 1, 1, 1).to(device))
    batch = batch.contiguous(memory_format=torch.channels_last)
    dtype = DTYPES[spec.dtype]
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for _ in range(2):
            backbone.img_encode(batch)  # warm-up
        sync(device)
        start = time.perf_counter()
        for _ in range(batches):
            backbone.img_encode(batch)
        sync(device)
    return batches * spec.batch_size / (time.perf_counter() - start)


class _Transformed(torch.utils.data.Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(open_rgb(self.paths[i]))


def straightforward(spec: ModelSpec, paths: list[str], device: torch.device, workers: int) -> float:
    backbone = load_backbone(spec)
    backbone.to(device)
    loader = torch.utils.data.DataLoader(_Transformed(paths, backbone.make_transform()), batch_size=spec.batch_size,
                                         num_workers=workers, pin_memory=device.type == "cuda")
    dtype = DTYPES[spec.dtype]
    start = time.perf_counter()
    features = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for batch in loader:
            batch = batch.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            features.append(backbone.img_encode(batch).float().cpu())
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_small_patch16_224", help="timm model, random init")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", default="auto", help="an integer, or auto (biobench/encoder.py)")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, claim_device(args.device) as device:
        folder = Path(tmp)
        manifest = write_jpegs(folder, args.images)
        paths = pd.read_parquet(manifest)["path"].tolist()
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
        spec = ModelSpec(name=args.model, org="timm", checkpoint=args.model, weights="random", dtype=args.dtype,
                         batch_size=args.batch_size if args.batch_size == "auto" else int(args.batch_size))

        def run(label: str, **job) -> tuple[str, float, dict]:
            meta = embed(EmbedJob(manifest, "test", spec, folder / f"{label}.parquet", device=str(device),
                                  num_workers=args.workers, log_every_s=1e9, **job))
            return label, meta["images_per_s"], meta

        cache = folder / "pixel-cache"
        runs = [
            run("biobench, PIL in workers", decode="workers"),
            run("biobench, decoded on device", decode="device"),
            run("biobench, filling the cache", decode="workers", pixel_cache=cache),
            run("biobench, from the cache", decode="workers", pixel_cache=cache),
        ]
        batch_size = runs[0][2]["batch_size"]
        fixed = ModelSpec(**{**spec.__dict__, "batch_size": batch_size})
        forward = forward_only(fixed, paths[0], device, max(3, min(50, args.images // batch_size)))
        baseline = straightforward(fixed, paths, device, args.workers)
    print(f"device: {name}; torch {torch.__version__}; model {args.model}, {args.dtype}, batch {batch_size}, "
          f"{args.images} JPEGs of {SIZE[0]}x{SIZE[1]}, {args.workers} loader workers")
    print(f"{'path':34s} {'images/s':>10s} {'/ forward':>10s}")
    print(f"{'forward only':34s} {forward:10.1f} {1.0:10.2f}")
    print(f"{'straightforward (baseline)':34s} {baseline:10.1f} {baseline / forward:10.2f}")
    for label, speed, meta in runs:
        assert meta["batch_size"] == batch_size
        print(f"{label:34s} {speed:10.1f} {speed / forward:10.2f}   ({meta['pixels']['source']})")
    print("target on a GPU: >= 0.85 of forward only")


if __name__ == "__main__":
    main()
