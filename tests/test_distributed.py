"""DDP on CPU with the gloo backend: two processes read different shards and draw different noise, yet
end with identical weights (gradients are averaged); and the train CLI under torchrun."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from minilib.data.fixtures import make_celeba
from minilib.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    import torch.distributed as dist

    from minilib.data import images as D
    from minilib.experiments import image_tasks as T
    from minilib.train import Trainer

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        spec = T.TASKS["srgan-celeba"]
        obj = T.task_objective(spec, "gan+mr2", k=3)
        b = T.build(spec, data, "smoke", objective=obj, progress=False, batch_size=2, g_batch_size=2)
        init = {k: v.clone() for k, v in b.G.state_dict().items()}
        stream = D.DatasetStream(b.train, 0, rank=rank, world_size=world)
        first = D.DatasetStream(b.train, 0, rank=rank, world_size=world).next(2)[1]
        tr = Trainer(b.G, b.D, obj, b.config)
        assert isinstance(tr.G, torch.nn.parallel.DistributedDataParallel)
        tr.fit(stream, 2)
        torch.save({"G": tr.G_core.state_dict(), "init": init, "first": first}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_processes_stay_in_sync(tmp_path):
    data = make_celeba(tmp_path / "celeba")
    mp.start_processes(_worker, args=(2, _free_port(), str(data), str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(r0["first"], r1["first"])  # different data shards
    for k, v in r0["G"].items():
        if k.endswith("num_batches_tracked") or "running_" in k:
            continue  # BatchNorm buffers follow each rank's own batches between broadcasts
        assert torch.allclose(v, r1["G"][k], atol=1e-6), k
    assert any(not torch.equal(v, r0["init"][k]) for k, v in r0["G"].items())


@pytest.mark.slow
def test_train_cli_under_torchrun(tmp_path):
    data = make_celeba(tmp_path / "celeba")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "minilib", "train", "--task", "srgan-celeba", "--objective", "gan+pmr1", "--data", str(data),
           "--out", str(tmp_path / "run"), "--profile", "smoke", "--device", "cpu", "--steps", "2",
           "--predictor-steps", "2", "--k", "3", "--threads", "1", "--no-progress"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.count("done: 2 rounds") == 1  # only rank 0 reports
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2
