"""Scaling out: collect and eval on a Ray cluster (same data, a killed worker's unit rerun), and
data-parallel training (2 gloo processes take the step 1 process takes on the whole batch)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from worldmodels.cli import main
from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.core.errors import UserError
from worldmodels.core.executor import make_executor
from worldmodels.envs.catch import Catch
from worldmodels.evaluation.evaluate import evaluate
from worldmodels.runs.episodes import list_episodes
from worldmodels.runs.rundir import RunDir

CRASHY = "tests.test_scale:CrashOnceCatch"


class CrashOnceCatch(Catch):
    """Catch whose process dies mid-episode (step 5) the first time any worker steps it.

    ``marker`` is created by the one process that crashes; with it present, plain Catch.
    """

    def __init__(self, marker: str, balls: int = 1, render_mode: str | None = None):
        super().__init__(balls, render_mode)
        self.marker = marker
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == 5 and not os.path.exists(self.marker):
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os._exit(1)  # the worker dies as on a lost node: no exception, no cleanup
        return super().step(action)


def episode_contents(run: RunDir) -> dict[str, dict[str, bytes]]:
    """File name -> the raw ``.npy`` bytes of every array in it (the zip's timestamps aside)."""
    out = {}
    for path in list_episodes(run.episodes).values():
        with zipfile.ZipFile(path) as z:
            out[path.name] = {name: z.read(name) for name in z.namelist()}
    return out


# ------------------------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'worldmodels[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_collect_gives_the_local_backends_episodes(tmp_path, ray_cluster):
    runs = {}
    for backend, workers in (("local", 1), ("ray", 2)):
        runs[backend] = RunDir(tmp_path / backend)
        summary = collect(runs[backend], CollectConfig(env="worldmodels.envs.catch:Catch", episodes=6, workers=workers, seed=3,
                                                       env_kwargs={"balls": 2}, backend=backend), progress=False)
        assert summary["episodes"] == summary["collected"] == 6
    local, ray = episode_contents(runs["local"]), episode_contents(runs["ray"])
    assert sorted(ray) == [f"episode_{i:06d}.npz" for i in range(6)]
    assert ray == local
    assert runs["ray"].read_meta()["collections"][0]["backend"] == "ray"


def test_a_worker_killed_mid_episode_has_its_episode_rerun(tmp_path, ray_cluster, capfd):
    marker = tmp_path / "crashed"
    ray_run, local_run = RunDir(tmp_path / "ray"), RunDir(tmp_path / "local")
    config = CollectConfig(env=CRASHY, episodes=8, workers=2, env_kwargs={"marker": str(marker)}, backend="ray")
    summary = collect(ray_run, config, progress=False)
    assert marker.exists()  # one worker did die, mid-episode
    assert "a worker died" in capfd.readouterr().err
    assert summary["episodes"] == summary["collected"] == 8
    assert sorted(list_episodes(ray_run.episodes)) == list(range(8))  # none lost, none twice
    assert not list(ray_run.episodes.glob(".*"))  # no partial file left behind
    (collection,) = ray_run.read_meta()["collections"]
    assert collection["episodes"] == list(range(8))
    # The rerun episode holds the same data as one never interrupted (the marker now stops crashes).
    collect(local_run, CollectConfig(env=CRASHY, episodes=8, workers=1, env_kwargs={"marker": str(marker)}),
            progress=False)
    assert episode_contents(ray_run) == episode_contents(local_run)


def test_ray_eval_scores_what_local_eval_scores(tmp_path, ray_cluster):
    run = RunDir(tmp_path / "run")
    collect(run, CollectConfig(env="worldmodels.envs.catch:Catch", episodes=1, workers=1, env_kwargs={"balls": 2}), progress=False)
    local = evaluate(run, "random", episodes=5, workers=1, seed=11, progress=False, write=False)
    ray = evaluate(run, "random", episodes=5, workers=2, seed=11, progress=False, write=False, backend="ray")
    for key in ("returns", "lengths", "seeds", "mean", "std"):
        assert ray[key] == local[key]


def test_without_ray_the_backend_is_a_clear_user_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    with pytest.raises(UserError, match=r"pip install 'worldmodels\[ray\]'"):
        make_executor("ray", 2, print)
    code = main(["collect", "worldmodels.envs.catch:Catch", "--run", str(tmp_path / "run"), "--episodes", "1",
                 "--backend", "ray"])
    assert code == 2
    err = capsys.readouterr().err
    assert "pip install 'worldmodels[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(UserError, match="--backend ray"):
        make_executor("local", 2, print, address="auto")


# ------------------------------------------------------------------------------------------- DDP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_one_gpu(cuda, setattr=setattr) -> list[int]:
    """Make ``torch.cuda`` see one GPU: ``set_device`` accepts ordinal 0 alone, as on a one-GPU
    machine, and records what it was asked for (the list returned). ``setattr``: monkeypatch's, to undo it."""
    calls = []

    def set_device(ordinal) -> None:
        calls.append(int(ordinal))
        if int(ordinal) > 0:
            raise RuntimeError("CUDA error: invalid device ordinal")

    setattr(cuda, "is_available", lambda: True)
    setattr(cuda, "device_count", lambda: 1)
    setattr(cuda, "set_device", set_device)
    return calls


def _train_rank(rank: int, world: int, port: int, root: str, config) -> None:
    """One torchrun-like rank: the environment torchrun sets, then the library's own training.

    CPU training runs with a GPU visible (faked where there is none): CPU ranks must not claim GPUs."""
    import torch
    import torch.distributed as dist

    from worldmodels.training.memory import train_memory

    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if config.device == "cpu" and not torch.cuda.is_available():
        fake_one_gpu(torch.cuda)
    train_memory(RunDir(root), config, progress=False)
    dist.destroy_process_group()


def train_ddp(root: Path, config, world: int = 2) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_train_rank, args=(world, free_port(), str(root), config), nprocs=world, join=True)


