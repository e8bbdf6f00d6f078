"""Frames/s of each reward backend's path versus the naive path a user would write.

Backend path: ``backend.encode_images(frames)``: uint8 batch -> batched tensor preprocessing
on the backend's device -> batched image encoder -> normalised embeddings.
Naive path: for each frame, ``PIL.Image.fromarray`` -> the library's own processor
(open_clip ``preprocess``, transformers ``AutoImageProcessor``, the toy's PIL reference)
-> the model on that one frame -> normalise. Same weights, same frames, one run.
Weights are random (no downloads): speed does not depend on them.

    python benchmarks/backend_throughput.py            # default architectures (slow on CPU)
    python benchmarks/backend_throughput.py --small    # reduced architectures, seconds
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from vlmrm.backends.registry import available_backends
from vlmrm.config import RewardConfig
from vlmrm.run.build import make_backend

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: never wait for a hub

SMALL_TOWER = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
               "num_attention_heads": 4}


def frames_like_cartpole(n: int, h: int = 400, w: int = 600, seed: int = 0) -> torch.Tensor:
    """uint8 [n, h, w, 3] at CartPole's render size: white background, a cart and a pole."""
    rng = np.random.default_rng(seed)
    out = np.full((n, h, w, 3), 255, dtype=np.uint8)
    for i in range(n):
        x = int(rng.integers(100, w - 100))
        out[i, 250:280, x - 25:x + 25] = 0
        out[i, 120:250, x - 3:x + 3] = (202, 152, 101)
        out[i, 280:282] = 0
    return torch.from_numpy(out)


def build(name: str, small: bool, tmp: str, device: str):
    """(backend, naive per-frame function) for one backend, both on the same weights."""
    warnings.simplefilter("ignore")  # the random-weights warning is expected here
    cfg = RewardConfig(backend=name, pretrained=False, model=_model_name(name, small, tmp))
    backend = make_backend(cfg, device)
    return backend, _naive(name, backend, cfg.model, device)


def _model_name(name: str, small: bool, tmp: str) -> str:
    if name == "open_clip":
        return "ViT-S-32" if small else "ViT-B-32"
    if name in ("hf_clip", "siglip") and small:
        return _save_small_hf(name, tmp)
    return "default"  # hf_clip / siglip: the library's default config (ViT-B sized)


def _save_small_hf(name: str, tmp: str) -> str:
    """Write a config + processor (no weights needed for random init) to a directory."""
    import transformers as t

    if name == "hf_clip":
        config = t.CLIPConfig(text_config=SMALL_TOWER, projection_dim=256,
                              vision_config={**SMALL_TOWER, "image_size": 224, "patch_size": 32})
        processor = t.CLIPImageProcessor()
    else:
        config = t.SiglipConfig(text_config={**SMALL_TOWER, "pad_token_id": 1, "eos_token_id": 1,
                                             "bos_token_id": None, "projection_size": 256},
                                vision_config={**SMALL_TOWER, "image_size": 224, "patch_size": 16})
        processor = t.SiglipImageProcessor()
    path = f"{tmp}/{name}"
    config.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _naive(name: str, backend, model_name: str, device: str) -> Callable[[Image.Image], torch.Tensor]:
    model = backend.model
    if name == "open_clip":
        import open_clip

        preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)[2]
        return lambda img: model.encode_image(preprocess(img)[None].to(device, backend.dtype))
    if name in ("hf_clip", "siglip"):
        processor = _hf_processor(name, model_name, backend)
        return lambda img: model.get_image_features(
            pixel_values=processor(images=img, return_tensors="pt")["pixel_values"]
            .to(device, backend.dtype)).pooler_output
    if name == "toy":
        import vlmrm_toy_backend as toy

        return lambda img: model.image(toy.reference_preprocess([img], model.cfg).to(device))
    raise SystemExit(f"no naive path written for backend {name!r}")


def _hf_processor(name: str, model_name: str, backend):
    from transformers import AutoImageProcessor, CLIPImageProcessor, SiglipImageProcessor

    try:  # what users get: the default (torchvision) processor for that model
        return AutoImageProcessor.from_pretrained(model_name)
    except OSError:
        side = backend.image_size[0]
        if name == "hf_clip":
            return CLIPImageProcessor(size={"shortest_edge": side},
                                      crop_size={"height": side, "width": side})
        return SiglipImageProcessor(size={"height": side, "width": side})


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Best-of-``repeats`` wall time of ``fn`` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def bench(name: str, args: argparse.Namespace, frames: torch.Tensor, tmp: str) -> dict:
    backend, naive = build(name, args.small, tmp, args.device)
    backend.batch_size = args.batch_size
    images = [Image.fromarray(f.numpy()) for f in frames.cpu()]  # PIL conversion is naive-only

    @torch.inference_mode()
    def naive_all():
        return [torch.nn.functional.normalize(naive(Image.fromarray(f.numpy())).float(), dim=-1)
                for f in frames.cpu()]

    t_backend = timed(lambda: backend.encode_images(frames), args.repeats)
    t_naive = timed(naive_all, args.repeats)
    # Preprocessing alone: batched tensor ops vs the library's per-image processor.
    t_pre = timed(lambda: backend.preprocessor(frames, backend.dtype), args.repeats)
    ref = _reference_preprocess(name, backend)
    t_pre_naive = timed(lambda: [ref(img) for img in images], args.repeats) if ref else float("nan")
    params = sum(p.numel() for p in backend.model.parameters())
    return {"name": name, "params": params, "n": len(frames), "backend": t_backend,
            "naive": t_naive, "pre": t_pre, "pre_naive": t_pre_naive}


def _reference_preprocess(name: str, backend):
    # Re-derive the per-image processors for the preprocessing-only timing.
    if name == "open_clip":
        import open_clip

        return open_clip.create_model_and_transforms(backend.model_name, pretrained=None)[2]
    if name in ("hf_clip", "siglip"):
        proc = _hf_processor(name, backend.model_name, backend)
        return lambda img: proc(images=img, return_tensors="pt")["pixel_values"]
    if name == "toy":
        import vlmrm_toy_backend as toy

        return lambda img: toy.reference_preprocess([img], backend.model.cfg)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="reduced architectures")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backends", nargs="*", default=None, help="default: all registered")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)  # "random weights" notices from every library
    names = args.backends or list(available_backends())
    frames = frames_like_cartpole(args.frames).to(args.device)
    print(f"{args.frames} frames 400x600 uint8, batch {args.batch_size}, device {args.device}, "
          f"{args.threads} thread(s), {'small' if args.small else 'default'} architectures, "
          f"random weights, best of {args.repeats}")
    print(f"{'backend':<10} {'params':>8} {'backend f/s':>12} {'naive f/s':>10} {'ratio':>6}   "
          f"{'preproc f/s':>11} {'PIL f/s':>8} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = bench(name, args, frames, tmp)
            fps = {k: r["n"] / r[k] for k in ("backend", "naive", "pre", "pre_naive")}
            print(f"{name:<10} {r['params'] / 1e6:>7.1f}M {fps['backend']:>12.1f} "
                  f"{fps['naive']:>10.1f} {fps['backend'] / fps['naive']:>5.2f}x   "
                  f"{fps['pre']:>11.0f} {fps['pre_naive']:>8.0f} "
                  f"{fps['pre'] / fps['pre_naive']:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
