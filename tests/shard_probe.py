"""A callback for the streaming DDP test: writes, per rank, a digest of every training image it was given in its
first epoch (`<run dir>/seen_rank<k>.json`), so the test can check that the ranks' shares are disjoint."""

import hashlib
import json
from pathlib import Path

import lightning as L


class RecordFirstEpoch(L.Callback):
    def __init__(self, output_dir: str) -> None:
        self.output_dir, self.seen = Path(output_dir), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 0:
            images, labels = batch
            self.seen += [f"{int(y)}:{hashlib.sha1(x.cpu().numpy().tobytes()).hexdigest()}" for x, y in
                          zip(images, labels, strict=True)]  # fmt: skip

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0:
            (self.output_dir / f"seen_rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))
