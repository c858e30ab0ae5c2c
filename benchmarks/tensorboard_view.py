"""What a person sees in TensorBoard after a small replicated sweep: screenshots of the HPARAMS table and of the
images tab (the confusion matrix), taken by a headless Chromium against a real TensorBoard server on loopback.

    python -m benchmarks.tensorboard_view --out /tmp/tb_view     # needs `apt-get install chromium`

Prints the screenshot paths; look at the PNGs.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def screenshot(url: str, path: Path, browser: str) -> None:
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1600,1000", "--virtual-time-budget=20000", f"--screenshot={path}", url],
                   check=True, capture_output=True, timeout=120)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="tb_view_")))
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        sys.exit("no Chromium: apt-get install chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    sweep = args.out / "sweep"
    subprocess.run([sys.executable, "-m", "cnnlab", "train", "-m", "optimizer.lr=0.001,0.003", "seed=1,2",
                    "data=digits", "model.backbone.padding=1", "trainer.max_epochs=2",
                    "callbacks.progress_bar.refresh_rate=0", f"hydra.sweep.dir={sweep}"],
                   check=True, capture_output=True)  # fmt: skip
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(60):
            try:
                urllib.request.urlopen(base, timeout=2)
                break
            except OSError:
                time.sleep(1)
        time.sleep(3)  # let TensorBoard read the event files
        for tab in ("hparams", "images"):
            path = args.out / f"tensorboard_{tab}.png"
            screenshot(f"{base}/#{tab}", path, browser)
            print(f"{tab}: {path}")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
