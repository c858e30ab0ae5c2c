"""Many nodes, shown on one host: 2 nodes x 1 process (`cnnlab train` on each node with Lightning's variables, as
docs/sweeps.md shows) train exactly like 1 node x 2 processes, into the one run dir the nodes share; the processes
torchrun or SLURM start (RANK, SLURM_PROCID) share it the same way; and the SLURM multi-node command asks SLURM for
the allocation Lightning's DDP runs on, or is refused before it is submitted."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hydra.utils import instantiate

from cnnlab.cli import preflight, verbs
from cnnlab.errors import CnnlabError
from cnnlab.utils.config import compose_for_check
from cnnlab.utils.rundir import (
    JOB_MARK,
    LOCK_NAME,
    RANK_VARIABLES,
    RunDirCallback,
    claim_run_dir,
    job_subdir,
    release_run_dir,
)

TINY = ["data=digits", "model.backbone.padding=1", "trainer.max_epochs=1", "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "callbacks.progress_bar.refresh_rate=0",
        "trainer.sync_batchnorm=false", "logger=none", "seed=7"]  # fmt: skip
DDP_ON_CPU = ["trainer=ddp", "trainer.accelerator=cpu"]
TWO_NODES = [*DDP_ON_CPU, "trainer.devices=1", "trainer.num_nodes=2"]
COMPARED = ("train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc")
TIMEOUT_S = 150  # all launches together; healthy, they take 15-30 s on 2 cores
# Set by a launcher or a cluster: none may leak from the environment the tests run in into the nodes started here.
DISTRIBUTED_VARIABLES = (*RANK_VARIABLES, "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "GROUP_RANK", "LOCAL_WORLD_SIZE",
                         "TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_JOB_ID", "CNNLAB_ROOT")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_VARIABLES and not k.startswith("SLURM_")}
    return {**env, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **variables}


def cnnlab_train(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnnlab", "train", *args]


def run_all(launches: dict[str, tuple[list[str], dict[str, str]]], cwd: Path) -> None:
    """Start every launch at once (the nodes of a job must be up together), each in its own process group, and wait
    for all; one that fails or overruns TIMEOUT_S fails the test, and every group still running is killed (a node
    whose peer died waits for it until torch's own timeout, 30 minutes). Each one's output: cwd/<name>.out."""
    logs = {name: cwd / f"{name}.out" for name in launches}
    procs = {}
    try:
        for name, (command, env) in launches.items():
            with logs[name].open("w") as out:
                procs[name] = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + TIMEOUT_S
        for name, proc in procs.items():
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                code = "timed out"
            assert code == 0, f"{name}: {code}\n{logs[name].read_text()[-3000:]}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_two_nodes_train_exactly_like_two_processes_on_one_node(tmp_path):
    """The same 2 ranks, seed and data order, placed on one node or on two, give the same numbers; both nodes write
    into the one run dir they are given (whichever starts first): rank 0 its results and `.hydra/`, node 1 its log.
    All three processes start at once: the nodes must, and the one-node run needs no more time beside them."""
    one_node, two_nodes, port = tmp_path / "one_node", tmp_path / "two_nodes", free_port()
    launches = {"one_node": (cnnlab_train(*DDP_ON_CPU, "trainer.devices=2", *TINY, f"hydra.run.dir={one_node}"),
                             node_env())}  # fmt: skip
    for node in (0, 1):
        env = node_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NODE_RANK=str(node))
        launches[f"node{node}"] = (cnnlab_train(*TWO_NODES, *TINY, f"hydra.run.dir={two_nodes}"), env)
    run_all(launches, tmp_path)

    expected, got = metrics(one_node), metrics(two_nodes)
    assert expected["global_step"] == got["global_step"] == 4  # 4 batches of each rank's half of the data
    assert {k: got[k] for k in COMPARED} == pytest.approx({k: expected[k] for k in COMPARED}, abs=1e-5)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (two_nodes / "train_node1.log").read_text()  # node 1's own log
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in (two_nodes / "train.log").read_text()
    assert (two_nodes / ".hydra" / "config.yaml").is_file() and (two_nodes / "checkpoints").is_dir()
    assert not (two_nodes / LOCK_NAME).exists()  # rank 0 claimed the dir and gave it back
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["one_node", "two_nodes"]  # no dir of node 1's


@pytest.fixture
def rank(monkeypatch):
    """Set this process's place in a distributed run (the variables torchrun, SLURM or Lightning set)."""
    for name in DISTRIBUTED_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def set_rank(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return set_rank


def further_rank_start(run_dir: Path, overrides: list[str] = ()) -> tuple[str | None, str]:
    """What a further rank's Hydra would write, once cnnlab's run dir callback has seen it: (`.hydra/`'s folder,
    the log's name)."""
    cfg = compose_for_check("train", [f"hydra.run.dir={run_dir}", "hydra.job.name=train", *overrides])
    RunDirCallback().on_run_start(cfg)
    return cfg.hydra.output_subdir, f"{cfg.hydra.job.name}.log"


FURTHER_RANKS = {"torchrun": ({"RANK": "1", "LOCAL_RANK": "0", "GROUP_RANK": "1"}, "train_rank1.log"),
                 "lightning_node": ({"NODE_RANK": "1"}, "train_node1.log"),
                 "slurm": ({"SLURM_PROCID": "5"}, "train_rank5.log")}  # fmt: skip


@pytest.mark.parametrize(("variables", "log"), FURTHER_RANKS.values(), ids=FURTHER_RANKS)
def test_a_further_rank_writes_no_hydra_files_and_logs_to_its_own_file(tmp_path, rank, variables, log):
    """A node's process may reach the shared run dir before rank 0 claims it: it writes only a log of its own."""
    rank(**variables)
    assert further_rank_start(tmp_path / "run") == (None, log)
    assert not (tmp_path / "run").exists()  # no claim: the dir is rank 0's


def test_lightnings_own_ddp_children_keep_their_names_with_the_node_added(tmp_path, rank):
    lightning_child = ["hydra.job.name=train_ddp_process_1", "hydra.output_subdir=null"]  # what Lightning passes
    rank(LOCAL_RANK="1", NODE_RANK="0")
    assert further_rank_start(tmp_path, lightning_child) == (None, "train_ddp_process_1.log")
    rank(LOCAL_RANK="1", NODE_RANK="1")  # node 1's child: the same name as node 0's, but for the node
    assert further_rank_start(tmp_path, lightning_child) == (None, "train_ddp_process_1_node1.log")


def test_a_further_rank_without_a_shared_run_dir_is_refused(tmp_path, rank, capsys):
    """Each process would make a new dir of its own (`${unique_dir:}`): the nodes must be told rank 0's."""
    rank(RANK="1")
    cfg = compose_for_check("train", [f"paths.log_dir={tmp_path}"])
    with pytest.raises(SystemExit) as stop:
        RunDirCallback().on_run_start(cfg)
    assert stop.value.code == 2
    assert "give every process (every node) the same hydra.run.dir=" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_rank_0_takes_a_dir_a_further_rank_reached_first_but_never_a_used_one(tmp_path, rank):
    rank()  # rank 0
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_rank1.log").write_text("rank 1 was here first\n")
    assert claim_run_dir(run, reuse=False, resume_hint="cnnlab train ... ckpt_path=last")
    release_run_dir(run)
    (run / "metrics.json").write_text("{}")
    with pytest.raises(CnnlabError, match=r"already holds a run \(metrics\.json\)"):
        claim_run_dir(run, reuse=False, resume_hint="cnnlab train ... ckpt_path=last")


# ---------------------------------------------------------------------------------------------------- SLURM

SLURM_BY_HAND = ["hydra/launcher=submitit_slurm", "hydra.launcher.nodes=2", "hydra.launcher.tasks_per_node=4",
                 "hydra.launcher.gpus_per_node=4", "trainer=ddp", "trainer.devices=4",
                 "trainer.num_nodes=2"]  # fmt: skip
SLURM_PRESET = ["hydra/launcher=slurm_ddp", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]


class Submitted(Exception):
    """Raised where submitit would call sbatch, with the script it would submit."""


def sbatch_script(overrides: list[str], sweep_dir: Path, monkeypatch) -> str:
    """The batch script the SLURM launcher submits for `overrides`: Hydra builds the launcher from the composed config
    and submitit writes the script as for a cluster; only the call of sbatch itself is replaced."""
    from submitit.slurm.slurm import SlurmExecutor

    def no_sbatch(self, script: Path) -> list[str]:
        raise Submitted(Path(script).read_text())

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # as if `srun` were on the PATH
    monkeypatch.setattr(SlurmExecutor, "_make_submission_command", no_sbatch)
    cfg = compose_for_check("train", [*overrides, f"hydra.sweep.dir={sweep_dir}"])
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    with pytest.raises(Submitted) as submitted:
        launcher.launch([["model=resnet18"]], initial_job_idx=0)
    return str(submitted.value)


def sbatch_value(script: str, option: str) -> int:
    found = re.search(rf"^#SBATCH --{option}=(\d+)$", script, re.M)
    assert found, f"no --{option} in\n{script}"
    return int(found[1])


@pytest.mark.parametrize("overrides", [SLURM_BY_HAND, SLURM_PRESET], ids=["submitit_slurm", "slurm_ddp"])
def test_the_slurm_multinode_command_asks_for_what_ddp_runs_on(overrides, tmp_path, monkeypatch, rank):
    """2 nodes x 4 tasks x 4 GPUs in the script SLURM gets; Lightning, in each task of that job, accepts it."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from lightning.fabric.plugins.environments import SLURMEnvironment

    preflight(verbs()["train"], [*overrides, "model=resnet18"])  # the CLI's check before anything runs
    script = sbatch_script(overrides, tmp_path / "sweep", monkeypatch)
    nodes, tasks, gpus = (sbatch_value(script, o) for o in ("nodes", "ntasks-per-node", "gpus-per-node"))
    assert (nodes, tasks, gpus) == (2, 4, 4)
    rank(SLURM_NNODES=str(nodes), SLURM_NTASKS_PER_NODE=str(tasks))  # what SLURM tells each task
    SLURMEnvironment().validate_settings(num_devices=4, num_nodes=2)  # raises on a mismatch, as the next test shows


def test_a_slurm_allocation_ddp_cannot_run_on_is_refused_before_it_is_submitted(rank):
    """Lightning would refuse each mismatch only once the job had queued and started; cnnlab refuses it at once."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from lightning.fabric.plugins.environments import SLURMEnvironment

    wrong = ["hydra/launcher=submitit_slurm", "hydra.launcher.nodes=2", "hydra.launcher.tasks_per_node=4",
             "hydra.launcher.gpus_per_node=8", "trainer=ddp", "trainer.devices=2", "trainer.num_nodes=1"]  # fmt: skip
    with pytest.raises(CnnlabError) as refused:
        preflight(verbs()["train"], wrong)
    message = str(refused.value)
    assert "hydra.launcher.nodes=2 but trainer.num_nodes=1" in message
    assert "hydra.launcher.tasks_per_node=4 but trainer.devices=2" in message
    assert "hydra.launcher.gpus_per_node=8 but trainer.devices=2" in message
    rank(SLURM_NNODES="2", SLURM_NTASKS_PER_NODE="4")
    with pytest.raises(ValueError, match="does not match"):
        SLURMEnvironment().validate_settings(num_devices=2, num_nodes=1)

    with pytest.raises(CnnlabError, match=r"hydra.launcher.tasks_per_node is not a count: .*not auto or -1"):
        preflight(verbs()["train"], ["hydra/launcher=slurm_ddp", "trainer=ddp", "trainer.devices=auto"])
    preflight(verbs()["train"], ["hydra/launcher=submitit_slurm", "trainer.devices=1"])  # one GPU a job: as before


def test_the_tasks_of_one_scheduler_job_share_its_sweep_job_dir(tmp_path):
    """A SLURM job of several tasks resolves its sweep job dir in every task: task 0 makes it unique (here `0_2`,
    since an earlier sweep's `0` is there) and marks it with the job id; task 1, even when it looks first, waits for
    that dir - one dir per job, not one per task."""
    (tmp_path / "0").mkdir()  # a job of an earlier launch into the same sweep dir
    found: list = []
    task_1 = {"SLURM_JOB_ID": "77", "SLURM_PROCID": "1"}
    waiting = threading.Thread(target=lambda: found.append(job_subdir(tmp_path, "0", task_1)))
    waiting.start()
    time.sleep(0.5)
    made = job_subdir(tmp_path, "0", {"SLURM_JOB_ID": "77", "SLURM_PROCID": "0"})
    waiting.join(timeout=10)
    assert made.name == "0_2" and found == [made] and (made / JOB_MARK).read_text() == "77"
    assert job_subdir(tmp_path, "0", {"SUBMITIT_LOCAL_JOB_ID": "9", "SUBMITIT_LOCAL_GLOBALID": "0"}).name == "0_3"
    assert job_subdir(tmp_path, "0", {}).name == "0_4"  # outside a scheduler: unique, unmarked
    assert not (tmp_path / "0_4" / JOB_MARK).exists()
    with pytest.raises(CnnlabError, match="task 1 of job 78 found no dir"):
        job_subdir(tmp_path, "0", {"SLURM_JOB_ID": "78", "SLURM_PROCID": "1"}, wait_s=0.5)
