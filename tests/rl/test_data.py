"""The per-rank data pipeline: episode tracking across batches, scoring, replay contents."""

import torch
from tensordict import TensorDict

from vlmrm.collect.pipeline import EpisodeTracker
from vlmrm.keys import GT_REWARD


def test_episode_tracker_sums_returns_across_batch_boundaries():
    tracker = EpisodeTracker(num_envs=2)

    def batch(rewards, gts, dones):
        t = len(rewards[0])
        nxt = TensorDict({"reward": torch.tensor(rewards).reshape(2, t, 1),
                          GT_REWARD: torch.tensor(gts).reshape(2, t, 1),
                          "done": torch.tensor(dones).reshape(2, t, 1)}, [2, t])
        return TensorDict({"next": nxt}, [2, t])

    first = tracker.update(batch([[1.0, 2.0], [0.5, 0.5]], [[1.0, 1.0], [1.0, 1.0]],
                                 [[False, False], [False, True]]))
    assert first["vlm_return"] == [1.0] and first["gt_return"] == [2.0]
    second = tracker.update(batch([[3.0, 4.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]],
                                  [[True, False], [False, False]]))
    assert second["vlm_return"] == [6.0] and second["gt_return"] == [3.0]
    assert second["length"] == [3.0] and second["success_rate"] == []
