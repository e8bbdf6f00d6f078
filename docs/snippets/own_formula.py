"""A reward formula of your own: one register_formula call, and reward.transform takes it.

Run the vlmrm command line with it registered, e.g.:
    python docs/snippets/own_formula.py fit --help
    python docs/snippets/own_formula.py evaluate-reward --config configs/quickstart.yaml \
        --out eval/ 'reward.transform=[{name: goal_cosine, scale: 2}]'
(tests/reward/test_formula_registry.py runs both.)
"""

import math
import sys

import torch

from vlmrm.cli import main
from vlmrm.reward.formulas import PromptEmbeddings
from vlmrm.reward.spec import EMBEDDING, Param, register_formula


class GoalCosine(torch.nn.Module):
    """``scale`` times the cosine of each frame with the goal prompts' mean direction."""

    def __init__(self, prompts: PromptEmbeddings, scale: float) -> None:
        super().__init__()
        goal = prompts.goal.mean(dim=0)
        # Not persistent: the config rebuilds the prompts; checkpoints keep only learned state.
        self.register_buffer("goal", goal / goal.norm(), persistent=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings ``[B, D]`` -> rewards ``[B]``."""
        return self.scale * (x.to(self.goal.dtype) @ self.goal)


# Name, kind, one help line, the module, and each parameter's default and rule: the config
# checks, `fit --help`, the reward model and evaluate-reward all read this one entry.
register_formula(
    "goal_cosine", EMBEDDING, "scale x cosine with the goal prompts' mean direction",
    GoalCosine, {"scale": Param(1.0, "a finite number > 0",
                                lambda v: math.isfinite(v) and v > 0)})

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
