"""Shared loading for the Hugging Face ``transformers`` backends (``hf_clip``, ``siglip``).

A model is a hub id (``ORG/NAME``) or a local directory written by ``save_pretrained``
(``config.json``, weights, tokenizer files, ``preprocessor_config.json``). Loading order:

1. a local directory, or a hub id whose ``config.json`` is in the cache, loads offline;
2. an uncached id loads from the hub only when the hub answers, otherwise the one
   :func:`vlmrm.backends.hub.unavailable` message is raised at once (no minutes of retries);
3. ``pretrained=False`` builds random weights from the named model's config when that
   config is at hand, else from the library's default config, with a loud warning.

``trust_remote_code`` is always False: a reward model never runs code from the hub.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from vlmrm.backends.base import RewardBackend
from vlmrm.backends.hub import hub_offline, hub_reachable, unavailable
from vlmrm.backends.preprocess import ImagePreprocessor
from vlmrm.errors import ModelUnavailableError

# PIL resampling codes stored in preprocessor_config.json -> torchvision interpolation names.
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


@dataclass
class HFParts:
    """What a transformers backend needs: the model, its tokenizer and image preprocessor."""

    model: Any
    tokenizer: Any
    preprocessor: ImagePreprocessor


@dataclass(frozen=True)
class HFFamily:
    """How one model family is loaded; filled in by each backend module."""

    backend: str  # registry name, for messages
    model_types: tuple[str, ...]  # accepted config.model_type values
    model_class: str  # transformers class name, e.g. "CLIPModel"
    default_config: Callable[[], Any]  # library default config (random-weights fallback)
    default_tokenizer: Callable[[Any], Any]  # config -> tokenizer when none is at hand
    default_image_processor: Callable[[Any], Any]  # config -> image processor
    wrong_type_hint: dict[str, str]  # model_type -> what to use instead


def is_local(ref: str) -> bool:
    return os.path.isdir(os.path.expanduser(ref))


def load_hf(family: HFFamily, ref: str, pretrained: bool, cache_dir: str | None) -> HFParts:
    """Load (or, with ``pretrained=False``, randomly initialise) a transformers model."""
    source = os.path.expanduser(ref) if is_local(ref) else ref
    available = is_local(ref) or _cached(ref, "config.json", cache_dir)
    # A cached model may still miss files (weights, tokenizer): fetch them if the hub answers.
    online = not is_local(ref) and hub_reachable()
    if pretrained and not (available or online):
        raise unavailable(ref, family.backend, cache_dir, download_hint(family, ref))
    with _quiet_hub(online):
        config = _config(family, source, cache_dir, pretrained) if available or online else None
        if config is None:  # only when pretrained=False
            return _random_default(family, ref)
        _check_type(family, ref, config)
        model = _model(family, ref, source, config, pretrained, cache_dir, online)
        tokenizer = _tokenizer(family, ref, source, config, pretrained, cache_dir)
        processor = _image_processor(family, ref, source, config, pretrained, cache_dir)
    return HFParts(model, tokenizer, preprocessor_from_hf(processor, ref))


@contextlib.contextmanager
def _quiet_hub(online: bool) -> Iterator[None]:
    # Everything needed is local: keep huggingface_hub from retrying a dead network.
    if online:
        yield
    else:
        with hub_offline():
            yield


def _cached(repo: str, filename: str, cache_dir: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo, filename, cache_dir=cache_dir), str)
    except ValueError:  # not a valid repo id (e.g. an open_clip name with two slashes)
        return False


def _config(family: HFFamily, source: str, cache_dir: str | None, pretrained: bool):
    """The model's config, or None (random weights only) when it cannot be read."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, cache_dir=cache_dir, trust_remote_code=False)
    except (OSError, ValueError) as err:
        if not pretrained:
            return None
        raise ModelUnavailableError(
            f"{family.backend}: cannot read the model config of {source!r}: {err}") from None


def _check_type(family: HFFamily, ref: str, config) -> None:
    kind = getattr(config, "model_type", "?")
    if kind in family.model_types:
        return
    hint = family.wrong_type_hint.get(kind, "")
    raise ModelUnavailableError(
        f"reward.model={ref!r} is a {kind!r} model; backend {family.backend!r} loads "
        f"{' / '.join(family.model_types)} models only. {hint}".strip()
    )


def _model(family: HFFamily, ref: str, source: str, config, pretrained: bool,
           cache_dir: str | None, online: bool):
    import transformers

    cls = getattr(transformers, family.model_class)
    if not pretrained:
        return cls(config)
    try:
        return cls.from_pretrained(source, config=config, cache_dir=cache_dir,
                                   trust_remote_code=False)
    except OSError as err:  # weights missing from the cache / directory
        if not (online or is_local(ref)):  # config cached, weights not: the offline message
            raise unavailable(ref, family.backend, cache_dir, download_hint(family, ref)) from None
        raise ModelUnavailableError(
            f"{family.backend}: the weights of {source!r} could not be loaded: {err}") from None


