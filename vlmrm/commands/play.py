"""``vlmrm play``: run a saved agent, write an annotated video and print its returns."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vlmrm.config import Config, load_config
from vlmrm.envs.factory import SeedPurpose, env_for, episode_cap
from vlmrm.errors import VLMRMError, one_paragraph
from vlmrm.media import VIDEO_WRITERS, write_video
from vlmrm.reward.model import input_size
from vlmrm.reward.seam import RewardModel
from vlmrm.run.build import make_mix, make_module, make_reward_model
from vlmrm.run.evaluate import episode_video, mean_summary, run_episode
from vlmrm.run.module import SACModule


def load_agent(checkpoint: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()
               ) -> tuple[Config, SACModule, RewardModel | None]:
    """The run's config (plus ``overrides``), its agent with the saved weights, and the
    reward model (None for ground-truth runs)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise VLMRMError(f"Checkpoint {str(path)!r} does not exist. Runs save theirs under "
                         "<run dir>/checkpoints/, e.g. runs/NAME/checkpoints/last.ckpt.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        saved, weights = ckpt["vlmrm"]["config"], ckpt["state_dict"]
    except Exception as err:  # not a torch file, truncated, or not a vlmrm checkpoint
        raise VLMRMError(f"{str(path)!r} is not a vlmrm checkpoint ({type(err).__name__}: "
                         f"{one_paragraph(str(err))}). Pass a .ckpt written by `vlmrm fit`."
                         ) from None
    cfg = load_config(None, overrides, base=saved)
    reward_model = make_reward_model(cfg)
    module = make_module(cfg)
    try:
        module.load_state_dict(weights)
    except (RuntimeError, ValueError) as err:  # shapes or names differ from the networks
        raise VLMRMError(f"The networks saved in {str(path)!r} do not fit the config "
                         f"({one_paragraph(str(err))[:300]}). Do not override agent.* or env.* "
                         "settings that change the networks' sizes.") from None
    if reward_model is not None:
        restore_formula(reward_model, ckpt["vlmrm"].get("reward_formula"), path)
    return cfg, module.eval(), reward_model


def restore_formula(reward_model: RewardModel, state: dict | None, path: Path) -> None:
    """The run's reward statistics (running_norm), so play scores as training last did."""
    if state is None:  # a checkpoint from before formulas had state
        return
    try:
        reward_model.load_state_dict(state)
    except RuntimeError as err:
        raise VLMRMError(
            f"The reward formula state saved in {str(path)!r} does not fit the reward.transform "
            f"now configured ({str(err).splitlines()[0]}). Play with the run's own "
            "reward.transform (drop the override that changes it).") from None


def check_video_path(out: str | os.PathLike) -> None:
    """Refuse a name whose extension no writer takes, before any episode runs."""
    path = Path(out)
    if path.suffix.lower() not in VIDEO_WRITERS:
        what = f"has the extension {path.suffix!r}" if path.suffix else "has no extension"
        base = path.name.split(".")[0] or "episode"
        mp4, gif = (str(path.with_name(base + ext)) for ext in VIDEO_WRITERS)
        raise VLMRMError(f"--out {str(out)!r} {what}; vlmrm play writes "
                         f"{' or '.join(VIDEO_WRITERS)} videos. Name the file e.g. {mp4} or "
                         f"{gif}.")


def play(checkpoint: str | os.PathLike, out: str | os.PathLike, episodes: int = 1,
         overrides: list[str] | tuple[str, ...] = ()) -> dict[str, float]:
    """Run ``episodes`` deterministic episodes, write them to ``out`` (.mp4 or .gif) and
    return the mean VLM return, GT return and (where the env reports it) success rate."""
    if episodes < 1:
        raise VLMRMError(f"--episodes {episodes} must be at least 1.")
    check_video_path(out)
    cfg, module, reward_model = load_agent(checkpoint, overrides)
    env = env_for(cfg, SeedPurpose.PLAY, render_size=input_size(reward_model))
    try:
        runs = [run_episode(env, module.actor, reward_model, max_steps=episode_cap(cfg.env),
                            keep_frames=True, mix=make_mix(cfg))
                for _ in range(episodes)]
    finally:
        env.close()
    write_video(out, episode_video(runs, has_vlm=reward_model is not None))
    return mean_summary(runs)
