"""The one training loop: sampling contract, every objective's generator step, update ratio,
optimiser defaults, exact resume, NaN stop, predictor fitting."""
import math

import pytest
import torch
from torch import nn

from minilib.objectives import PRESETS, Objective, get_objective
from minilib.train import TrainConfig, Trainer, TrainingDiverged, sample_k
from minilib.checkpoints import atomic_save, load_checkpoint
from minilib.predictor import fit_predictor


class TinyG(nn.Module):
    def __init__(self, x_dim=1, z_dim=2, y_dim=2):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(nn.Linear(x_dim + z_dim, 16), nn.ReLU(), nn.Linear(16, y_dim))
        self.calls = 0

    def noise(self, n, device=None, generator=None):
        return torch.randn(n, self.z_dim, device=device, generator=generator)

    def forward(self, x, z):
        self.calls += 1
        return self.net(torch.cat([x, z], dim=1))


class TinyD(nn.Module):
    def __init__(self, x_dim=1, y_dim=2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(x_dim + y_dim, 16), nn.ReLU(), nn.Linear(16, 1))
        self.calls = 0

    def forward(self, x, y):
        self.calls += 1
        return self.net(torch.cat([x, y], dim=1)).squeeze(1)


class TinyP(nn.Module):
    def __init__(self, x_dim=1, y_dim=2):
        super().__init__()
        self.net = nn.Linear(x_dim, 2 * y_dim)

    def forward(self, x):
        c, ld = self.net(x).chunk(2, dim=1)
        return c, ld


class GaussStream:
    """y | x ~ N((x, -x), 0.5^2): a conditional stream with a resumable generator."""

    def __init__(self, seed=0):
        self.gen = torch.Generator().manual_seed(seed)

    def next(self, n):
        x = torch.rand(n, 1, generator=self.gen) * 2 - 1
        y = torch.cat([x, -x], 1) + 0.5 * torch.randn(n, 2, generator=self.gen)
        return x, y

    def state_dict(self):
        return {"rng": self.gen.get_state()}

    def load_state_dict(self, s):
        self.gen.set_state(s["rng"])


class NotATensor:
    """An arbitrary class: weights_only loading must refuse to unpickle it."""


def quiet(**kw):
    return TrainConfig(progress=False, **kw)


def test_sample_k_one_batched_forward_and_layout():
    G = TinyG()
    x = torch.arange(3.0).reshape(3, 1)
    samples, z = sample_k(G, x, 5)
    assert samples.shape == (3, 5, 2) and z.shape == (15, 2)
    assert G.calls == 1
    # row b*K + j of the flat batch is sample j of input b
    again = G.net(torch.cat([x.repeat_interleave(5, 0), z], 1)).reshape(3, 5, 2)
    assert torch.allclose(samples, again)


def test_sample_k_rejects_bad_k():
    with pytest.raises(ValueError, match="k must"):
        sample_k(TinyG(), torch.zeros(2, 1), 0)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_runs_a_generator_step_and_changes_G(name):
    torch.manual_seed(0)
    obj = get_objective(name, k=4)
    if obj.entropy_weight:  # PresGAN's term needs its hook (minilib.presgan); here it must not be silently ignored
        obj = obj.replace(entropy_weight=0.0)
    G, D = TinyG(), TinyD()
    P = TinyP() if obj.needs_predictor else None
    tr = Trainer(G, D if obj.uses_discriminator else None, obj, quiet(batch_size=8, g_batch_size=4), P=P)
    before = [p.clone() for p in G.parameters()]
    x, y = GaussStream().next(4)
    out = tr.generator_step(x, y)
    assert math.isfinite(out["g_total"])
    expected = {"gan"} if obj.gan_weight else set()
    expected |= {"rec"} if obj.rec else set()
    expected |= {"moment"} if obj.moment else set()
    expected |= {"ms"} if obj.ms_weight else set()
    assert {k[2:] for k in out} - {"total"} == expected
    assert out["g_total"] == pytest.approx(sum(out["g_" + k] for k in expected), rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters()))


