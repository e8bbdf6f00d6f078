"""The reward model: prompts embedded once, frames scored in batches by the formula."""

import pytest
import torch

from tests.backends.fixtures import make_frames
from vlmrm.backends.openclip_backend import OpenCLIPBackend
from vlmrm.errors import ConfigError
from vlmrm.reward.goal_baseline import goal_baseline_reward
from vlmrm.reward.model import VLMRewardModel, input_size


def mean_of_unit_rows(e: torch.Tensor) -> torch.Tensor:
    """The paper's prompt-set embedding: the mean of the L2-normalised prompt embeddings."""
    return (e / e.norm(dim=-1, keepdim=True)).mean(dim=0)


def test_reward_model_scores_in_batches_and_caches_prompts(tiny_openclip):
    backend = OpenCLIPBackend(tiny_openclip.reference, batch_size=4)
    model = VLMRewardModel(backend, ["pole upright", "pole vertical"], ["pole and cart"], 0.5)
    x = make_frames(10, 120, 180, seed=1)
    rewards = model(x.reshape(2, 5, *x.shape[1:]))
    assert rewards.shape == (2, 5)
    g = mean_of_unit_rows(backend.encode_text(["pole upright", "pole vertical"]))
    b = mean_of_unit_rows(backend.encode_text(["pole and cart"]))
    assert backend.text_cache_hits == 3  # the three prompts above were embedded only once
    expected = goal_baseline_reward(backend.encode_images(x), g, b, 0.5)
    torch.testing.assert_close(rewards.reshape(-1), expected)


def test_model_view_is_the_resized_picture_and_input_size_follows_the_model(tiny_openclip):
    model = VLMRewardModel(OpenCLIPBackend(tiny_openclip.reference), ["a"], ["b"], 0.0)
    view = model.model_view(make_frames(3, 120, 180))
    assert view.dtype == torch.uint8 and view.shape == (3, 64, 64, 3)
    assert input_size(model) == (64, 64) and input_size(None) is None


def test_an_image_model_embeds_one_frame_windows_and_refuses_longer_ones(tiny_openclip):
    model = VLMRewardModel(OpenCLIPBackend(tiny_openclip.reference), ["a"], ["b"], 0.0)
    x = make_frames(3, 60, 90)
    assert model.frames_needed == 1
    assert torch.equal(model.encode_windows(x.unsqueeze(1)), model.encode_images(x))
    with pytest.raises(ValueError, match="one frame per window"):
        model.encode_windows(torch.stack([x, x], dim=1))
    with pytest.raises(ConfigError, match="reward.window=2: .* scores one frame"):
        VLMRewardModel(model.backend, ["a"], ["b"], 0.0, window=2)
