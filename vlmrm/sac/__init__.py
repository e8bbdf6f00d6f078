"""The SAC learner: networks and exploration (`agent`, `exploration`), losses (`fast_loss`), the update (`update`), schedules, the replay buffer on disk (`replay_state`)."""