def test_generator_step_matches_hand_computed_loss():
    """g_total equals the weighted sum computed by hand from the same samples."""
    from minilib import losses as L

    torch.manual_seed(0)
    obj = Objective(name="t", gan_weight=0.5, rec="l1", rec_weight=3.0, moment="mr", moment_weight=2.0, k=4)
    G, D = TinyG(), TinyD()
    tr = Trainer(G, D, obj, quiet())
    x, y = GaussStream().next(3)
    state = tr.noise_gen.get_state()
    terms = tr.generator_losses(x, y)
    tr.noise_gen.set_state(state)
    with torch.no_grad():
        s, _ = sample_k(G, x, 4, tr.noise_gen)
        hand = 0.5 * L.gan_loss(D(x.repeat_interleave(4, 0), s.reshape(12, 2)), True, generator=True) + 3.0 * L.reconstruction_loss(s, y, 1) + 2.0 * L.mr_loss(s, y, "gaussian", 2)
    assert terms["total"].item() == pytest.approx(hand.item(), rel=1e-5)


def test_update_ratio_and_defaults():
    cfg = quiet(d_steps=1, g_steps=5, batch_size=8, g_batch_size=4)
    assert (cfg.lr_g, cfg.lr_d, cfg.betas, cfg.weight_decay, cfg.amsgrad, cfg.clip_value) == (1e-4, 1e-4, (0.5, 0.999), 1e-4, True, 0.5)
    G, D = TinyG(), TinyD()
    tr = Trainer(G, D, get_objective("gan", k=2), cfg)
    assert tr.opt_g.defaults["amsgrad"] and tr.opt_g.defaults["weight_decay"] == 1e-4
    tr.fit(GaussStream(), 3)
    assert tr.step == 3
    # per step: 1 D update (G once for the fake, D twice: real + fake), 5 G updates (G once, D once each)
    assert G.calls == 3 * (1 + 5)
    assert D.calls == 3 * (2 + 5)


def test_clip_by_value_is_applied():
    G, D = TinyG(), TinyD()
    obj = Objective(name="big", gan_weight=0.0, rec="l2", rec_weight=1e6, k=2)
    tr = Trainer(G, None, obj, quiet(clip_value=0.5))
    x, y = GaussStream().next(4)
    tr.generator_step(x, y)
    assert max(p.grad.abs().max().item() for p in G.parameters()) <= 0.5 + 1e-7


def test_history_and_callback():
    tr = Trainer(TinyG(), TinyD(), get_objective("gan+mr2", k=4), quiet(log_every=2))
    seen = []
    tr.fit(GaussStream(), 6, callback=lambda t: (seen.append(t.step), t.log(metric=t.step * 2.0)), callback_every=3)
    assert seen == [3, 6]
    assert tr.history["step"] == [2.0, 4.0, 6.0]
    assert len(tr.history["g_moment"]) == 3 and len(tr.history["d_real"]) == 3
    assert tr.history["metric"] == [6.0, 12.0]


def _run(steps, ckpt=None, resume_from=None, seed=0):
    torch.manual_seed(123)
    G, D, P = TinyG(), TinyD(), TinyP()
    tr = Trainer(G, D, get_objective("gan+pmr2", k=4), quiet(seed=seed, log_every=1), P=P)
    stream = GaussStream(7)
    if resume_from is not None:
        tr.load(resume_from, stream)
    tr.fit(stream, steps, checkpoint=ckpt, checkpoint_every=2 if ckpt else 0)
    return tr


