#!/bin/bash
#SBATCH --signal=TERM@120      # SIGTERM 2 minutes before the limit (one iteration must fit)
#SBATCH --requeue
srun vlmrm fit --resume last --config configs/humanoid_kneeling.yaml \
  || { [ $? -eq 130 ] && scontrol requeue "$SLURM_JOB_ID"; }
