"""Settings of ``vlmrm train-demo-model`` (torch-free, so the CLI can show the defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainSettings:
    """How the bundled demo reward model is trained (see its model card, docs/model-card.md)."""

    seed: int = 0
    samples: int = 16_000
    steps: int = 2_500
    batch_size: int = 128
    learning_rate: float = 1e-3
