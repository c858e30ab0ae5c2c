"""Run machinery: the work of each verb (training, evaluation, ...), and what they share - builders, checks, callbacks, checkpoints, sweeps, inference."""
