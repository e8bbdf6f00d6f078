"""Hugging Face generative judges (``transformers.AutoModelForImageTextToText``).

Model names: a hub id such as ``HuggingFaceTB/SmolVLM-256M-Instruct``,
``Qwen/Qwen2.5-VL-3B-Instruct``, ``Qwen/Qwen3-VL-2B-Instruct`` or
``google/paligemma-3b-mix-224``, or a local directory written by ``save_pretrained`` (model,
processor, tokenizer). The question is rendered with the processor's chat template (one
user turn: the image, then the question; then the generation prompt) or, for PaliGemma,
which has none, in its plain prompt format (the image tokens, then the question).

Every forward runs the whole prompt for each frame: no key/value cache of a shared prefix.
The text before the first image token is a few template tokens (``<|im_start|>User:``), a
few per cent of a prompt that image tokens dominate, and Qwen-VL's multimodal rotary
positions depend on where the images are, so a cached prefix would save little and is not
safe for every family. ``trust_remote_code`` is always False.
"""

from __future__ import annotations

import inspect
import math
import os

import torch

from vlmrm.backends.hf_common import _cached, _quiet_hub, is_local
from vlmrm.backends.hub import hub_reachable, unavailable
from vlmrm.backends.judge_base import JudgeBackend
from vlmrm.backends.preprocess import ImagePreprocessor
from vlmrm.errors import ModelUnavailableError

#: config.model_type values this backend has been tested with (tiny local models).
FAMILIES = ("idefics3", "smolvlm", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "paligemma")
#: Plain prompt format, for processors without a chat template: only PaliGemma's.
PLAIN_PROMPT = ("paligemma",)
#: Largest side envs render at for Qwen-VL (its processor takes any size; 448 px is
#: 256 image tokens, more than enough for a rendered scene).
QWEN_MAX_SIDE = 448
#: What some processors return that is not a model input.
_DROP = ("labels",)
#: Processor settings by family. Idefics3/SmolVLM's processor upsamples a frame to 2048 px
#: and splits it into 16 tiles plus the whole image (SmolVLM-256M: 1,088 image tokens); a
#: rendered frame of at most one tile (512 px) gains nothing from that but 17x the cost, so
#: the judge sees the one global image (64 tokens).
IMAGE_KWARGS = {"idefics3": {"do_image_splitting": False},
                "smolvlm": {"do_image_splitting": False}}


class HFJudgeBackend(JudgeBackend):
    name = "hf_judge"
    model_naming = ("hub id ORG/NAME of an image-text-to-text model (e.g. "
                    "HuggingFaceTB/SmolVLM-256M-Instruct, Qwen/Qwen2.5-VL-3B-Instruct, "
                    "Qwen/Qwen3-VL-2B-Instruct, google/paligemma-3b-mix-224) or a "
                    "save_pretrained directory with its processor")

    def __init__(self, model: str, **kwargs) -> None:
        super().__init__(model, **kwargs)
        config, net, processor = load_judge(model, self.pretrained, self.cache_dir)
        self.family = config.model_type
        self.model = net.eval().requires_grad_(False).to(self.device, self.dtype)
        self.processor = processor
        # Identical prompts never pad; left padding keeps the last position the next
        # token's should a processor pad anyway.
        processor.tokenizer.padding_side = "left"
        text = config.get_text_config()
        self._context = int(getattr(text, "max_position_embeddings", 0) or 0) or 1 << 30
        self._keep_one = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        h, w = judge_image_size(config.model_type, processor.image_processor)
        self.preprocessor = ImagePreprocessor(size=(h, w), mean=(0.0, 0.0, 0.0),
                                              std=(1.0, 1.0, 1.0), resize_mode="shortest")

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def image_size(self) -> tuple[int, int]:
        return self.preprocessor.size

    @property
    def context_length(self) -> int:
        return self._context

    def render(self, question: str) -> str:
        """The prompt text for one frame and ``question`` (image placeholder unexpanded)."""
        if self.family in PLAIN_PROMPT:
            return self.processor.image_token + question
        messages = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)

    def _answer_context(self, question: str) -> str:
        if self.family in PLAIN_PROMPT:
            return question + "\n"  # PaliGemma's processor ends the prompt with a newline
        return self.render(question)

    def prompt_tokens(self, question: str) -> int:
        frame = torch.zeros(1, *self.image_size, 3, dtype=torch.uint8)
        return int(self.inputs(frame, question)["input_ids"].shape[-1])

    def inputs(self, frames: torch.Tensor, question: str) -> dict[str, torch.Tensor]:
        """The processor's model inputs for ``question`` about each frame (the prompt
        rendered once for the batch), on the device, floats in the model's dtype."""
        prompt = self.render(question)
        images = [[frame] for frame in frames.cpu()]
        batch = self.processor(text=[prompt] * len(frames), images=images, return_tensors="pt",
                               padding=True, **IMAGE_KWARGS.get(self.family, {}))
        return {k: (v.to(self.device, self.dtype) if v.is_floating_point() else
                    v.to(self.device)) for k, v in batch.items() if k not in _DROP}

    def _next_token_logits(self, frames: torch.Tensor, question: str) -> torch.Tensor:
        extra = {"logits_to_keep": 1} if self._keep_one else {}
        return self.model(**self.inputs(frames, question), **extra).logits[:, -1]


