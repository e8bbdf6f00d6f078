"""Hugging Face CLIP reward backend (``transformers.CLIPModel``).

Model names: a hub id such as ``openai/clip-vit-large-patch14`` or
``laion/CLIP-ViT-bigG-14-laion2B-39B-b160k``, or a local directory saved with
``save_pretrained`` (model, tokenizer and ``preprocessor_config.json`` side by side).
Resize, crop, mean and std come from that image processor config.
"""

from __future__ import annotations

import torch

from .hf_common import HFBackend, HFFamily, pooled


class HFCLIPBackend(HFBackend):
    name = "hf_clip"
    model_naming = ("hub id ORG/NAME (e.g. openai/clip-vit-base-patch32, "
                    "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k) or a save_pretrained directory")

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def _encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        # CLIP pools at the end-of-text token under a causal mask, so padding to the longest
        # prompt gives the same embedding as padding to the full context.
        tokens = self.tokenizer(prompts, padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt").to(self.device)
        return pooled(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                   attention_mask=tokens["attention_mask"]))


def clip_tokenizer(config=None):
    """The CLIP BPE tokenizer built from the vocabulary open_clip ships (no download).

    It is the tokenizer of OpenAI's and LAION's CLIP models (same ids); used when a model
    comes without tokenizer files, i.e. for random-weight runs.
    """
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    bpe = SimpleTokenizer()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(k, k): v for k, v in bpe.encoder.items()}
    merges = [pair for pair, _ in sorted(bpe.bpe_ranks.items(), key=lambda kv: kv[1])]
    tok = CLIPTokenizer(vocab=vocab, merges=merges)
    tok.model_max_length = 77 if config is None else config.text_config.max_position_embeddings
    return tok


def clip_image_processor(config):
    """The default CLIP image processor at the model's image size."""
    from transformers import CLIPImageProcessor

    side = int(config.vision_config.image_size)
    return CLIPImageProcessor(size={"shortest_edge": side},
                              crop_size={"height": side, "width": side})


def _default_config():
    from transformers import CLIPConfig

    return CLIPConfig()


CLIP_FAMILY = HFFamily(
    backend="hf_clip",
    model_types=("clip",),
    model_class="CLIPModel",
    default_config=_default_config,
    default_tokenizer=clip_tokenizer,
    default_image_processor=clip_image_processor,
    wrong_type_hint={"siglip": "Use reward.backend=siglip for SigLIP models.",
                     "siglip2": "Use reward.backend=siglip for SigLIP models.",
                     "xclip": "Use reward.backend=xclip for X-CLIP video models."},
)
HFCLIPBackend.family = CLIP_FAMILY
