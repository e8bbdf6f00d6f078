"""Tiny models of every backend family, built locally and saved the way users save them.

Each ``build_*`` function writes a model to a directory/checkpoint, and returns a
:class:`Case`: the reward config that loads it back through the real loading path, plus
the in-memory original and the library's own reference processor, tokenizer and encoders.
Models are tiny (hidden 32, 2 layers, 32-48 px) so the contract tests take seconds.
Preprocessing settings are deliberately non-default (mean/std, size), so a backend that
hard-coded them would fail the reference comparison.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from vlmrm.config import RewardConfig

TINY_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2}
ODD_MEAN, ODD_STD = (0.40, 0.45, 0.55), (0.20, 0.25, 0.30)
PROMPTS = ["pole vertically upright on top of the cart", "pole and cart", "a humanoid robot"]


@dataclass
class Case:
    """A saved tiny model and the library's own way of using it."""

    cfg: RewardConfig
    # PIL images -> [B, 3, h, w] float pixels, exactly as the library's own processor does it.
    reference_preprocess: Callable[[list[Image.Image]], torch.Tensor]
    # Pixels -> unnormalised image embeddings, from the original in-memory model.
    reference_image: Callable[[torch.Tensor], torch.Tensor]
    # Prompts -> unnormalised text embeddings, via the library's own tokenizer.
    reference_text: Callable[[list[str]], torch.Tensor]
    # Optional second reference processor (name -> fn), e.g. transformers' torchvision one.
    other_preprocess: dict[str, Callable[[list[Image.Image]], torch.Tensor]] | None = None


