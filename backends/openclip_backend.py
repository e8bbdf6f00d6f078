"""open_clip reward backend.

Model names: ``ARCH/PRETRAINED_TAG`` (the paper's form, e.g. ``ViT-bigG-14/laion2b_s39b_b160k``),
``ARCH/path/to/checkpoint.{pt,bin,safetensors}``, ``hf-hub:ORG/REPO`` or ``local-dir:PATH``
(a directory with ``open_clip_config.json`` and weights). ``reward.model_config`` registers a
custom architecture JSON first.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vlmrm.backends.base import RewardBackend
from vlmrm.backends.hub import hub_offline, hub_reachable, unavailable
from vlmrm.backends.preprocess import ImagePreprocessor, as_pair
from vlmrm.errors import ModelUnavailableError


class OpenCLIPBackend(RewardBackend):
    name = "open_clip"
    model_naming = ("ARCH/TAG (e.g. ViT-B-32/laion2b_s34b_b79k; tags: open_clip.list_pretrained()), "
                    "ARCH/path/to/ckpt.safetensors, hf-hub:ORG/REPO, local-dir:PATH, or "
                    "vlmrm-demo (bundled demo model, not zero-shot)")

    def __init__(self, model: str, **kwargs) -> None:
        super().__init__(model, **kwargs)
        import open_clip

        if self.model_config:
            open_clip.add_model_config(self.model_config)
        self.model, self.tokenizer = _load(model, self.pretrained, self.cache_dir)
        self.model.eval().requires_grad_(False).to(self.device, self.dtype)
        cfg = self.model.visual.preprocess_cfg
        self.preprocessor = ImagePreprocessor(
            size=as_pair(cfg["size"]), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
            interpolation=cfg["interpolation"], resize_mode=cfg["resize_mode"],
            fill=int(cfg.get("fill_color", 0)),
        )

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[-1]) if _has_text_proj(self.model) else int(
            self.model.visual.output_dim)

    @property
    def context_length(self) -> int:
        # The tokenizer truncates (silently) to its context length: that is the limit.
        return int(getattr(self.tokenizer, "context_length", None) or self.model.context_length)

    def _count_tokens(self, prompt: str) -> int:
        tok = self.tokenizer
        if hasattr(tok, "sot_token_id"):  # open_clip's own BPE tokenizer: start + text + end
            return len(tok.encode(prompt)) + 2
        # hf-hub models wrap a transformers tokenizer, which adds its own special tokens.
        clean = getattr(tok, "clean_fn", lambda text: text)
        return len(tok.tokenizer(clean(prompt))["input_ids"])

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def _encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts).to(self.device)
        return self.model.encode_text(tokens)


def _has_text_proj(model) -> bool:
    proj = getattr(model, "text_projection", None)
    return isinstance(proj, torch.Tensor) and proj.ndim == 2


def bundled_models() -> dict[str, Path]:
    """Models shipped inside the vlmrm package, by name -> open_clip ``local-dir`` folder."""
    from importlib.resources import files

    root = Path(str(files("vlmrm") / "assets"))
    return {d.name: d for d in sorted(root.glob("*")) if (d / "open_clip_config.json").is_file()}


def _load(ref: str, pretrained: bool, cache_dir: str | None):
    import open_clip

    bundled = bundled_models()
    if ref in bundled:  # loads through the same local-dir path as any user's folder
        ref = f"local-dir:{bundled[ref]}"
    if ref.startswith(("hf-hub:", "local-dir:")):
        name, weights = ref, None
    else:
        name, _, weights = ref.partition("/")
        known = open_clip.list_models()
        if name not in known:
            raise ModelUnavailableError(
                f"reward.model={ref!r}: {name!r} is not an open_clip architecture. Known ones "
                f"include {', '.join(known[:12])}, ... (open_clip.list_models() lists all); a "
                "custom architecture needs reward.model_config=path/to/ARCH.json."
            )
    if not pretrained:
        model = open_clip.create_model(name, pretrained=None, load_weights=False)
        return model, open_clip.get_tokenizer(name)
    if name.startswith("local-dir:"):
        return _create(name, None, cache_dir), open_clip.get_tokenizer(name)
    if name.startswith("hf-hub:"):
        repo = name.removeprefix("hf-hub:")
        _ensure_hf_files(ref, repo, ["open_clip_config.json"], cache_dir)
        return _create(name, None, cache_dir), _tokenizer(name, cache_dir)
    return _create(name, _resolve_weights(ref, name, weights, cache_dir), cache_dir), \
        open_clip.get_tokenizer(name)


def _create(name: str, pretrained: str | None, cache_dir: str | None):
    import open_clip

    # Whatever is needed is cached by now (checked above) or a hub is reachable.
    offline = not hub_reachable()
    try:
        if offline:
            with hub_offline():
                return open_clip.create_model(name, pretrained=pretrained, cache_dir=cache_dir)
        return open_clip.create_model(name, pretrained=pretrained, cache_dir=cache_dir)
    except (FileNotFoundError, OSError, RuntimeError) as err:
        raise ModelUnavailableError(
            f"open_clip could not load {name!r} with weights {pretrained!r}: {err}"
        ) from None


def _tokenizer(name: str, cache_dir: str | None):
    import open_clip

    with hub_offline():
        return open_clip.get_tokenizer(name, cache_dir=cache_dir)


def _resolve_weights(ref: str, arch: str, weights: str, cache_dir: str | None) -> str:
    """A checkpoint path or a known pretrained tag whose files are cached or reachable."""
    import open_clip

    if not weights:
        raise ModelUnavailableError(
            f"reward.model={ref!r} names no weights. Use ARCH/TAG, e.g. {arch}/"
            f"{(open_clip.list_pretrained_tags_by_model(arch) or ['TAG'])[0]}, a checkpoint path "
            "ARCH/path/to/ckpt.safetensors, or reward.pretrained=false for random weights."
        )
    path = Path(os.path.expanduser(weights if weights.startswith(("/", ".", "~")) else weights))
    if path.suffix in (".pt", ".pth", ".bin", ".safetensors"):
        if not path.is_file():
            raise ModelUnavailableError(
                f"reward.model={ref!r}: checkpoint file {str(path)!r} does not exist.")
        return str(path.resolve())
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if weights not in tags:
        raise ModelUnavailableError(
            f"reward.model={ref!r}: {weights!r} is not a pretrained tag of {arch}. Known tags: "
            f"{', '.join(tags) or 'none'}; or give a checkpoint path ARCH/path/to/ckpt.pt."
        )
    cfg = open_clip.get_pretrained_cfg(arch, weights)
    if cfg.get("hf_hub"):
        repo, filename = _split_hub(cfg["hf_hub"])
        names = [filename] if filename else ["open_clip_model.safetensors",
                                              "open_clip_pytorch_model.bin"]
        _ensure_hf_files(ref, repo, names, cache_dir, any_of=True)
    elif not _url_cached(cfg.get("url", ""), cache_dir) and not hub_reachable():
        raise unavailable(ref, "open_clip", cache_dir, _download_hint(ref))
    return weights


def _split_hub(hf_hub: str) -> tuple[str, str]:
    parts = hf_hub.strip("/").split("/")
    return "/".join(parts[:2]), "/".join(parts[2:])


def _ensure_hf_files(ref: str, repo: str, filenames: list[str], cache_dir: str | None,
                     any_of: bool = False) -> None:
    from huggingface_hub import try_to_load_from_cache

    cached = [isinstance(try_to_load_from_cache(repo, f, cache_dir=cache_dir), str)
              for f in filenames]
    if (any(cached) if any_of else all(cached)) or hub_reachable():
        return
    raise unavailable(ref, "open_clip", cache_dir, _download_hint(ref))


def _url_cached(url: str, cache_dir: str | None) -> bool:
    if not url:
        return False
    root = cache_dir or os.path.expanduser("~/.cache/clip")
    return os.path.isfile(os.path.join(root, os.path.basename(url)))


def _download_hint(ref: str) -> str:
    if ref.startswith("hf-hub:"):
        return f"python -c \"import open_clip; open_clip.create_model('{ref}')\""
    arch, _, tag = ref.partition("/")
    return (f"python -c \"import open_clip; open_clip.create_model('{arch}', "
            f"pretrained='{tag}', cache_dir='CACHE')\"")
