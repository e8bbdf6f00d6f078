"""SigLIP reward backend (``transformers.SiglipModel``), SigLIP 2 fixed-resolution included.

Model names: a hub id such as ``google/siglip-so400m-patch14-384`` or
``google/siglip2-base-patch16-224`` (SigLIP 2 "FixRes" checkpoints are ``SiglipModel``s with a
Gemma tokenizer), or a local ``save_pretrained`` directory. SigLIP 2 NaFlex checkpoints
(``Siglip2Model``, variable resolution) are refused: they take patch sequences, not images.

Two SigLIP details matter for rewards:
- text is padded to the full ``max_position_embeddings`` tokens with no attention mask, as
  in training: the text tower pools the last position, so shorter padding changes embeddings;
- images are squashed to the square input size (no crop), per the processor config.
The model's ``logit_scale``/``logit_bias`` belong to its sigmoid loss; the reward works on
normalised embeddings and does not use them (a softmax-style reward may read them from
``backend.model``).
"""

from __future__ import annotations

import torch

from .hf_common import HFBackend, HFFamily, pooled


class SiglipBackend(HFBackend):
    name = "siglip"
    model_naming = ("hub id ORG/NAME (e.g. google/siglip-so400m-patch14-384, "
                    "google/siglip2-base-patch16-224) or a save_pretrained directory")

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.vision_config.hidden_size)

    def _encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", truncation=True,
                             max_length=self.max_length, return_tensors="pt")["input_ids"]
        # No attention mask: SigLIP was trained attending to its padding.
        return pooled(self.model.get_text_features(input_ids=ids.to(self.device)))


def byte_tokenizer(config=None):
    """A stand-in byte-level tokenizer with SigLIP's special ids (pad = eos = 1).

    Only for random-weight runs of models whose tokenizer files are not at hand (SigLIP's
    own SentencePiece vocabulary cannot be built offline); ids stay below 260.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                       special_tokens=[("</s>", 1)])
    max_len = 64 if config is None else config.text_config.max_position_embeddings
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="</s>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=max_len)


def siglip_image_processor(config):
    """The default SigLIP image processor (squash, mean = std = 0.5) at the model's size."""
    from transformers import SiglipImageProcessor

    side = int(config.vision_config.image_size)
    return SiglipImageProcessor(size={"height": side, "width": side})


def _default_config():
    from transformers import SiglipConfig

    # SiglipTextConfig's default bos/eos ids are CLIP's and fall outside its vocabulary.
    return SiglipConfig(text_config={"pad_token_id": 1, "eos_token_id": 1, "bos_token_id": None})


SIGLIP_FAMILY = HFFamily(
    backend="siglip",
    model_types=("siglip",),
    model_class="SiglipModel",
    default_config=_default_config,
    default_tokenizer=byte_tokenizer,
    default_image_processor=siglip_image_processor,
    wrong_type_hint={
        "clip": "Use reward.backend=hf_clip for CLIP models.",
        "siglip2": "This is a SigLIP 2 NaFlex checkpoint (variable resolution); use a "
                   "fixed-resolution one such as google/siglip2-base-patch16-224.",
    },
)
SiglipBackend.family = SIGLIP_FAMILY
