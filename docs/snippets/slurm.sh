#!/bin/bash
#SBATCH --signal=TERM@120      # SIGTERM 2 minutes before the limit (>= logging.stop_timeout_s + a checkpoint write)
#SBATCH --requeue
srun vlmrm fit --resume last --config configs/humanoid_kneeling.yaml \
  || { [ $? -eq 130 ] && scontrol requeue "$SLURM_JOB_ID"; }
