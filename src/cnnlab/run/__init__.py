"""Run machinery: the work of each verb (training, evaluation, ...) and what the verbs share - builders, checks,
callbacks, checkpoints, sweeps, inference."""
