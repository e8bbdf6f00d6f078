"""A training run: the wiring (`build`), the LightningModule (`module`), callbacks, monitor, evaluation, checkpoints, run state, resume, run directories, interrupts, plan."""
