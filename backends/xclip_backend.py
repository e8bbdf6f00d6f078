"""X-CLIP video reward backend (``transformers.XCLIPModel``).

Model names: a hub id such as ``microsoft/xclip-base-patch32`` (8 frames) or
``microsoft/xclip-base-patch16-16-frames``, or a local directory saved with
``save_pretrained`` (model, tokenizer and the XCLIPProcessor's image processor side by side).

A window of ``num_frames`` frames goes through the CLIP vision tower with cross-frame
attention, then the multi-frame integration transformer (MIT), whose mean is the video
embedding (``get_video_features``). Prompts are embedded by ``get_text_features``, CLIP's
text tower: X-CLIP's video-conditioned prompt generator, which shifts the text embedding
towards each video in ``XCLIPModel.forward``, is left out, so that a prompt has one
embedding and the goal-baseline formulas apply in one fixed space.
"""

from __future__ import annotations

import torch

from .base import VideoBackend
from .hf_clip_backend import HFCLIPBackend, clip_tokenizer
from .hf_common import HFFamily, pooled


class XCLIPBackend(VideoBackend, HFCLIPBackend):
    name = "xclip"
    model_naming = ("hub id ORG/NAME (e.g. microsoft/xclip-base-patch32) or a "
                    "save_pretrained directory")

    @property
    def num_frames(self) -> int:
        return int(self.model.config.vision_config.num_frames)

    def _encode_videos(self, pixels: torch.Tensor) -> torch.Tensor:
        return pooled(self.model.get_video_features(pixel_values=pixels))


def xclip_image_processor(config):
    """X-CLIP's image processor at the model's image size, for random-weight runs without a
    processor config: VideoMAE's (shortest side, centre crop, bilinear) with the ImageNet
    mean and std X-CLIP was trained with (VideoMAE's own default is 0.5)."""
    from transformers import VideoMAEImageProcessor
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    side = int(config.vision_config.image_size)
    return VideoMAEImageProcessor(size={"shortest_edge": side},
                                  crop_size={"height": side, "width": side},
                                  image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD)


def _default_config():
    from transformers import XCLIPConfig

    return XCLIPConfig()


XCLIP_FAMILY = HFFamily(
    backend="xclip",
    model_types=("xclip",),
    model_class="XCLIPModel",
    default_config=_default_config,
    default_tokenizer=clip_tokenizer,
    default_image_processor=xclip_image_processor,
    wrong_type_hint={"clip": "Use reward.backend=hf_clip for CLIP models.",
                     "siglip": "Use reward.backend=siglip for SigLIP models."},
)
XCLIPBackend.family = XCLIP_FAMILY