def test_exact_resume(tmp_path):
    full = _run(6)
    _run(4, ckpt=tmp_path / "ck.pt")
    resumed = _run(6, resume_from=tmp_path / "ck.pt")
    for a, b in zip(full.G.parameters(), resumed.G.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(full.D.parameters(), resumed.D.parameters()):
        assert torch.equal(a, b)
    assert full.history == resumed.history


def _scheduled(stop_at=None, ckpt=None, resume_from=None, steps=8):
    """GAN + repaired MR2 with every schedule on: MR2 acts as MR1 for 3 rounds, no GAN / D for 2, lr decay from half."""
    torch.manual_seed(5)
    obj = get_objective("gan+mr2", k=4, moment_weight=0.3, noise_variance=4e-4, unbiased_precision=True, moment_warmup=3)
    tr = Trainer(TinyG(), TinyD(), obj, quiet(log_every=1, lr_decay_from=0.5, gan_start=2, lr_g=1e-3, lr_d=2e-3))
    stream = GaussStream(3)
    if resume_from is not None:
        tr.load(resume_from, stream)
    tr.fit(stream, steps, checkpoint=ckpt, should_stop=None if stop_at is None else (lambda: tr.step >= stop_at))
    return tr


def test_gan_start_warmup_and_lr_decay():
    from minilib import losses as L
    from minilib.objectives import generator_terms

    tr = _scheduled(steps=0)
    D0 = [p.detach().clone() for p in tr.D.parameters()]
    stream, seen = GaussStream(3), []
    while tr.step < 8:
        tr.set_lr(8)
        seen.append((tr.opt_g.param_groups[0]["lr"], tr.opt_d.param_groups[0]["lr"]))
        tr.train_step(stream)
        if tr.step == 2:  # no D update and no GAN term before gan_start
            assert all(torch.equal(a, b) for a, b in zip(D0, tr.D.parameters())) and "g_gan" not in tr.history
    assert len(tr.history["g_gan"]) == len(tr.history["d_real"]) == 6 and len(tr.history["g_moment"]) == 8
    # pix2pix's schedule: constant for rounds 0-3, then (8 - step) / 4 of the base rate
    assert [g for g, _ in seen] == pytest.approx([1e-3] * 5 + [1e-3 * f for f in (0.75, 0.5, 0.25)])
    assert [d for _, d in seen] == pytest.approx([2e-3 * g / 1e-3 for g, _ in seen])
    # MR2 acts as MR1 before moment_warmup (no step given: the app's engine, no warm-up)
    s, y = torch.randn(3, 4, 2), torch.randn(3, 2)
    obj = tr.objective
    mr1, mr2 = 0.3 * L.mr_loss(s, y, order=1), 0.3 * L.mr_loss(s, y, noise_variance=4e-4, unbiased_precision=True)
    for step, want in ((0, mr1), (2, mr1), (3, mr2), (None, mr2)):
        assert generator_terms(obj, s, y, step=step, adversarial=False)["moment"].item() == pytest.approx(want.item())
    with pytest.raises(ValueError, match="gan_start"):
        Trainer(TinyG(), TinyD(), get_objective("gan"), quiet(gan_start=1))


def test_exact_resume_through_gan_start_warmup_and_lr_decay(tmp_path):
    full = _scheduled()
    for stop in (1, 5):  # inside the GAN-free rounds, and inside the decay
        _scheduled(stop_at=stop, ckpt=tmp_path / f"ck{stop}.pt")
        resumed = _scheduled(resume_from=tmp_path / f"ck{stop}.pt")
        for a, b in zip([*full.G.parameters(), *full.D.parameters()], [*resumed.G.parameters(), *resumed.D.parameters()]):
            assert torch.equal(a, b), stop
        assert full.history == resumed.history
        assert resumed.opt_g.param_groups[0]["lr"] == full.opt_g.param_groups[0]["lr"]


def test_checkpoint_is_weights_only_and_atomic(tmp_path):
    path = tmp_path / "a" / "ck.pt"
    atomic_save({"w": torch.ones(2)}, path)
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(2))

    atomic_save({"obj": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="weights_only|Unsupported global"):
        load_checkpoint(tmp_path / "evil.pt")
    # a save that fails half-way leaves neither a partial file nor a temp file
    with pytest.raises(Exception):
        atomic_save({"obj": lambda: 0}, tmp_path / "b" / "bad.pt")
    assert list((tmp_path / "b").iterdir()) == []
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_with_wrong_objective_is_refused(tmp_path):
    tr = Trainer(TinyG(), TinyD(), get_objective("gan", k=2), quiet())
    tr.save(tmp_path / "c.pt")
    other = Trainer(TinyG(), TinyD(), get_objective("gan+mr1", k=2), quiet())
    with pytest.raises(ValueError, match="objective"):
        other.load(tmp_path / "c.pt")


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    class Bomb(GaussStream):
        def __init__(self):
            super().__init__()
            self.n = 0

        def next(self, n):
            self.n += 1
            x, y = super().next(n)
            if self.n > 8:
                y = y * float("nan")
            return x, y

    tr = Trainer(TinyG(), TinyD(), get_objective("gan+l2", k=2), quiet())
    ck = tmp_path / "ck.pt"
    with pytest.raises(TrainingDiverged, match="step"):
        tr.fit(Bomb(), 100, checkpoint=ck, checkpoint_every=1)
    state = load_checkpoint(ck)
    assert 1 <= state["step"] < tr.step + 1
    assert all(torch.isfinite(v).all() for v in state["G"].values())


def _rng_keys(state):
    return [k for k in ("noise_rng", "torch_rng", "cuda_rng") if k in state]


def test_checkpoint_keeps_rng_states_on_cpu_as_bytes(tmp_path):
    tr = _run(2, ckpt=tmp_path / "ck.pt")
    state = tr.state_dict()
    for key in _rng_keys(state):
        assert state[key].device.type == "cpu" and state[key].dtype == torch.uint8, key


def test_resume_restores_rng_states_loaded_elsewhere(tmp_path, monkeypatch):
    """The CUDA bug on CPU: ``load_checkpoint(map_location=cuda)`` hands set_state RNG tensors it refuses ("RNG state
    must be a torch.ByteTensor"). Here the loaded states are int64 (set_state refuses them the same way) and the
    stream's RNG state is wrapped in a tensor of another dtype too; the resumed run must still be exact."""
    import minilib.train as train_module

    full = _run(6)
    _run(4, ckpt=tmp_path / "ck.pt")
    real_load = train_module.load_checkpoint
    seen = {}

    def load_moved(path, map_location="cpu", **kw):
        seen["map_location"] = map_location
        state = real_load(path, map_location, **kw)
        for key in _rng_keys(state):
            state[key] = state[key].to(torch.int64)
        return state

    monkeypatch.setattr(train_module, "load_checkpoint", load_moved)
    resumed = _run(6, resume_from=tmp_path / "ck.pt")
    assert seen["map_location"] == resumed.device  # loads onto the trainer's device
    for a, b in zip(full.G.parameters(), resumed.G.parameters()):
        assert torch.equal(a, b)
    assert full.history == resumed.history


def test_rng_state_refuses_what_is_not_an_rng_state():
    from minilib.checkpoints import rng_state
    from minilib.errors import CheckpointError

    assert rng_state(torch.arange(5)).dtype == torch.uint8
    for bad in (torch.full((3,), 300), torch.zeros(3), [1, 2], torch.zeros(2, 2, dtype=torch.uint8)):
        with pytest.raises(CheckpointError, match="rng"):
            rng_state(bad, "noise_rng")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_exact_resume_on_cuda(tmp_path):
    """Train on CUDA, checkpoint, resume from the file onto CUDA (map_location = the GPU): same weights and history
    as the uninterrupted run."""
    def run(steps, ckpt=None, resume_from=None):
        torch.manual_seed(123)
        tr = Trainer(TinyG(), TinyD(), get_objective("gan+pmr2", k=4), quiet(log_every=1, device="cuda", amp=False),
                     P=TinyP())
        stream = GaussStream(7)
        if resume_from is not None:
            tr.load(resume_from, stream)
        tr.fit(stream, steps, checkpoint=ckpt, checkpoint_every=2 if ckpt else 0)
        return tr

    full = run(6)
    run(4, ckpt=tmp_path / "ck.pt")
    assert load_checkpoint(tmp_path / "ck.pt")["cuda_rng"].device.type == "cpu"
    resumed = run(6, resume_from=tmp_path / "ck.pt")
    for a, b in zip(full.G.parameters(), resumed.G.parameters()):
        assert torch.equal(a, b)
    assert full.history == resumed.history


class BNG(TinyG):
    """TinyG with a BatchNorm layer (its running_var can diverge while the losses stay finite)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))


def test_divergence_in_buffers_stops_and_keeps_last_good_checkpoint(tmp_path):
    """Losses stay finite, but a BatchNorm running_var becomes Inf at step 3 (as at a huge learning rate): the run
    stops before that state is saved, and the checkpoint of step 2 stays."""
    def poison(t):
        if t.step == 3:
            t.G_core.net[1].running_var[0] = float("inf")

    tr = Trainer(BNG(), TinyD(), get_objective("gan+l2", k=2), quiet())
    ck = tmp_path / "ck.pt"
    with pytest.raises(TrainingDiverged, match="running_var"):
        tr.fit(GaussStream(), 10, callback=poison, callback_every=1, checkpoint=ck, checkpoint_every=1)
    state = load_checkpoint(ck)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["G"].values())
    # without checkpoints the periodic check (every `check_every` steps) finds it too
    tr = Trainer(BNG(), TinyD(), get_objective("gan+l2", k=2), quiet())
    with pytest.raises(TrainingDiverged, match="step 4"):
        tr.fit(GaussStream(), 10, callback=poison, callback_every=1, check_every=2)


def test_load_errors_name_the_file(tmp_path):
    from minilib.errors import CheckpointError, MissingFileError

    good = tmp_path / "good.pt"
    _run(2, ckpt=good)
    data = good.read_bytes()
    cases = {"truncated.pt": data[: len(data) // 2], "random.pt": bytes(range(256)) * 8, "empty.pt": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        assert str(tmp_path / name) in str(info.value), name
        with pytest.raises(CheckpointError, match=name):  # the Trainer's resume says which file too
            _run(4, resume_from=tmp_path / name)
    with pytest.raises(MissingFileError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="objective"):  # another objective: refused, naming the file
        Trainer(TinyG(), TinyD(), get_objective("gan", k=2), quiet()).load(good)


def test_fit_predictor_recovers_conditional_moments_and_keeps_best():
    torch.manual_seed(0)
    P = TinyP()
    out = fit_predictor(P, GaussStream(1), GaussStream(2), steps=1500, batch_size=64, val_every=50,
                        config=TrainConfig(lr_g=1e-2, weight_decay=0.0, progress=False))
    assert out["best_val"] == min(out["history"]["val"])
    x = torch.tensor([[0.5], [-0.5]])
    c, ld = P(x)
    assert torch.allclose(c, torch.tensor([[0.5, -0.5], [-0.5, 0.5]]), atol=0.1)
    assert torch.allclose(ld.exp(), torch.full((2, 2), 0.25), atol=0.06)


def test_fit_predictor_early_stops_on_validation():
    class Shifted(GaussStream):  # validation data the model cannot fit: stopping must happen
        def next(self, n):
            x, y = super().next(n)
            return x, y + 100.0

    P = TinyP()
    out = fit_predictor(P, GaussStream(1), Shifted(2), steps=5000, val_every=10, patience=3,
                        config=TrainConfig(lr_g=1e-2, progress=False))
    assert out["steps"] < 5000


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: get_objective("gan+mr3"), "presets"),
        (lambda: Objective(moment="mr", moment_weight=1.0, moment_order=2, k=1), "k must be >= 2"),
        (lambda: Objective(ms_weight=1.0, k=1), "k must be >= 2"),
        (lambda: Objective(moment="mrx"), "moment"),
        (lambda: Objective(moment_dist="cauchy"), "moment_dist"),
        (lambda: Objective(rec="l3"), "rec"),
        (lambda: Objective(rec_weight=-1.0), "rec_weight"),
        (lambda: Objective(gan_weight=0.0), "no term"),
        (lambda: TrainConfig(lr_g=0.0), "lr_g"),
        (lambda: TrainConfig(lr_d=math.inf), "lr_d"),
        (lambda: TrainConfig(lr_g=math.nan), "lr_g"),
        (lambda: TrainConfig(weight_decay=-1e-4), "weight_decay"),
        (lambda: TrainConfig(clip_value=math.nan), "clip_value"),
        (lambda: Trainer(TinyG(), TinyD(), get_objective("gan"), quiet(device="banana")), "device"),
        (lambda: TrainConfig(g_steps=0), "g_steps"),
        (lambda: TrainConfig(lr_decay_from=1.5), "lr_decay_from"),
        (lambda: TrainConfig(gan_start=-1), "gan_start"),
        (lambda: Objective(moment="pmr", noise_variance=0.1), "Gaussian MR only"),
        (lambda: Objective(moment="mr", unbiased_precision=True, k=3), "k must be >= 4"),
        (lambda: Objective(moment="mr", moment_warmup=-1), "moment_warmup"),
        (lambda: Trainer(TinyG(), None, get_objective("gan"), quiet()), "D is required"),
        (lambda: Trainer(TinyG(), TinyD(), get_objective("gan+pmr2"), quiet()), "P is required"),
        (lambda: Trainer(nn.Linear(2, 2), TinyD(), get_objective("gan"), quiet()), "noise"),
    ],
)
def test_bad_settings(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_presets_have_paper_names():
    for name in ["gan", "l2", "gan+l1", "gan+l2", "gan+mr1", "gan+mr2", "gan+pmr1", "gan+pmr2", "gan+mr1-laplace",
                 "gan+mr2-laplace", "gan+pmr1-laplace", "gan+pmr2-laplace", "gan+ms", "gan+l1+ms"]:
        assert get_objective(name).name == name
    assert get_objective("gan+pmr2-laplace").moment_dist == "laplace"
    assert get_objective("gan+ms", ms_weight=5.0).ms_weight == 5.0
