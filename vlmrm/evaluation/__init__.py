"""Reward-model evaluation: ``vlmrm evaluate-reward`` (goal-variable landscapes, labelled frame
sets, the prompt check) and ``vlmrm dataset`` (labelled frame sets from rollouts).

``options`` and ``frameset`` are torch-free, so the CLI checks its arguments and the frame set's
labels before loading anything heavy; ``scoring``, ``plots``, ``command`` and ``dataset`` do the
work. This package imports nothing itself.
"""
