"""TensorDict keys shared by envs, the reward side and the replay buffer.

One home for these strings, so the env factory does not import the reward adapter for a
name, and a renamed key cannot silently split the pipeline in two.
"""

from __future__ import annotations

OBSERVATION = "observation"
ACTION = "action"
PIXELS = "pixels"
#: The reward SAC learns from: the VLM reward once the reward transform has run.
REWARD = "reward"
#: The env's own reward, kept for evaluation and never learned from (unless the config
#: chooses the ground-truth backend).
GT_REWARD = "gt_reward"
#: The reward model's own reward, kept beside ``reward`` when a ``mix`` transform adds
#: state terms to it (``reward`` is then the mixed reward SAC learns from).
VLM_REWARD = "vlm_reward"
#: Per-step success flag of envs that define one (read from the Gymnasium info dict).
SUCCESS = "is_success"
DONE = "done"
TERMINATED = "terminated"
TRUNCATED = "truncated"
NEXT = "next"

#: What the replay buffer stores per transition: states, actions and (VLM) rewards only.
REPLAY_KEYS: tuple[str | tuple[str, str], ...] = (
    OBSERVATION, ACTION, (NEXT, OBSERVATION), (NEXT, REWARD), (NEXT, DONE), (NEXT, TERMINATED))
