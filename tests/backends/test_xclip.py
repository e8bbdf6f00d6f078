"""The X-CLIP video backend: its embeddings equal XCLIPModel's own on XCLIPProcessor's
inputs, and a reward window is the model's frame count."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tests.backends.fixtures import (
    PROMPTS,
    XCLIP_FRAMES,
    build_xclip,
    make_frames,
    pixel_levels,
    to_pil,
)
from vlmrm.errors import ConfigError
from vlmrm.reward.model import VLMRewardModel
from vlmrm.reward.seam import Scorer
from vlmrm.run.build import make_backend

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("xclip")
    with torch.no_grad():
        return build_xclip(root), root


@pytest.fixture(scope="module")
def backend(case):
    return make_backend(case[0].cfg, "cpu")


@pytest.fixture(scope="module")
def library(case):
    """The library's own path: XCLIPProcessor and XCLIPModel loaded from the saved directory."""
    from transformers import XCLIPModel, XCLIPProcessor

    root = case[1]
    return XCLIPProcessor.from_pretrained(root), XCLIPModel.from_pretrained(root).eval()


@pytest.fixture(scope="module")
def clips():
    """uint8 [3, T, H, W, 3]: three clips of rendered-looking frames, one ending in noise."""
    return make_frames(3 * XCLIP_FRAMES, seed=1).reshape(3, XCLIP_FRAMES, 60, 90, 3)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.detach().float(), dim=-1)


def test_preprocessing_matches_the_xclip_processor(backend, library, clips):
    processor, _ = library
    reference = processor(videos=[to_pil(c) for c in clips], return_tensors="pt")["pixel_values"]
    ours = backend.preprocessor(clips.flatten(0, 1)).unflatten(0, clips.shape[:2])
    assert ours.shape == reference.shape == (3, XCLIP_FRAMES, 3, 32, 32)
    levels = pixel_levels((ours - reference).abs().flatten(0, 1), backend.preprocessor.std)
    # The contract's bounds: the same uint8 resize and crop, at most one level of rounding.
    assert levels.max() <= 1.0 + 1e-3 and levels.mean() <= 0.05


def test_video_embeddings_equal_get_video_features(backend, library, clips):
    processor, model = library
    pixels = processor(videos=[to_pil(c) for c in clips], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        reference = _unit(model.get_video_features(pixel_values=pixels).pooler_output)
    with torch.inference_mode():
        torch.testing.assert_close(_unit(backend._encode_videos(pixels)), reference,
                                   atol=1e-5, rtol=1e-4)
    ours = backend.encode_videos(clips)
    assert ours.shape == (3, backend.embed_dim) and ours.dtype == torch.float32
    assert (ours * reference).sum(-1).min() > 0.999  # the contract's end-to-end bound
    before = backend.batch_size
    try:
        backend.batch_size = 2  # chunks of 2 + 1 windows
        torch.testing.assert_close(backend.encode_videos(clips), ours, atol=1e-5, rtol=1e-4)
    finally:
        backend.batch_size = before


def test_frame_order_matters(backend, clips):
    forward, backward = backend.encode_videos(clips), backend.encode_videos(clips.flip(1))
    # Random weights give the MIT's position embeddings a small effect (~1e-3), still far
    # above the ~1e-6 an order-free pooling of the frames would leave.
    assert (forward - backward).abs().max() > 1e-4


def test_text_embeddings_equal_get_text_features(backend, library):
    processor, model = library
    tokens = processor(text=PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = _unit(model.get_text_features(input_ids=tokens["input_ids"],
                                                  attention_mask=tokens["attention_mask"])
                          .pooler_output)
    torch.testing.assert_close(backend.encode_text(PROMPTS), reference, atol=1e-5, rtol=1e-4)


def test_windows_must_hold_the_models_frame_count(backend):
    assert backend.kind == "video" and backend.num_frames == XCLIP_FRAMES
    with pytest.raises(ValueError, match=rf"\[B, {XCLIP_FRAMES}, H, W, 3\]"):
        backend.encode_videos(make_frames(XCLIP_FRAMES - 1)[None])
    empty = torch.zeros(0, XCLIP_FRAMES, 20, 30, 3, dtype=torch.uint8)
    assert backend.encode_videos(empty).shape == (0, backend.embed_dim)


@pytest.mark.parametrize("window", [None, XCLIP_FRAMES])
def test_the_reward_window_defaults_to_the_models_frames(backend, clips, window):
    model = VLMRewardModel(backend, PROMPTS[:1], PROMPTS[1:2], window=window)
    assert model.frames_needed == XCLIP_FRAMES
    assert Scorer(model).encoder is None  # windows are scored once the batch is complete
    torch.testing.assert_close(model.encode_windows(clips), backend.encode_videos(clips))
    rewards = model.score(clips.unsqueeze(0))
    assert rewards.shape == (1, 3) and rewards.std() > 0
    with pytest.raises(ValueError, match=f"needs {XCLIP_FRAMES} frames"):
        model(clips[:, 0])


@pytest.mark.parametrize("window", [1, XCLIP_FRAMES - 1, XCLIP_FRAMES + 4])
def test_another_window_is_refused_naming_both_counts(backend, window):
    with pytest.raises(ConfigError, match=rf"reward\.window={window}: .* reads exactly "
                                          rf"{XCLIP_FRAMES} frames.*reward\.window=null"):
        VLMRewardModel(backend, PROMPTS[:1], PROMPTS[1:2], window=window)


def test_random_weights_keep_the_saved_architecture(case):
    with pytest.warns(UserWarning, match="RANDOM weights"):
        be = make_backend(dataclasses.replace(case[0].cfg, pretrained=False), "cpu")
    assert (be.num_frames, be.embed_dim, be.image_size) == (XCLIP_FRAMES, 16, (32, 32))


def test_a_legacy_feature_extractor_config_loads(case, tmp_path):
    """Older X-CLIP repos keep a ``preprocessor_config.json`` in the feature-extractor form
    (integer ``size`` and ``crop_size``, ``VideoMAEFeatureExtractor``); it means resize the
    shortest side, then centre-crop, bilinear."""
    import shutil

    root = tmp_path / "legacy"
    shutil.copytree(case[1], root)
    (root / "processor_config.json").unlink()
    (root / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": 32, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "VideoMAEFeatureExtractor", "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225], "processor_class": "XCLIPProcessor", "resample": 2,
        "size": 32}))
    p = make_backend(dataclasses.replace(case[0].cfg, model=str(root)), "cpu").preprocessor
    assert (p.size, p.resize_mode, p.interpolation) == ((32, 32), "shortest", "bilinear")
    assert p.mean == (0.485, 0.456, 0.406) and p.std == (0.229, 0.224, 0.225)


def test_the_stand_in_processor_uses_xclips_imagenet_mean_and_std():
    from transformers import XCLIPConfig

    from vlmrm.backends.hf_common import preprocessor_from_hf
    from vlmrm.backends.xclip_backend import xclip_image_processor

    p = preprocessor_from_hf(xclip_image_processor(XCLIPConfig()))
    assert (p.size, p.resize_mode, p.interpolation) == ((224, 224), "shortest", "bilinear")
    assert p.mean == (0.485, 0.456, 0.406) and p.std == (0.229, 0.224, 0.225)
