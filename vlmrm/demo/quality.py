"""Held-out reward quality of a reward model on the bundled scenes (the model card's numbers)."""

from __future__ import annotations

from vlmrm.demo import captions, scenes_data
from vlmrm.reward.metrics import spearman
from vlmrm.reward.model import VLMRewardModel


def held_out_metrics(backend) -> dict[str, float]:
    """Spearman of the paper-prompt reward (alpha 0) with -|pole angle| and car position."""
    renderer = scenes_data.SceneRenderer(backend.preprocessor)
    try:
        frames, angles = scenes_data.angle_sweep(renderer)
        cart = VLMRewardModel(backend, [captions.CARTPOLE_GOAL], [captions.CARTPOLE_BASELINE], 0.0)
        cart_rho = spearman(cart(frames), -angles.abs())
        frames, positions = scenes_data.position_sweep(renderer)
        car = VLMRewardModel(backend, [captions.MOUNTAINCAR_GOAL],
                             [captions.MOUNTAINCAR_BASELINE], 0.0)
        car_rho = spearman(car(frames), positions)
    finally:
        renderer.close()
    return {"cartpole_angle_spearman": round(cart_rho, 4),
            "mountaincar_position_spearman": round(car_rho, 4)}