def judge_image_size(family: str, images) -> tuple[int, int]:
    """The square side envs render at: the size the family's processor works at for one
    tile (Idefics3/SmolVLM), its fixed size (PaliGemma), or up to :data:`QWEN_MAX_SIDE`
    within the processor's pixel budget (Qwen-VL)."""
    size = images.size
    if family in ("idefics3", "smolvlm"):
        tile = dict(getattr(images, "max_image_size", None) or {}).get("longest_edge")
        side = min(x for x in (size.longest_edge, tile) if x)
        return int(side), int(side)
    if family.startswith("qwen"):
        factor = int(images.patch_size) * int(images.merge_size)
        budget = math.isqrt(int(size.longest_edge)) if size.longest_edge else QWEN_MAX_SIDE
        side = max(factor, min(QWEN_MAX_SIDE, budget) // factor * factor)
        return side, side
    return int(size.height), int(size.width)


def load_judge(ref: str, pretrained: bool, cache_dir: str | None):
    """(config, model, processor) of a local directory or a cached/reachable hub id;
    ``pretrained=False`` builds random weights from the config."""
    source = os.path.expanduser(ref) if is_local(ref) else ref
    available = is_local(ref) or _cached(ref, "config.json", cache_dir)
    online = not is_local(ref) and hub_reachable()
    if not (available or online):
        raise _unavailable(ref, cache_dir)
    with _quiet_hub(online):
        config = _config(source, cache_dir)
        if config.model_type not in FAMILIES:
            raise ModelUnavailableError(
                f"reward.model={ref!r} is a {config.model_type!r} model; backend 'hf_judge' "
                f"loads {' / '.join(FAMILIES)} models (image-text-to-text). Embedding models "
                "(CLIP, SigLIP) go with reward.backend=hf_clip or siglip.")
        model = _model(ref, source, config, pretrained, cache_dir, online)
        processor = _processor(ref, source, cache_dir)
    if config.model_type not in PLAIN_PROMPT and not getattr(processor, "chat_template", None):
        raise ModelUnavailableError(
            f"hf_judge: the processor of {ref!r} has no chat template, so the question cannot "
            "be put to the model the way it was trained. Save the processor with its "
            "chat_template (chat_template.jinja).")
    return config, model, processor


def _config(source: str, cache_dir: str | None):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, cache_dir=cache_dir, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise ModelUnavailableError(
            f"hf_judge: cannot read the model config of {source!r}: {err}") from None


def _model(ref: str, source: str, config, pretrained: bool, cache_dir: str | None,
           online: bool):
    from transformers import AutoModelForImageTextToText as Auto

    if not pretrained:
        return Auto.from_config(config, trust_remote_code=False)
    try:
        return Auto.from_pretrained(source, config=config, cache_dir=cache_dir,
                                    trust_remote_code=False)
    except OSError as err:  # weights missing from the cache / directory
        if not (online or is_local(ref)):
            raise _unavailable(ref, cache_dir) from None
        raise ModelUnavailableError(
            f"hf_judge: the weights of {source!r} could not be loaded: {err}") from None


def _processor(ref: str, source: str, cache_dir: str | None):
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(source, cache_dir=cache_dir,
                                             trust_remote_code=False)
    except (OSError, ValueError, ImportError, AttributeError) as err:
        raise ModelUnavailableError(
            f"hf_judge: the processor (tokenizer and image processor) of {ref!r} could not be "
            f"loaded ({err}). A judge needs its processor files next to the model.") from None


def _unavailable(ref: str, cache_dir: str | None) -> ModelUnavailableError:
    """The offline message every backend gives, but random weights are no way out here: a
    judge needs its processor (tokenizer, chat template), which cannot be made up."""
    message = str(unavailable(ref, HFJudgeBackend.name, cache_dir, _hint(ref)))
    return ModelUnavailableError(message.replace(
        "For a test run without weights, set reward.pretrained=false.",
        "A judge needs these files even with reward.pretrained=false (random weights): its "
        "processor (tokenizer, chat template) cannot be made up."))


def _hint(ref: str) -> str:
    return (f"hf download {ref} --cache-dir CACHE   (or: python -c \"import transformers as t; "
            f"t.AutoModelForImageTextToText.from_pretrained('{ref}'); "
            f"t.AutoProcessor.from_pretrained('{ref}')\")")
