"""Host memory of an embedding job against the number of images (issue 6: flat up to 1,000,000 images).

Each size runs `biobench.embed.embed` in a fresh process on a manifest of N rows (16 small JPEGs, cycled), with the
raw-pixels model at 8 px so that the images, not the model, set the pace. A thread samples the job's resident memory
(main process; loader workers are separate processes of fixed size). Prints, per N: seconds, peak RSS, the part of
it above the same process just before embedding, and the manifest's own size in memory, which is the one thing
that grows with N (its paths and ids).

    python bench/embed_memory.py                       # 10,000 / 100,000 / 1,000,000 images, ~10 min on 2 cores
    python bench/embed_memory.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

CHILD = r"""
import json, sys, threading, time
from pathlib import Path
import pandas as pd
from biobench.embed import EmbedJob, embed
from biobench.models import ModelSpec

def rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

manifest, out, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
frame = pd.read_parquet(manifest)
manifest_bytes = int(frame.memory_usage(deep=True).sum())
del frame
before, peak, running = rss(), [0], [True]

def sample():
    while running[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.2)

thread = threading.Thread(target=sample, daemon=True)
thread.start()
started = time.perf_counter()
embed(EmbedJob(manifest, "test", ModelSpec(name="pixels", org="pixels", image_size=8, batch_size=256), out,
               device="cpu", num_workers=workers, log_every_s=1e9, decode="workers"))
running[0] = False
thread.join()
print(json.dumps({"seconds": time.perf_counter() - started, "before": before, "peak": max(peak[0], rss()),
                  "manifest_bytes": manifest_bytes}))
"""


def write_manifest(folder: Path, n: int, files: list[str]) -> Path:
    ids = np.char.add("example-", np.arange(n).astype(str))
    frame = pd.DataFrame({"example_id": ids, "split": "test", "label": np.arange(n) % 10,
                          "label_name": (np.arange(n) % 10).astype(str), "path": np.array(files)[np.arange(n) % 16],
                          "group": None})
    manifest = folder / f"manifest-{n}.parquet"
    frame.to_parquet(manifest)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        files = []
        for i in range(16):
            path = folder / f"{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
            files.append(str(path))
        print(f"{'images':>10s} {'seconds':>8s} {'images/s':>9s} {'peak RSS MiB':>13s} {'embedding MiB':>14s} "
              f"{'manifest MiB':>13s}")
        for n in args.sizes:
            manifest = write_manifest(folder, n, files)
            out = folder / f"emb-{n}.parquet"
            result = subprocess.run([sys.executable, "-c", CHILD, str(manifest), str(out), str(args.workers)],
                                    capture_output=True, text=True, check=True)
            r = json.loads(result.stdout.strip().splitlines()[-1])
            mib = 2**20
            print(f"{n:10d} {r['seconds']:8.1f} {n / r['seconds']:9.0f} {r['peak'] / mib:13.0f} "
                  f"{(r['peak'] - r['before']) / mib:14.0f} {r['manifest_bytes'] / mib:13.0f}", flush=True)
            out.unlink()


if __name__ == "__main__":
    main()
