"""ImageClassifier: the one LightningModule. Backbone + head, built from plain config dicts; its steps.

Every constructor argument is a plain value or dict and is saved in the checkpoint: load a trained model with
`cnnlab.load_classifier(path)` (see cnnlab.models.saved for what a checkpoint holds beside the weights).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from cnnlab import metrics as M
from cnnlab.errors import CnnlabError
from cnnlab.models.head import build_head
from cnnlab.models.mixing import Mix, Mixer
from cnnlab.models.optimization import StepSettings, WrittenOutStep, build_optimizer, refresh_gated_lrs
from cnnlab.models.preprocess import InputAdapter
from cnnlab.models.saved import RECORD, SavedRun, checkpoint_record, saved_record
from cnnlab.models.tta import tta_logits
from cnnlab.transfer.policy import TransferConfig, TransferPolicy
from cnnlab.utils.config import build
from cnnlab.utils.tensorboard import log_confusion_matrix


class ImageClassifier(SavedRun, L.LightningModule):
    """The network (preprocessing, backbone, head) and its training, validation and test steps.

    A trained one comes back with `cnnlab.load_classifier(path)`, which checks the file first; Lightning's
    `load_from_checkpoint` is shut (it would unpickle the file unchecked).
    """

    def __init__(
        self,
        backbone: dict[str, Any],
        data: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        head: dict[str, Any] | None = None,
        transfer: dict[str, Any] | None = None,
        pretrained: bool = False,
        weights: str | None = None,
        image_size: int | list[int] | None = None,
        label_smoothing: float = 0.0,
        channels_last: bool = True,
        compile: bool = False,
        mix: dict[str, Any] | None = None,
        tta: str = "none",
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__()
        # The logger gets the whole composed config at the end of the run instead (see cnnlab.run.training).
        self.save_hyperparameters(logger=False)
        self.num_classes = int(data["num_classes"])
        self.class_names = list(data["class_names"])
        self.transfer_config = TransferConfig.from_dict(transfer)
        size = _pair(image_size) if image_size is not None else tuple(data["image_size"])
        self.backbone = build(
            backbone, in_chans=int(data["in_chans"]), image_size=size, pretrained=pretrained, weights=weights
        )
        self.preprocess = InputAdapter(
            in_chans=int(data["in_chans"]),
            model_chans=self.backbone.in_chans,
            image_size=size if size != tuple(data["image_size"]) else None,
            mean=self.backbone.mean or data["mean"],
            std=self.backbone.std or data["std"],
            channels_last=channels_last,
        )
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        self.head = build_head(self.backbone.num_features, self.num_classes, **(head or {}))
        self.policy = TransferPolicy(self.transfer_config, self.backbone, self.head)
        self.policy.apply_requires_grad(self.backbone, epoch=0)
        self.register_buffer("_train_sums", torch.zeros(3), persistent=False)  # loss sum, correct, count
        self.mixer = Mixer(Mix.from_config(mix), self.num_classes)
        weights = _class_weights(class_weights, self.num_classes)
        # Not in the state dict: rebuilt from the hyperparameters, so checkpoints without it still load.
        self.register_buffer("class_weight", weights, persistent=False)
        # The step is written out (see cnnlab.models.optimization); cnnlab.run.training sets its trainer.* settings.
        self.automatic_optimization = False
        self.stepper = WrittenOutStep()
        self.val_acc = MulticlassAccuracy(self.num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(self.num_classes, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes)
        # A buffer, not a MaxMetric: it is saved in checkpoints, so a resumed run keeps its best.
        self.register_buffer("val_acc_best", torch.tensor(0.0))

    # --- self-contained checkpoints (cnnlab.models.saved) ---------------------------------------------
    def preprocessing(self) -> dict[str, Any]:
        """What an input must be, and what the model does to it before the backbone (it is all inside)."""
        data = self.hparams.data
        return {
            "input": "uint8 images (N, C, H, W) in 0..255, or float in 0..1",
            "in_chans": int(data["in_chans"]),
            "image_size": list(data["image_size"]),
            "model_chans": self.preprocess.model_chans,
            "model_image_size": list(self.preprocess.image_size or data["image_size"]),
            "resize": "bilinear, antialiased" if self.preprocess.image_size else "none",
            "mean": self.preprocess.mean.flatten().tolist(),
            "std": self.preprocess.std.flatten().tolist(),
            "class_names": self.class_names,
            "tta": self.tta,  # the test-time views the answers average (model.tta)
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RECORD] = checkpoint_record(self, train_sums=self._train_sums.tolist())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = saved_record(checkpoint)
        if self.run_config is None:  # a model rebuilt from the file; a resumed run keeps its own config
            self.run_config = saved.get("config")
        if saved.get("train_sums"):  # a run resumed mid-epoch goes on summing (Lightning skips on_train_epoch_start)
            self._train_sums.copy_(torch.tensor(saved["train_sums"]))

    # --- forward ------------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of raw images (uint8 0..255 or float 0..1), preprocessing included."""
        return self.head(self.backbone(self.preprocess(images)))

    @property
    def tta(self) -> str:
        """`model.tta`: the test-time augmentation of test, cnnlab eval, cnnlab predict and exports."""
        return self.hparams.get("tta") or "none"

    @tta.setter
    def tta(self, mode: str) -> None:
        self.hparams.tta = mode  # saved with the model: an exported or re-saved model carries it

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The logits a trained model answers with: `forward`, averaged over the test-time views of `model.tta`."""
        return tta_logits(self, images, self.tta)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The training objective - class weights and label smoothing included - the one loss of training,
        validation, test and eval. `targets`: class indices (N,), or mixed class shares (N, classes)."""
        return F.cross_entropy(logits, targets, weight=self.class_weight, label_smoothing=self.hparams.label_smoothing,
                               reduction=reduction)  # fmt: skip

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], tta: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        inputs, labels = batch
        # 2-D inputs are cached backbone features (frozen feature extraction, see cnnlab.data.feature_cache).
        if inputs.ndim == 2:
            return self._scored(self.head(inputs), labels)
        return self._scored(self.predict_logits(inputs) if tta else self(inputs), labels)

    def _scored(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.loss(logits, labels), logits.argmax(1), labels

    def _mixed_logits(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training logits and targets: images mixed (`model.mix`) after preprocessing, targets mixed alike."""
        if inputs.ndim == 2 or not self.mixer.mix.on_at(self.current_epoch if self._trainer is not None else 0):
            return (self.head(inputs) if inputs.ndim == 2 else self(inputs)), labels
        images, targets = self.mixer(self.preprocess(inputs), labels, self.current_epoch)
        return self.head(self.backbone(images)), targets

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if not len(batch[1]):  # every file of a streamed batch was unreadable (each named in the log)
            return self._empty_step(batch_idx)
        inputs, labels = batch
        logits, targets = self._mixed_logits(inputs, labels)
        loss = self.loss(logits, targets)
        stepped = self.stepper(self, loss, batch_idx)
        # Summed on the device and reduced once per epoch: no self.log, no host sync in the hot loop.
        with torch.no_grad():
            self._train_sums += torch.stack(
                [
                    loss.detach() * len(labels),
                    _credit(logits.argmax(1), targets).to(loss.dtype),
                    loss.new_full((), len(labels)),  # a fill kernel: new_tensor would copy from the host
                ]
            )
        if stepped:
            self._log_step_loss(loss)
        return loss

    def _empty_step(self, batch_idx: int) -> torch.Tensor | None:
        """A batch with nothing left to learn from. One process skips it; under DDP every rank must take part in each
        step's gradient all-reduce (a rank that skipped would leave the others waiting for ever), so this rank steps
        with a zero loss tied to every trainable weight: its share of the averaged gradient is zero."""
        if self._trainer is None or self.trainer.world_size == 1:
            return None
        loss = torch.stack([p.sum() for p in self.parameters() if p.requires_grad]).sum() * 0.0
        self.stepper(self, loss, batch_idx)
        return loss

    def set_step_settings(self, settings: StepSettings) -> None:
        self.stepper = WrittenOutStep(settings)

    def _log_step_loss(self, loss: torch.Tensor) -> None:
        """The per-step loss curve, written every `log_every_n_steps` (the only host sync, that often)."""
        every = self.trainer.log_every_n_steps if self._trainer is not None else 0
        if every and self.global_step % every == 0 and self.trainer.is_global_zero:
            for logger in self.loggers:
                logger.log_metrics({M.TRAIN_LOSS_STEP: float(loss.detach())}, step=self.global_step)

    def on_train_start(self) -> None:
        """Also here, for a run resumed mid-epoch: Lightning then skips `on_train_epoch_start`."""
        self._apply_transfer_policy()

    def on_train_epoch_start(self) -> None:
        self._train_sums.zero_()
        self._apply_transfer_policy()

    # --- transfer policy ----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Before DDP wraps the model: DDP fixes its gradient buckets then, so every stage that will ever
        train must require grad from the start; the LR gate keeps it still until its epoch."""
        if stage == "fit" and self.trainer.world_size > 1:
            self.policy.apply_requires_grad(self.backbone, epoch=None)
        self._compile()

    def _compile(self) -> None:
        """`model.compile=true`: torch.compile the preprocessing, backbone and head in place (parameter names and
        checkpoints unchanged). The first steps, and each new batch shape, pay for compilation."""
        if self.hparams.get("compile") and not getattr(self, "_compiled", False):
            for module in (self.preprocess, self.backbone, self.head):
                module.compile()
            self._compiled = True

    def _apply_transfer_policy(self) -> None:
        """At each epoch start: what trains, BatchNorm modes, and this epoch's LRs (freeze -> unfreeze)."""
        epoch = self.current_epoch
        if self.trainer.world_size == 1:  # under DDP the LR gate alone freezes (see cnnlab.transfer.policy)
            self.policy.apply_requires_grad(self.backbone, epoch)
        self.policy.set_bn_modes(self.backbone, epoch)
        refresh_gated_lrs(self.lr_schedulers())

    def train(self, mode: bool = True) -> ImageClassifier:
        """Whoever switches the model to training, frozen BatchNorms stay in eval mode."""
        super().train(mode)
        if mode:
            epoch = self.current_epoch if self._trainer is not None else 0
            self.policy.set_bn_modes(self.backbone, epoch)
        return self

    def on_train_epoch_end(self) -> None:
        loss_sum, correct, count = self._train_sums
        self.log(M.TRAIN_LOSS, loss_sum / count.clamp(min=1), sync_dist=True, prog_bar=True)
        self.log(M.TRAIN_ACC, correct / count.clamp(min=1), sync_dist=True, prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if not len(batch[1]):  # every file of a streamed batch was unreadable
            return None
        loss, preds, labels = self._eval_step(batch)
        self.val_acc(preds, labels)
        self.log(M.VAL_LOSS, loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log(M.VAL_ACC, self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.val_acc_best = torch.maximum(self.val_acc_best, self.val_acc.compute())
        self.log(M.VAL_ACC_BEST, self.val_acc_best, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if not len(batch[1]):  # every file of a streamed batch was unreadable
            return None
        loss, preds, labels = self._eval_step(batch, tta=True)
        self.test_acc(preds, labels)
        self.test_confusion.update(preds, labels)
        self.log(M.TEST_LOSS, loss, on_epoch=True, sync_dist=True)
        self.log(M.TEST_ACC, self.test_acc, on_epoch=True)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def on_test_epoch_end(self) -> None:
        self.last_confusion = self.test_confusion.compute().cpu()
        if self.trainer.is_global_zero:
            log_confusion_matrix(self.loggers, self.last_confusion, self.class_names, self.global_step)

    # --- optimisation -------------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """One group per backbone stage plus the head, each at its own LR (see TransferPolicy)."""
        optimizer = self.hparams.optimizer
        return self.policy.param_groups(
            self.backbone,
            base_lr=optimizer["lr"],
            decay_norm_and_bias=bool(optimizer.get("decay_norm_and_bias", False)),
        )

    def lr_factor(self, group: str) -> float:
        """Per-group multiplier on top of the schedule: 0 while the group's stage is frozen."""
        return self.policy.gate(group, self.current_epoch if self._trainer is not None else 0)

    def configure_optimizers(self) -> dict[str, Any]:
        accumulate = self.stepper.settings.accumulate_grad_batches
        return build_optimizer(self, self.param_groups(), self.hparams.optimizer, self.hparams.scheduler,
                               gate=self.lr_factor, accumulate=accumulate)  # fmt: skip


def _pair(size: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _credit(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Correct predictions in a batch. With mixed targets, each prediction earns the target's share of the class it
    names (a 0.7 / 0.3 blend: 0.7 for the first class, 0.3 for the second): the expected accuracy against the mixed
    label, equal to the plain count on unmixed batches."""
    if targets.ndim == 1:
        return (preds == targets).sum()
    return targets.gather(1, preds[:, None]).sum()


def _class_weights(weights: list[float] | None, num_classes: int) -> torch.Tensor | None:
    """`model.class_weights` as the loss's weight tensor (`balanced` is resolved from the training labels by
    cnnlab.run.builders before the model is built)."""
    if weights is None:
        return None
    if isinstance(weights, str) or len(weights) != num_classes or min(weights) < 0:
        raise CnnlabError(f"model.class_weights={weights!r}: give one weight >= 0 per class ({num_classes}), or "
                          "`balanced` through cnnlab train.")  # fmt: skip
    return torch.tensor([float(w) for w in weights])