def make_frames(n: int = 5, h: int = 60, w: int = 90, seed: int = 0) -> torch.Tensor:
    """uint8 [n, h, w, 3]: rendered-looking frames (flat colours, edges, gradients) + noise."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    out = torch.empty(n, h, w, 3, dtype=torch.uint8)
    for i in range(n - 1):
        base = torch.stack([xs * 255 // w, ys * 255 // h, torch.full_like(xs, 40 * i)], -1)
        x0, y0 = torch.randint(0, w // 2, (1,), generator=g), torch.randint(0, h // 2, (1,), generator=g)
        box = (xs >= x0) & (xs < x0 + w // 3) & (ys >= y0) & (ys < y0 + h // 3)
        base[box] = torch.tensor([230, 30, 30])
        out[i] = base.to(torch.uint8)
    out[n - 1] = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g)  # worst case
    return out


def to_pil(frames: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(f.numpy()) for f in frames]


# -- open_clip -----------------------------------------------------------------------------
OPENCLIP_ARCH = "vlmrm-contract-tiny"


def build_open_clip(root: Path) -> Case:
    import open_clip
    from safetensors.torch import save_file

    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 48, "layers": 2, "width": 32, "patch_size": 16,
                             "head_width": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                           "layers": 2}}
    config_path = root / f"{OPENCLIP_ARCH}.json"
    config_path.write_text(json.dumps(config))
    open_clip.add_model_config(config_path)
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(OPENCLIP_ARCH, pretrained=None)
    model.eval()
    ckpt = root / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    tokenizer = open_clip.get_tokenizer(OPENCLIP_ARCH)
    return Case(
        cfg=RewardConfig(backend="open_clip", model=f"{OPENCLIP_ARCH}/{ckpt}",
                         model_config=str(config_path)),
        reference_preprocess=lambda imgs: torch.stack([preprocess(i) for i in imgs]),
        reference_image=model.encode_image,
        reference_text=lambda prompts: model.encode_text(tokenizer(prompts)),
    )


# -- transformers CLIP ---------------------------------------------------------------------
def build_hf_clip(root: Path) -> Case:
    from transformers import AutoImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel

    from vlmrm.backends.hf_clip_backend import clip_tokenizer

    config = CLIPConfig(text_config={**TINY_TOWER, "max_position_embeddings": 77},
                        vision_config={**TINY_TOWER, "image_size": 48, "patch_size": 16},
                        projection_dim=16)
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    tokenizer = clip_tokenizer(config)
    processor = CLIPImageProcessor(size={"shortest_edge": 48},
                                   crop_size={"height": 48, "width": 48},
                                   image_mean=list(ODD_MEAN), image_std=list(ODD_STD))
    _save(root, model, tokenizer, processor)

    def text(prompts: list[str]) -> torch.Tensor:
        tok = tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt")
        return model.get_text_features(**tok).pooler_output

    return Case(
        cfg=RewardConfig(backend="hf_clip", model=str(root)),
        reference_preprocess=_hf_processor(AutoImageProcessor.from_pretrained(root, backend="pil")),
        reference_image=lambda px: model.get_image_features(pixel_values=px).pooler_output,
        reference_text=text,
        other_preprocess={"torchvision": _hf_processor(AutoImageProcessor.from_pretrained(root))},
    )


# -- SigLIP --------------------------------------------------------------------------------
def build_siglip(root: Path) -> Case:
    from transformers import AutoImageProcessor, SiglipConfig, SiglipImageProcessor, SiglipModel

    from vlmrm.backends.siglip_backend import byte_tokenizer

    # 64 positions, as real SigLIP: the byte tokenizer spends one token per character, and
    # the contract's prompts must fit (longer ones are refused, not truncated).
    text_cfg = {**TINY_TOWER, "vocab_size": 300, "max_position_embeddings": 64,
                "projection_size": 32, "pad_token_id": 1, "eos_token_id": 1, "bos_token_id": None}
    config = SiglipConfig(text_config=text_cfg,
                          vision_config={**TINY_TOWER, "image_size": 32, "patch_size": 8})
    torch.manual_seed(0)
    model = SiglipModel(config).eval()
    tokenizer = byte_tokenizer(config)
    processor = SiglipImageProcessor(size={"height": 32, "width": 32},
                                     image_mean=list(ODD_MEAN), image_std=list(ODD_STD))
    _save(root, model, tokenizer, processor)

    def text(prompts: list[str]) -> torch.Tensor:
        # As the SigLIP model card says: padding="max_length", the way it was trained.
        ids = tokenizer(prompts, padding="max_length", max_length=64, truncation=True,
                        return_tensors="pt")
        return model.get_text_features(input_ids=ids["input_ids"]).pooler_output

    return Case(
        cfg=RewardConfig(backend="siglip", model=str(root)),
        reference_preprocess=_hf_processor(AutoImageProcessor.from_pretrained(root, backend="pil")),
        reference_image=lambda px: model.get_image_features(pixel_values=px).pooler_output,
        reference_text=text,
        other_preprocess={"torchvision": _hf_processor(AutoImageProcessor.from_pretrained(root))},
    )


# -- X-CLIP (video) --------------------------------------------------------------------------
#: Frames per video of the tiny X-CLIP: its cross-frame attention and MIT read exactly this many.
XCLIP_FRAMES = 4


def build_xclip(root: Path) -> Case:
    """A tiny X-CLIP saved with its XCLIPProcessor (VideoMAE image processor + CLIP tokenizer).

    The image references treat a frame as a still video (the frame repeated for every one of
    the model's frames), as the backend does; tests/backends/test_xclip.py compares real
    clips with XCLIPProcessor and XCLIPModel loaded from ``root``.
    """
    from transformers import (
        AutoImageProcessor,
        VideoMAEImageProcessor,
        XCLIPConfig,
        XCLIPModel,
        XCLIPProcessor,
    )

    from vlmrm.backends.hf_clip_backend import clip_tokenizer

    # The MIT runs on projected frame features: its width is projection_dim.
    vision = {**TINY_TOWER, "image_size": 32, "patch_size": 16, "num_frames": XCLIP_FRAMES,
              "mit_hidden_size": 16, "mit_intermediate_size": 32, "mit_num_hidden_layers": 1,
              "mit_num_attention_heads": 2}
    config = XCLIPConfig(text_config={**TINY_TOWER, "max_position_embeddings": 77},
                         vision_config=vision, projection_dim=16, prompt_layers=1,
                         prompt_attention_heads=2, prompt_num_attention_heads=2)
    torch.manual_seed(0)
    model = XCLIPModel(config).eval()
    tokenizer = clip_tokenizer(config)
    image_processor = VideoMAEImageProcessor(size={"shortest_edge": 32},
                                             crop_size={"height": 32, "width": 32},
                                             image_mean=list(ODD_MEAN), image_std=list(ODD_STD))
    model.save_pretrained(root)
    XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(root)

    def text(prompts: list[str]) -> torch.Tensor:
        tok = tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt")
        return model.get_text_features(**tok).pooler_output

    def still(pixels: torch.Tensor) -> torch.Tensor:  # [B, 3, h, w] -> [B, D]
        video = pixels.unsqueeze(1).expand(-1, XCLIP_FRAMES, *pixels.shape[1:])
        return model.get_video_features(pixel_values=video).pooler_output

    return Case(
        cfg=RewardConfig(backend="xclip", model=str(root)),
        reference_preprocess=_video_frames(AutoImageProcessor.from_pretrained(root, backend="pil")),
        reference_image=still,
        reference_text=text,
        other_preprocess={"torchvision": _video_frames(AutoImageProcessor.from_pretrained(root))},
    )


def _video_frames(processor) -> Callable[[list[Image.Image]], torch.Tensor]:
    # A video processor returns [videos, T, 3, h, w]; each frame is processed on its own.
    return lambda imgs: processor(imgs, return_tensors="pt")["pixel_values"][0]


def _save(root: Path, model, tokenizer, processor) -> None:
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    processor.save_pretrained(root)


def _hf_processor(processor) -> Callable[[list[Image.Image]], torch.Tensor]:
    return lambda imgs: processor(images=imgs, return_tensors="pt")["pixel_values"]


# -- the test-only plugin ------------------------------------------------------------------
def build_toy(root: Path) -> Case:
    import vlmrm_toy_backend as toy

    torch.manual_seed(0)
    net = toy.ToyNet(toy.ToyConfig(image_size=40, mean=ODD_MEAN, std=ODD_STD)).eval()
    toy.save_toy(net, root)
    return Case(
        cfg=RewardConfig(backend="toy", model=str(root)),
        reference_preprocess=lambda imgs: toy.reference_preprocess(imgs, net.cfg),
        reference_image=net.image,
        reference_text=lambda prompts: net.encode_text(prompts, torch.device("cpu")),
    )


def pixel_levels(diff: torch.Tensor, std: tuple[float, ...]) -> torch.Tensor:
    """A difference of normalised pixels ``[B, 3, h, w]`` in 0-255 pixel levels."""
    return diff * torch.tensor(std, dtype=diff.dtype)[:, None, None] * 255.0




# -- generative judges (hf_judge) ------------------------------------------------------------
#: The tiny judges' vocabulary: the answer words, the digits and the default questions'
#: words (anything else becomes <unk>, which still runs).
JUDGE_WORDS = ["Yes", "No", *"0123456789", "Does", "this", "image", "show", "?", "Answer", "yes",
               "or", "no", ".", "How", "far", "along", "is", "from", "to", "with", "one",
               "digit", ",", "pole", "vertically", "upright", "on", "top", "the", "cart", "and",
               "of", "a", "humanoid", "robot", "User", "Assistant", ":", "user", "assistant"]
TINY_LM = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 256}
#: SmolVLM's chat template, shortened (no system turn, no image splitting).
SMOL_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
#: Qwen-VL's chat template, shortened (no system turn, no videos).
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
JUDGE_FAMILIES = ("idefics3", "qwen2_5_vl", "qwen3_vl", "paligemma")


@dataclass
class JudgeCase:
    """A saved tiny judge: the config that loads it, the in-memory original, and its
    processor loaded back from the directory (the library's own reference path)."""

    cfg: RewardConfig
    model: torch.nn.Module
    processor: object
    family: str


def word_tokenizer(special: list[str]):
    """A word-level tokenizer (whole words, punctuation apart) holding :data:`JUDGE_WORDS`
    and ``special`` as special tokens, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for word in ["<unk>", "<pad>", "<s>", "</s>", *special, *JUDGE_WORDS]:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>",
                                   additional_special_tokens=special)


def build_judge(root: Path, family: str = "idefics3") -> JudgeCase:
    """A tiny random judge of ``family`` (one of :data:`JUDGE_FAMILIES`) saved in ``root``
    with its tokenizer and processor; loads back with ``AutoModelForImageTextToText``."""
    from transformers import AutoProcessor

    torch.manual_seed(0)
    model, processor = _JUDGE_BUILDERS[family]()
    model.eval()
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return JudgeCase(RewardConfig(backend="hf_judge", model=str(root)), model,
                     AutoProcessor.from_pretrained(root), family)


def _idefics3():
    import transformers as T

    tok = word_tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>",
                          "<global-img>", "<|im_start|>"])
    config = T.Idefics3Config(
        vision_config={**TINY_TOWER, "num_hidden_layers": 1, "image_size": 32, "patch_size": 8},
        text_config={"model_type": "llama", "vocab_size": len(tok), **TINY_LM},
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2)
    images = T.Idefics3ImageProcessor(size={"longest_edge": 32},
                                      max_image_size={"longest_edge": 32},
                                      do_image_splitting=False, image_mean=list(ODD_MEAN),
                                      image_std=list(ODD_STD))
    # (32 / 8)^2 patches, pixel-shuffled by scale_factor 2: 4 image tokens.
    processor = T.Idefics3Processor(images, tok, image_seq_len=4, chat_template=SMOL_TEMPLATE)
    return T.Idefics3ForConditionalGeneration(config), processor


def _qwen_parts():
    import transformers as T

    tok = word_tokenizer(["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                          "<|image_pad|>", "<|video_pad|>"])
    ids = {key: tok.convert_tokens_to_ids(token) for key, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    patches = {"patch_size": 8, "merge_size": 2, "temporal_patch_size": 2}
    # At most 48 x 48 pixels: up to 9 merged image tokens per frame.
    images = T.Qwen2VLImageProcessor(**patches, min_pixels=16 * 16, max_pixels=48 * 48,
                                     image_mean=list(ODD_MEAN), image_std=list(ODD_STD))
    vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
              "out_hidden_size": 32, "patch_size": 8, "spatial_merge_size": 2,
              "temporal_patch_size": 2}
    return tok, ids, patches, images, vision


def _qwen2_5_vl():
    import transformers as T

    tok, ids, patches, images, vision = _qwen_parts()
    config = T.Qwen2_5_VLConfig(
        vision_config={**vision, "window_size": 16, "fullatt_block_indexes": [0]},
        text_config={"vocab_size": len(tok), **TINY_LM, "bos_token_id": None,
                     "eos_token_id": None,  # Qwen's defaults are not in this vocabulary
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 2, 4]}}, **ids)
    processor = T.Qwen2_5_VLProcessor(image_processor=images, tokenizer=tok,
                                      video_processor=T.Qwen2VLVideoProcessor(**patches),
                                      chat_template=QWEN_TEMPLATE)
    return T.Qwen2_5_VLForConditionalGeneration(config), processor


def _qwen3_vl():
    import transformers as T

    tok, ids, patches, images, vision = _qwen_parts()
    config = T.Qwen3VLConfig(
        vision_config={**vision, "num_position_embeddings": 16, "deepstack_visual_indexes": [0]},
        text_config={"vocab_size": len(tok), "head_dim": 16, **TINY_LM,
                     "rope_scaling": {"rope_type": "default", "mrope_section": [2, 2, 4],
                                      "mrope_interleaved": True}}, **ids)
    processor = T.Qwen3VLProcessor(image_processor=images, tokenizer=tok,
                                   video_processor=T.Qwen3VLVideoProcessor(**patches),
                                   chat_template=QWEN_TEMPLATE)
    return T.Qwen3VLForConditionalGeneration(config), processor


def _paligemma():
    import transformers as T

    tok = word_tokenizer(["<image>"])
    config = T.PaliGemmaConfig(
        vision_config={"model_type": "siglip_vision_model", **TINY_TOWER,
                       "num_hidden_layers": 1, "image_size": 32, "patch_size": 8,
                       "projection_dim": 32},
        text_config={"model_type": "gemma", "vocab_size": len(tok), "head_dim": 16, **TINY_LM},
        image_token_id=tok.convert_tokens_to_ids("<image>"), projection_dim=32, hidden_size=32)
    config.text_config.pad_token_id = tok.pad_token_id
    images = T.SiglipImageProcessor(size={"height": 32, "width": 32},
                                    image_mean=list(ODD_MEAN), image_std=list(ODD_STD))
    images.image_seq_length = 16  # (32 / 8)^2 patches, one token each
    # No chat template: PaliGemma's prompt is "<image>..." + question (the plain format).
    return (T.PaliGemmaForConditionalGeneration(config),
            T.PaliGemmaProcessor(image_processor=images, tokenizer=tok))


_JUDGE_BUILDERS = {"idefics3": _idefics3, "qwen2_5_vl": _qwen2_5_vl, "qwen3_vl": _qwen3_vl,
                   "paligemma": _paligemma}
