"""A real browser on a real server, for tests and benchmarks that check what a person would see (mlflow ui,
optuna-dashboard): a free loopback port, a server started in its own process group and stopped with all its
children, a wait for it to answer, and headless Chromium's rendered DOM or screenshot of a page.

No pytest here: benchmarks import it too. A test skips itself when `chromium()` is None.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Headless in a container: no sandbox (no user namespaces), no GPU, no first-run work, no /dev/shm (often tiny).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions", "--no-first-run",
                  "--disable-dev-shm-usage", "--hide-scrollbars")  # fmt: skip


def chromium() -> str | None:
    """The headless browser's path, or None when none is installed (`apt-get install chromium`)."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def free_port() -> int:
    """A loopback port nobody listens on now (the server binds it right after: a race only with a stranger)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Return once `url` answers 2xx; raise TimeoutError after `timeout` s, or RuntimeError if `process` (the server)
    exits first - its own error is then in its log, not in a long wait."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before {url} answered")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def serving(command: Sequence[str], ready_url: str, log: Path, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60.0) -> Iterator[subprocess.Popen]:  # fmt: skip
    """Run a server (an argument list, never a shell line) in `cwd` until the block ends, its output in `log`. It
    gets a session of its own, so that stopping it stops the workers it started too (mlflow server's uvicorn)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                   start_new_session=True)  # fmt: skip
    try:
        wait_for_http(ready_url, timeout, process)
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the process group `process` leads, SIGKILL if it is still there after `grace` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _run_chromium(url: str, args: Sequence[str], budget_ms: int, timeout: float) -> subprocess.CompletedProcess:
    browser = chromium()
    if browser is None:
        raise FileNotFoundError("no Chromium: apt-get install chromium")
    # --virtual-time-budget: the page's own clock runs this far (its fetches and renders) before the result is taken.
    return subprocess.run([browser, *CHROMIUM_FLAGS, f"--virtual-time-budget={budget_ms}", *args, url],
                          capture_output=True, text=True, timeout=timeout, check=True)  # fmt: skip


def chromium_dom(url: str, budget_ms: int = 4000, timeout: float = 90.0) -> str:
    """The page's DOM after its scripts ran (what a person would see as text), from headless Chromium."""
    return _run_chromium(url, ["--dump-dom"], budget_ms, timeout).stdout


def chromium_screenshot(url: str, path: Path, size: tuple[int, int] = (1600, 1000), budget_ms: int = 10000,
                        timeout: float = 120.0) -> Path:  # fmt: skip
    """A PNG of the page at `size` (width, height) after its scripts ran."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _run_chromium(url, [f"--window-size={size[0]},{size[1]}", f"--screenshot={path}"], budget_ms, timeout)
    return path
