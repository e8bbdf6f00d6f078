"""Reward side: the formula registry and torch-free ``reward.transform`` checks
(:mod:`~vlmrm.reward.spec`), the formulas' modules (:mod:`~vlmrm.reward.formulas`),
embedding-space reward math (:mod:`~vlmrm.reward.goal_baseline`), the reward
model that scores frames (:mod:`~vlmrm.reward.model`) and its TorchRL adapter
(:mod:`~vlmrm.reward.transform`). Import from the submodules; this package imports nothing,
so light modules (e.g. config checks) can use parts of it without loading torch."""