def _tokenizer(family: HFFamily, ref: str, source: str, config, pretrained: bool,
               cache_dir: str | None):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, cache_dir=cache_dir, trust_remote_code=False)
    except (OSError, ValueError, ImportError, AttributeError) as err:
        if pretrained:
            raise ModelUnavailableError(
                f"{family.backend}: the tokenizer of {ref!r} could not be loaded ({err}). "
                "SentencePiece-only tokenizers need `pip install sentencepiece`.") from None
        _loud(f"{family.backend}: no tokenizer found for {ref!r}; using a stand-in tokenizer.")
        return family.default_tokenizer(config)


def _image_processor(family: HFFamily, ref: str, source: str, config, pretrained: bool,
                     cache_dir: str | None):
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(source, cache_dir=cache_dir,
                                                  trust_remote_code=False)
    except (OSError, ValueError) as err:
        if pretrained:
            raise ModelUnavailableError(
                f"{family.backend}: the image processor config (preprocessor_config.json) of "
                f"{ref!r} could not be loaded: {err}") from None
        _loud(f"{family.backend}: no preprocessor_config.json for {ref!r}; using the "
              "library's default image processor at the model's image size.")
        return family.default_image_processor(config)


def _random_default(family: HFFamily, ref: str) -> HFParts:
    import transformers

    _loud(f"{family.backend}: no config for {ref!r} is available locally and the hub cannot be "
          f"reached, so the library's DEFAULT {family.model_class} architecture is built with "
          "random weights. Give a local model directory or a cached hub id to get that model's "
          "architecture.")
    config = family.default_config()
    model = getattr(transformers, family.model_class)(config)
    processor = family.default_image_processor(config)
    return HFParts(model, family.default_tokenizer(config), preprocessor_from_hf(processor, ref))


def _loud(message: str) -> None:
    warnings.warn(message, stacklevel=4)


def preprocessor_from_hf(proc, ref: str = "") -> ImagePreprocessor:
    """Translate a transformers image processor's settings into a batched tensor preprocessor.

    Raises for settings the tensor path would not reproduce (rather than silently differ).
    """
    size, crop = proc.size, getattr(proc, "crop_size", None)
    resample = int(getattr(proc.resample, "value", proc.resample))
    problems = []
    if resample not in _RESAMPLE:
        problems.append(f"resample={resample} (supported: {sorted(_RESAMPLE)})")
    if not proc.do_resize:
        problems.append("do_resize=False")
    if not proc.do_rescale or abs(proc.rescale_factor - 1 / 255) > 1e-9:
        problems.append(f"do_rescale={proc.do_rescale}, rescale_factor={proc.rescale_factor}")
    if getattr(proc, "do_center_crop", False):
        target, mode = (crop.height, crop.width), "shortest"
        if size.shortest_edge != min(target):
            problems.append(f"shortest_edge={size.shortest_edge} with crop {target}")
    elif size.height and size.width:
        target, mode = (size.height, size.width), "squash"
    else:
        target, mode = (0, 0), "squash"
        problems.append(f"size={size} without a centre crop")
    if problems:
        raise ModelUnavailableError(
            f"The image processor of {ref!r} uses settings the batched preprocessing does not "
            f"reproduce: {', '.join(problems)}.")
    mean = tuple(proc.image_mean) if proc.do_normalize else (0.0, 0.0, 0.0)
    std = tuple(proc.image_std) if proc.do_normalize else (1.0, 1.0, 1.0)
    return ImagePreprocessor(size=(int(target[0]), int(target[1])), mean=mean, std=std,
                             interpolation=_RESAMPLE[resample], resize_mode=mode)


def download_hint(family: HFFamily, ref: str) -> str:
    return (f"hf download {ref} --cache-dir CACHE   (or: python -c \"import transformers as t; "
            f"t.{family.model_class}.from_pretrained('{ref}'); "
            f"t.AutoProcessor.from_pretrained('{ref}')\")")


class HFBackend(RewardBackend):
    """Shared part of the transformers backends: loading, device/dtype, image features.

    Subclasses set ``family`` (what to load) and implement ``_encode_prompts`` and
    ``embed_dim``, where CLIP and SigLIP differ. The text context is the model's
    ``max_position_embeddings``.
    """

    family: HFFamily

    def __init__(self, model: str, **kwargs) -> None:
        super().__init__(model, **kwargs)
        parts = load_hf(self.family, model, self.pretrained, self.cache_dir)
        self.model = parts.model.eval().requires_grad_(False).to(self.device, self.dtype)
        self.tokenizer = parts.tokenizer
        self.preprocessor = parts.preprocessor
        self.max_length = int(self.model.config.text_config.max_position_embeddings)

    @property
    def context_length(self) -> int:
        return self.max_length

    def _count_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, verbose=False)["input_ids"])

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return pooled(self.model.get_image_features(pixel_values=pixels))


def pooled(out) -> Any:
    """The embedding from ``get_*_features``: a tensor (transformers 4.x) or, in 5.x, an
    output object whose ``pooler_output`` holds the projected embedding."""
    return out if hasattr(out, "ndim") else out.pooler_output