def weights(stage: Path) -> dict:
    import torch

    return torch.load(stage / "last.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def encoded_run(tmp_path_factory) -> Path:
    """8 Catch episodes (15 steps) with a ConvVAE (1 epoch) and their latents; read-only."""
    from worldmodels.training.vision import VisionTrainConfig, train_vision

    run = RunDir(tmp_path_factory.mktemp("ddp") / "run")
    collect(run, CollectConfig(env="worldmodels.envs.catch:Catch", episodes=8, workers=1, env_kwargs={"balls": 1}), progress=False)
    train_vision(run, VisionTrainConfig(epochs=1, batch_size=32, device="cpu"), progress=False)
    return run.root


def test_two_ddp_processes_train_what_one_process_trains(encoded_run, tmp_path, device):
    import torch

    from worldmodels.training.memory import MemoryTrainConfig, train_memory

    if device.type == "cuda" and torch.cuda.device_count() < 2:
        pytest.skip("DDP on CUDA needs a GPU per rank: 2 GPUs")
    # Windows of 12 steps in 15-step episodes: every step is real (mask 1), so the mean loss of two
    # half batches is the mean loss of the whole batch, and so are the averaged gradients. On CUDA,
    # bf16 autocast rounds the two halves differently: Adam's steps (lr 1e-3) may differ by a few 1e-4.
    config = MemoryTrainConfig(epochs=1, batch_size=8, seq_len=12, hidden_size=32, batches_per_epoch=2,
                               device=device.type)
    tolerance = {"atol": 1e-5, "rtol": 1e-4} if device.type == "cpu" else {"atol": 2e-3, "rtol": 1e-2}
    single, ddp = (RunDir(shutil.copytree(encoded_run, tmp_path / name)) for name in ("single", "ddp"))
    tb_before = set(ddp.tb.rglob("events.out.tfevents.*"))
    rounds = []
    for epochs in (1, 2):  # the second round resumes every rank from last.pt
        config.epochs = epochs
        train_memory(single, config, progress=False)
        train_ddp(ddp.root, config)
        expected, got = weights(single.memory), weights(ddp.memory)
        assert set(got) == set(expected)
        for name in expected:
            torch.testing.assert_close(got[name].cpu(), expected[name].cpu(), **tolerance, msg=name)
        rounds.append(got)
    assert any(not torch.equal(rounds[0][k], rounds[1][k]) for k in rounds[0])  # the second round trained
    summary = json.loads((ddp.memory / "summary.json").read_text())
    assert [h["epoch"] for h in summary["history"]] == [1, 2] and summary["steps"] == 4
    assert len(set(ddp.tb.rglob("events.out.tfevents.*")) - tb_before) == 2  # one file per round: rank 0's alone


def test_a_cpu_rank_leaves_a_visible_gpu_alone(monkeypatch):
    """Two CPU ranks on a one-GPU machine: rank 1 must not ask for GPU 1 (``invalid device ordinal``)."""
    import torch
    import torch.distributed as dist

    from worldmodels.training import distributed

    set_device = fake_one_gpu(torch.cuda, monkeypatch.setattr)
    backends = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", backends.append)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", rank)
        distributed.init(torch.device("cpu"))
    assert set_device == [] and backends == ["gloo", "gloo"]
    with pytest.raises(UserError, match="needs GPU 1 but 1 are visible"):
        distributed.init("cuda")  # rank 1 training on CUDA with one GPU: a clear error
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    distributed.init("cuda")
    assert set_device == [0] and backends[-1] == "cpu:gloo,cuda:nccl"


def test_each_rank_takes_its_slice_of_the_global_batch(monkeypatch):
    import torch

    from worldmodels.training import distributed

    batch = {"x": torch.arange(8), "y": torch.arange(8) * 10}
    assert distributed.shard(batch) is batch  # one process: the whole batch
    monkeypatch.setenv("WORLD_SIZE", "2")
    slices = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        slices.append(distributed.shard(batch))
    assert slices[0]["x"].tolist() == [0, 1, 2, 3] and slices[1]["x"].tolist() == [4, 5, 6, 7]
    assert slices[1]["y"].tolist() == [40, 50, 60, 70]
    assert distributed.shard({"x": torch.arange(1)}) is None  # fewer items than ranks: skipped by all
    np.testing.assert_array_equal(torch.cat([s["x"] for s in slices]).numpy(), batch["x"].numpy())
