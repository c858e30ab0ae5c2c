"""Metric names, defined once: logged by the LightningModule and cnnlab eval, read by entry points, callbacks, sweeps,
reports and TensorBoard. Configs name them as strings (`optimized_metric`, `monitor`): the same strings as here."""

TRAIN_PREFIX, VAL_PREFIX, TEST_PREFIX = "train/", "val/", "test/"
STAGES = (TRAIN_PREFIX, VAL_PREFIX, TEST_PREFIX)  # the prefixes of the metrics a training run logs

TRAIN_LOSS = "train/loss"
TRAIN_LOSS_STEP = "train/loss_step"  # the per-step curve, every `trainer.log_every_n_steps`
TRAIN_ACC = "train/acc"
VAL_LOSS = "val/loss"
VAL_ACC = "val/acc"
VAL_ACC_BEST = "val/acc_best"
TEST_LOSS = "test/loss"
TEST_ACC = "test/acc"
TEST_CONFUSION = "test/confusion_matrix"  # rows: true class, columns: predicted

# cnnlab eval's class-averaged scores (every class counts the same, whatever its support)
MACRO_PRECISION = "macro/precision"
MACRO_RECALL = "macro/recall"
MACRO_F1 = "macro/f1"

# The headline metrics, most telling first: tables (the TensorBoard hparams tab) list these before the rest.
HEADLINE = (TEST_ACC, VAL_ACC_BEST, TEST_LOSS, VAL_ACC, VAL_LOSS, TRAIN_ACC, TRAIN_LOSS)
