"""Every public function of losses, hmc, metrics (toy, diversity, ndb, frechet), presgan and evaluate against bad
input: wrong shapes, K < 2, empty tensors, integer dtypes, tensors on another device (``meta`` beside CPU), NaN / Inf,
non-positive sizes and steps. Each call must raise ValueError or TypeError (``minilib.errors`` subclasses included)
whose message names the offending argument: no silent NaN, no silent acceptance, no error from deep inside torch.

NaN / Inf in the losses: the losses check CPU tensors (cheap); on an accelerator the check would cost a device sync
on every training step, so a non-finite input there gives a non-finite loss and the Trainer's guard stops the run
with the last good checkpoint kept (``tests/test_train.py::test_nan_stops_and_keeps_last_good_checkpoint``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn

from minilib import hmc
from minilib import losses as L
from minilib import presgan as PG
from minilib.experiments import evaluate as E
from minilib.metrics import diversity as DV
from minilib.metrics import frechet as FR
from minilib.metrics import ndb as NDB
from minilib.metrics import toy as TM

NAN, INF = math.nan, math.inf
ERRORS = (ValueError, TypeError)


def f(*shape: int, fill: float | None = None, dtype: torch.dtype = torch.float32, device: str = "cpu",
      seed: int = 0) -> torch.Tensor:
    """A float tensor of ``shape`` (random normal, or ``fill``), optionally another dtype or device."""
    if device == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    t = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) if fill is None else torch.full(shape, fill)
    return t.to(dtype)


def with_value(t: torch.Tensor, value: float) -> torch.Tensor:
    """``t`` with its first element replaced by ``value`` (NaN / Inf)."""
    t = t.clone()
    t.view(-1)[0] = value
    return t


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    """Values in [0, 1] (images)."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@dataclass
class Case:
    id: str
    call: Callable[[], Any]
    names: tuple[str, ...]
    errors: tuple[type[BaseException], ...] = ERRORS


CASES: list[Case] = []


def case(id: str, call: Callable[[], Any], *names: str, errors: tuple[type[BaseException], ...] = ERRORS) -> None:
    CASES.append(Case(id, call, names, errors))


# ------------------------------------------------------------------------------------------------ losses
S, Y = f(2, 3, 4), f(2, 4, seed=1)  # K = 3 samples of a 4-d event for 2 inputs
S1 = f(2, 1, 4)
LD = f(2, 4, seed=2)
META = dict(device="meta")

case("sample_moments/1d", lambda: L.sample_moments(f(4)), "samples")
case("sample_moments/K1", lambda: L.sample_moments(S1), "samples")
case("sample_moments/K1-laplace", lambda: L.sample_moments(S1, "laplace"), "samples")
case("sample_moments/empty", lambda: L.sample_moments(f(0, 3, 4)), "samples")
case("sample_moments/int", lambda: L.sample_moments(torch.ones(2, 3, 4, dtype=torch.long)), "samples")
case("sample_moments/nan", lambda: L.sample_moments(with_value(S, NAN)), "samples")
case("sample_moments/inf", lambda: L.sample_moments(with_value(S, INF)), "samples")
case("sample_moments/dist", lambda: L.sample_moments(S, "cauchy"), "dist")
case("sample_moments/list", lambda: L.sample_moments([[1.0, 2.0]]), "samples")

case("mle_loss/center-shape", lambda: L.mle_loss(f(2, 3), LD, Y), "center")
case("mle_loss/logd-shape", lambda: L.mle_loss(Y, f(2, 3), Y), "log_dispersion")
case("mle_loss/y-int", lambda: L.mle_loss(Y, LD, torch.ones(2, 4, dtype=torch.long)), "y")
case("mle_loss/y-nan", lambda: L.mle_loss(Y, LD, with_value(Y, NAN)), "y")
case("mle_loss/center-nan", lambda: L.mle_loss(with_value(Y, NAN), LD, Y), "center")
case("mle_loss/logd-inf", lambda: L.mle_loss(Y, with_value(LD, INF), Y), "log_dispersion")
case("mle_loss/logd-minus-inf", lambda: L.mle_loss(Y, with_value(LD, -INF), Y), "log_dispersion")
case("mle_loss/center-meta", lambda: L.mle_loss(f(2, 4, **META), LD, Y), "center")
case("mle_loss/empty", lambda: L.mle_loss(f(0, 4), f(0, 4), f(0, 4)), "y")
case("mle_loss/dist", lambda: L.mle_loss(Y, LD, Y, "student"), "dist")
case("mle_loss/center-list", lambda: L.mle_loss([0.0], LD, Y), "center")

case("mr_loss/K1-order2", lambda: L.mr_loss(S1, Y), "samples")
case("mr_loss/K1-laplace1", lambda: L.mr_loss(S1, Y, "laplace", 1), "samples")
case("mr_loss/y-shape", lambda: L.mr_loss(S, f(2, 5)), "y")
case("mr_loss/samples-int", lambda: L.mr_loss(torch.ones(2, 3, 4, dtype=torch.long), Y), "samples")
case("mr_loss/y-nan", lambda: L.mr_loss(S, with_value(Y, NAN)), "y")
case("mr_loss/samples-inf", lambda: L.mr_loss(with_value(S, INF), Y), "samples")
case("mr_loss/samples-nan-laplace", lambda: L.mr_loss(with_value(S, NAN), Y, "laplace"), "samples")
case("mr_loss/y-meta", lambda: L.mr_loss(S, f(2, 4, **META)), "y")
case("mr_loss/empty", lambda: L.mr_loss(f(0, 3, 4), f(0, 4)), "samples")
case("mr_loss/order3", lambda: L.mr_loss(S, Y, order=3), "order")
case("mr_loss/min-disp-neg", lambda: L.mr_loss(S, Y, min_dispersion=-1.0), "min_dispersion")
case("mr_loss/min-disp-nan", lambda: L.mr_loss(S, Y, min_dispersion=NAN), "min_dispersion")
case("mr_loss/min-disp-inf", lambda: L.mr_loss(S, Y, min_dispersion=INF), "min_dispersion")
case("mr_loss/dist", lambda: L.mr_loss(S, Y, dist="normal"), "dist")
case("mr_loss/samples-1d", lambda: L.mr_loss(f(4), Y), "samples")

case("proxy_mr/center-shape", lambda: L.proxy_mr_loss(S, f(2, 5), LD), "pred_center")
case("proxy_mr/no-logd", lambda: L.proxy_mr_loss(S, Y), "pred_log_dispersion")
case("proxy_mr/logd-shape", lambda: L.proxy_mr_loss(S, Y, f(3, 4)), "pred_log_dispersion")
case("proxy_mr/center-nan", lambda: L.proxy_mr_loss(S, with_value(Y, NAN), LD), "pred_center")
case("proxy_mr/logd-inf", lambda: L.proxy_mr_loss(S, Y, with_value(LD, INF)), "pred_log_dispersion")
case("proxy_mr/samples-int", lambda: L.proxy_mr_loss(torch.ones(2, 3, 4, dtype=torch.int32), Y, LD), "samples")
case("proxy_mr/center-meta", lambda: L.proxy_mr_loss(S, f(2, 4, **META), LD), "pred_center")
case("proxy_mr/K1", lambda: L.proxy_mr_loss(S1, Y, LD), "samples")
case("proxy_mr/empty", lambda: L.proxy_mr_loss(f(0, 3, 4), f(0, 4), f(0, 4)), "samples")
case("proxy_mr/order0", lambda: L.proxy_mr_loss(S, Y, LD, order=0), "order")
case("proxy_mr/center-int", lambda: L.proxy_mr_loss(S, torch.ones(2, 4, dtype=torch.long), LD), "pred_center")
case("proxy_mr/samples-nan", lambda: L.proxy_mr_loss(with_value(S, NAN), Y, LD, "laplace"), "samples")

Y1, Y2, Z1, Z2 = f(2, 4), f(2, 4, seed=1), f(2, 3, seed=2), f(2, 3, seed=3)
case("mode_seeking/same-z", lambda: L.mode_seeking_loss(Y1, Y2, Z1, Z1), "z1", "z2")
case("mode_seeking/equal-z", lambda: L.mode_seeking_loss(Y1, Y2, Z1, Z1.clone()), "z1", "z2")
case("mode_seeking/y2-shape", lambda: L.mode_seeking_loss(Y1, f(2, 5), Z1, Z2), "y2")
case("mode_seeking/z2-shape", lambda: L.mode_seeking_loss(Y1, Y2, Z1, f(2, 4)), "z2")
case("mode_seeking/eps0", lambda: L.mode_seeking_loss(Y1, Y2, Z1, Z2, eps=0.0), "eps")
case("mode_seeking/eps-nan", lambda: L.mode_seeking_loss(Y1, Y2, Z1, Z2, eps=NAN), "eps")
case("mode_seeking/y1-nan", lambda: L.mode_seeking_loss(with_value(Y1, NAN), Y2, Z1, Z2), "y1")
case("mode_seeking/z1-empty-tuple", lambda: L.mode_seeking_loss(Y1, Y2, (), Z2), "z1")
case("mode_seeking/y1-int", lambda: L.mode_seeking_loss(torch.ones(2, 4, dtype=torch.long), Y2, Z1, Z2), "y1")
case("mode_seeking/y2-meta", lambda: L.mode_seeking_loss(Y1, f(2, 4, **META), Z1, Z2), "y2")
case("mode_seeking/empty", lambda: L.mode_seeking_loss(f(0, 4), f(0, 4), f(0, 3), f(0, 3)), "y1")
case("mode_seeking/z1-nan", lambda: L.mode_seeking_loss(Y1, Y2, with_value(Z1, NAN), Z2), "z1")
case("mode_seeking/z1-ragged", lambda: L.mode_seeking_loss(Y1, Y2, (f(2, 2), f(3, 2)), Z2), "z1")
case("mode_seeking/z-batch", lambda: L.mode_seeking_loss(Y1, Y2, f(3, 3), f(2, 3, seed=1)), "z2")

case("reconstruction/shape", lambda: L.reconstruction_loss(f(2, 5), Y), "pred")
case("reconstruction/p3", lambda: L.reconstruction_loss(Y, Y, p=3), "p")
case("reconstruction/pred-int", lambda: L.reconstruction_loss(torch.ones(2, 4, dtype=torch.long), Y), "pred")
case("reconstruction/y-nan", lambda: L.reconstruction_loss(Y1, with_value(Y, NAN)), "y")
case("reconstruction/pred-meta", lambda: L.reconstruction_loss(f(2, 4, **META), Y), "pred")
case("reconstruction/empty", lambda: L.reconstruction_loss(f(0, 4), f(0, 4)), "pred")
case("reconstruction/y-list", lambda: L.reconstruction_loss(Y, [0.0]), "y")
case("reconstruction/pred-inf", lambda: L.reconstruction_loss(with_value(S, INF), Y), "pred")

LG = f(6)
case("gan_loss/kind", lambda: L.gan_loss(LG, True, "wasserstein"), "kind")
case("gan_loss/real-str", lambda: L.gan_loss(LG, "yes"), "real")
case("gan_loss/generator-fake", lambda: L.gan_loss(LG, False, generator=True), "real")
case("gan_loss/int", lambda: L.gan_loss(torch.ones(6, dtype=torch.long), True), "logits")
case("gan_loss/nan", lambda: L.gan_loss(with_value(LG, NAN), True), "logits")
case("gan_loss/inf", lambda: L.gan_loss(with_value(LG, INF), False, "lsgan"), "logits")
case("gan_loss/empty", lambda: L.gan_loss(f(0), True), "logits")
case("gan_loss/list", lambda: L.gan_loss([0.5], True), "logits")


# ------------------------------------------------------------------------------------------------ hmc
def gauss(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * z.pow(2).sum(1)


Zc, Pc = f(2, 3), f(2, 3, seed=1)
case("log_prob_and_grad/shape", lambda: hmc.log_prob_and_grad(lambda z: z.sum(), Zc), "log_prob")
case("log_prob_and_grad/not-tensor", lambda: hmc.log_prob_and_grad(lambda z: 0.0, Zc), "log_prob")
case("log_prob_and_grad/z-int", lambda: hmc.log_prob_and_grad(gauss, torch.ones(2, 3, dtype=torch.long)), "z")
case("log_prob_and_grad/z-list", lambda: hmc.log_prob_and_grad(gauss, [[0.0]]), "z")
case("log_prob_and_grad/not-callable", lambda: hmc.log_prob_and_grad(3, Zc), "log_prob")
case("log_prob_and_grad/empty", lambda: hmc.log_prob_and_grad(gauss, f(0, 3)), "z")

case("leapfrog/steps0", lambda: hmc.leapfrog(gauss, Zc, Pc, 0.1, 0), "num_steps")
case("leapfrog/steps-neg", lambda: hmc.leapfrog(gauss, Zc, Pc, 0.1, -1), "num_steps")
case("leapfrog/steps-float", lambda: hmc.leapfrog(gauss, Zc, Pc, 0.1, 1.5), "num_steps")
case("leapfrog/step-nan", lambda: hmc.leapfrog(gauss, Zc, Pc, NAN, 2), "step_size")
case("leapfrog/step0", lambda: hmc.leapfrog(gauss, Zc, Pc, 0.0, 2), "step_size")
case("leapfrog/step-neg", lambda: hmc.leapfrog(gauss, Zc, Pc, -0.1, 2), "step_size")
case("leapfrog/step-inf", lambda: hmc.leapfrog(gauss, Zc, Pc, INF, 2), "step_size")
case("leapfrog/step-shape", lambda: hmc.leapfrog(gauss, Zc, Pc, torch.full((3,), 0.1), 2), "step_size")
case("leapfrog/p-shape", lambda: hmc.leapfrog(gauss, Zc, f(2, 4), 0.1, 2), "p")
case("leapfrog/grad-shape", lambda: hmc.leapfrog(gauss, Zc, Pc, 0.1, 2, grad=f(2, 4)), "grad")
case("leapfrog/z-int", lambda: hmc.leapfrog(gauss, torch.ones(2, 3, dtype=torch.long), Pc, 0.1, 2), "z")
case("leapfrog/p-meta", lambda: hmc.leapfrog(gauss, Zc, f(2, 3, **META), 0.1, 2), "p")
case("leapfrog/z-nan", lambda: hmc.leapfrog(gauss, with_value(Zc, NAN), Pc, 0.1, 2), "z")
case("leapfrog/p-nan", lambda: hmc.leapfrog(gauss, Zc, with_value(Pc, NAN), 0.1, 2), "p")

case("hamiltonian/lp-shape", lambda: hmc.hamiltonian(f(3), Pc), "log_prob_value")
case("hamiltonian/p-0d", lambda: hmc.hamiltonian(f(2), torch.tensor(1.0)), "p")
case("hamiltonian/p-int", lambda: hmc.hamiltonian(f(2), torch.ones(2, 3, dtype=torch.long)), "p")
case("hamiltonian/p-meta", lambda: hmc.hamiltonian(f(2), f(2, 3, **META)), "p")
case("hamiltonian/lp-list", lambda: hmc.hamiltonian([0.0, 1.0], Pc), "log_prob_value")

SAMPLE = dict(num_samples=2, burn_in=1, step_size=0.1, num_leapfrog=2)


def run_hmc(**kw: Any) -> hmc.HMCResult:
    init = kw.pop("init", Zc)
    log_prob = kw.pop("log_prob", gauss)
    return hmc.sample(log_prob, init, **{**SAMPLE, **kw})


case("sample/leapfrog0", lambda: run_hmc(num_leapfrog=0), "num_leapfrog")
case("sample/leapfrog-float", lambda: run_hmc(num_leapfrog=2.0), "num_leapfrog")
case("sample/num-samples-neg", lambda: run_hmc(num_samples=-1), "num_samples")
case("sample/burn-in-neg", lambda: run_hmc(burn_in=-1), "burn_in")
case("sample/nothing", lambda: run_hmc(num_samples=0, burn_in=0), "num_samples")
case("sample/step-nan", lambda: run_hmc(step_size=NAN), "step_size")
case("sample/step0", lambda: run_hmc(step_size=0.0), "step_size")
case("sample/step-shape", lambda: run_hmc(step_size=torch.full((5,), 0.1)), "step_size")
case("sample/target1", lambda: run_hmc(target_accept=1.0), "target_accept")
case("sample/target-nan", lambda: run_hmc(target_accept=NAN), "target_accept")
case("sample/init-int", lambda: run_hmc(init=torch.ones(2, 3, dtype=torch.long)), "init")
case("sample/init-nan", lambda: run_hmc(init=with_value(Zc, NAN)), "init")
case("sample/init-empty", lambda: run_hmc(init=f(0, 3)), "init")
case("sample/init-list", lambda: run_hmc(init=[[0.0]]), "init")
case("sample/log-prob-inf", lambda: run_hmc(log_prob=lambda z: gauss(z) + INF), "log_prob")
case("sample/init-meta", lambda: run_hmc(init=f(2, 3, **META)), "init")

case("ess/S3", lambda: hmc.effective_sample_size(f(3, 2, 1)), "samples")
case("ess/1d", lambda: hmc.effective_sample_size(f(10)), "samples")
case("ess/int", lambda: hmc.effective_sample_size(torch.ones(10, 2, dtype=torch.long)), "samples")
case("ess/nan", lambda: hmc.effective_sample_size(with_value(f(10, 2), NAN)), "samples")
case("ess/no-chains", lambda: hmc.effective_sample_size(f(10, 0, 2)), "samples")
case("ess/list", lambda: hmc.effective_sample_size([[0.0]]), "samples")

# ------------------------------------------------------------------------------------------------ metrics: toy
MODES, PTS = f(4, 2), f(20, 2, seed=1)
case("assign_modes/d", lambda: TM.assign_modes(PTS, f(4, 3)), "samples", "modes")
case("assign_modes/1d", lambda: TM.assign_modes(f(20), MODES), "samples")
case("assign_modes/modes-empty", lambda: TM.assign_modes(PTS, f(0, 2)), "modes")
case("assign_modes/samples-nan", lambda: TM.assign_modes(with_value(PTS, NAN), MODES), "samples")
case("assign_modes/modes-meta", lambda: TM.assign_modes(PTS, f(4, 2, **META)), "modes")
case("assign_modes/list", lambda: TM.assign_modes([[0.0, 1.0]], MODES), "samples")

case("mode_stats/weights-neg", lambda: TM.mode_stats(PTS, MODES, torch.tensor([0.5, 0.5, 0.5, -0.5])), "weights")
case("mode_stats/weights-nan", lambda: TM.mode_stats(PTS, MODES, torch.tensor([0.25, 0.25, 0.25, NAN])), "weights")
case("mode_stats/weights-len", lambda: TM.mode_stats(PTS, MODES, torch.full((3,), 1 / 3)), "weights")
case("mode_stats/weights-zero", lambda: TM.mode_stats(PTS, MODES, torch.zeros(4)), "weights")
case("mode_stats/weights-sum", lambda: TM.mode_stats(PTS, MODES, torch.ones(4)), "weights")
case("mode_stats/std0", lambda: TM.mode_stats(PTS, MODES, std=0.0), "std")
case("mode_stats/std-nan", lambda: TM.mode_stats(PTS, MODES, std=NAN), "std")
case("mode_stats/threshold-neg", lambda: TM.mode_stats(PTS, MODES, threshold=-1.0), "threshold")
case("mode_stats/min-share", lambda: TM.mode_stats(PTS, MODES, min_share=2.0), "min_share")
case("mode_stats/samples-empty", lambda: TM.mode_stats(f(0, 2), MODES), "samples")
case("mode_stats/samples-nan", lambda: TM.mode_stats(with_value(PTS, NAN), MODES), "samples")
case("mode_stats/modes-empty", lambda: TM.mode_stats(PTS, f(0, 2)), "modes")
case("mode_stats/weights-meta", lambda: TM.mode_stats(PTS, MODES, f(4, **META)), "weights")

A1, B1 = f(3, 5), f(3, 7, seed=1)
case("w1/lead", lambda: TM.wasserstein_1d(A1, f(2, 7)), "a", "b")
case("w1/empty", lambda: TM.wasserstein_1d(f(3, 0), B1), "a")
case("w1/a-nan", lambda: TM.wasserstein_1d(with_value(A1, NAN), B1), "a")
case("w1/b-inf", lambda: TM.wasserstein_1d(A1, with_value(B1, INF)), "b")
case("w1/0d", lambda: TM.wasserstein_1d(torch.tensor(1.0), B1), "a")
case("w1/b-meta", lambda: TM.wasserstein_1d(A1, f(3, 7, **META)), "b")

case("cond_w1/samples-d2", lambda: TM.conditional_w1(f(3, 5, 2), f(3, 7)), "samples")
case("cond_w1/true-1d", lambda: TM.conditional_w1(f(3, 5), f(7)), "true_samples")
case("cond_w1/T", lambda: TM.conditional_w1(f(3, 5), f(4, 7)), "true_samples")
case("cond_w1/samples-nan", lambda: TM.conditional_w1(with_value(f(3, 5), NAN), f(3, 7)), "samples")
case("cond_w1/true-empty", lambda: TM.conditional_w1(f(3, 5), f(3, 0)), "true_samples")

case("std_ratio/K1", lambda: TM.std_ratio(f(3, 1, 2), torch.ones(3, 2)), "samples")
case("std_ratio/true-zero", lambda: TM.std_ratio(f(3, 4, 2), torch.zeros(3, 2)), "true_std")
case("std_ratio/true-nan", lambda: TM.std_ratio(f(3, 4, 2), with_value(torch.ones(3, 2), NAN)), "true_std")
case("std_ratio/true-shape", lambda: TM.std_ratio(f(3, 4, 2), torch.ones(2, 2)), "true_std")
case("std_ratio/samples-nan", lambda: TM.std_ratio(with_value(f(3, 4, 2), NAN), torch.ones(3, 2)), "samples")
case("std_ratio/samples-2d", lambda: TM.std_ratio(f(3, 4), torch.ones(3, 2)), "samples")
case("std_ratio/true-meta", lambda: TM.std_ratio(f(3, 4, 2), f(3, 2, **META)), "true_std")

# ------------------------------------------------------------------------------------------------ metrics: diversity
IMGS = unit(2, 20, 3, 4, 4) * 2 - 1  # mrgan protocol: K = 20
A4, B4 = unit(3, 3, 4, 4), unit(3, 3, 4, 4, seed=1)
case("protocol/num-samples-1", lambda: DV.DiversityProtocol("x", 1, 1, "random"), "num_samples")
case("protocol/num-samples-float", lambda: DV.DiversityProtocol("x", 2.5, 1, "random"), "num_samples")
case("protocol/num-pairs-0", lambda: DV.DiversityProtocol("x", 4, 0, "random"), "num_pairs")
case("protocol/pairing", lambda: DV.DiversityProtocol("x", 4, 2, "all"), "pairing")
case("protocol_pairs/name", lambda: DV.protocol_pairs("lpips"), "protocol")
case("protocol_pairs/int", lambda: DV.protocol_pairs(3), "protocol")

case("to_signed_range/nan", lambda: DV.to_signed_range(with_value(A4, NAN), "[0,1]"), "samples")
case("to_signed_range/range", lambda: DV.to_signed_range(A4 * 3, "[0,1]"), "samples")
case("to_signed_range/which", lambda: DV.to_signed_range(A4, "[0,255]"), "input_range")
case("to_signed_range/empty", lambda: DV.to_signed_range(f(0, 3, 4, 4)), "samples")
case("to_signed_range/list", lambda: DV.to_signed_range([0.5]), "samples")
case("to_signed_range/uint8", lambda: DV.to_signed_range(torch.ones(1, 3, 4, 4, dtype=torch.uint8), "[0,1]"), "samples")
case("to_signed_range/name", lambda: DV.to_signed_range(with_value(A4, INF), "[0,1]", "images_a"), "images_a")

case("pixel_distance/p3", lambda: DV.pixel_distance(A4, B4, p=3), "p")
case("pixel_distance/shape", lambda: DV.pixel_distance(A4, unit(3, 3, 4, 5)), "b")
case("pixel_distance/mask-zero", lambda: DV.pixel_distance(A4, B4, mask=torch.zeros(3, 1, 4, 4)), "mask")
case("pixel_distance/mask-shape", lambda: DV.pixel_distance(A4, B4, mask=torch.ones(3, 1, 5, 4)), "mask")
case("pixel_distance/a-nan", lambda: DV.pixel_distance(with_value(A4, NAN), B4), "a")
case("pixel_distance/b-meta", lambda: DV.pixel_distance(A4, f(3, 3, 4, 4, **META)), "b")
case("pixel_distance/a-3d", lambda: DV.pixel_distance(unit(3, 4, 4), unit(3, 4, 4)), "a")

case("pairwise/chunk0", lambda: DV.pairwise_diversity(IMGS, chunk=0), "chunk")
case("pairwise/chunk-neg", lambda: DV.pairwise_diversity(IMGS, chunk=-1), "chunk")
case("pairwise/K", lambda: DV.pairwise_diversity(IMGS[:, :5]), "samples")
case("pairwise/4d", lambda: DV.pairwise_diversity(IMGS[0]), "samples")
case("pairwise/confidence", lambda: DV.pairwise_diversity(IMGS, confidence=1.0), "confidence")
case("pairwise/mask-zero", lambda: DV.pairwise_diversity(IMGS, mask=torch.zeros(4, 4)), "mask")
case("pairwise/mask-values", lambda: DV.pairwise_diversity(IMGS, mask=torch.full((4, 4), 0.5)), "mask")
case("pairwise/nan", lambda: DV.pairwise_diversity(with_value(IMGS, NAN)), "samples")
case("pairwise/empty", lambda: DV.pairwise_diversity(f(0, 20, 3, 4, 4)), "samples")
case("pairwise/distance", lambda: DV.pairwise_diversity(IMGS, distance="l1"), "distance")
case("pairwise/int", lambda: DV.pairwise_diversity(torch.zeros(2, 20, 3, 4, 4, dtype=torch.long)), "samples")
case("pairwise/mask-meta", lambda: DV.pairwise_diversity(IMGS, mask=f(4, 4, **META)), "mask")
case("pairwise/protocol", lambda: DV.pairwise_diversity(IMGS, "bicycle"), "protocol")

case("lpips_diversity/range-name", lambda: DV.lpips_diversity(IMGS, input_range="[0,255]"), "input_range")
case("lpips_diversity/range", lambda: DV.lpips_diversity(IMGS * 3), "samples")
case("lpips_diversity/nan", lambda: DV.lpips_diversity(with_value(IMGS, NAN)), "samples")
case("lpips_diversity/net", lambda: DV.lpips_diversity(IMGS, net="resnet"), "net")
case("lpips_diversity/version", lambda: DV.lpips_diversity(IMGS, version="0.2"), "version")
case("load_lpips/net", lambda: DV.load_lpips("resnet"), "net")
case("load_lpips/version", lambda: DV.load_lpips("alex", "1.0"), "version")
case("load_lpips/weights", lambda: DV.load_lpips("alex", backbone_weights="no/such/file.pth"), "backbone_weights",
     errors=(ValueError, TypeError, FileNotFoundError, RuntimeError))

# ------------------------------------------------------------------------------------------------ metrics: ndb, frechet
TRAIN = f(30, 4)
BINS = NDB.NDBBins(f(3, 4).numpy().astype(np.float64), np.full(3, 1 / 3), 30, 0)
case("fit_ndb_bins/k1", lambda: NDB.fit_ndb_bins(TRAIN, 1), "k")
case("fit_ndb_bins/k-big", lambda: NDB.fit_ndb_bins(TRAIN, 31), "k")
case("fit_ndb_bins/k-float", lambda: NDB.fit_ndb_bins(TRAIN, 2.5), "k")
case("fit_ndb_bins/1d", lambda: NDB.fit_ndb_bins(f(30), 3), "train")
case("fit_ndb_bins/empty", lambda: NDB.fit_ndb_bins(f(0, 4), 3), "train")
case("fit_ndb_bins/nan", lambda: NDB.fit_ndb_bins(with_value(TRAIN, NAN), 3), "train")

case("ndb_jsd/alpha0", lambda: NDB.ndb_jsd(BINS, f(10, 4), alpha=0.0), "alpha")
case("ndb_jsd/alpha-nan", lambda: NDB.ndb_jsd(BINS, f(10, 4), alpha=NAN), "alpha")
case("ndb_jsd/features", lambda: NDB.ndb_jsd(BINS, f(10, 5)), "samples")
case("ndb_jsd/empty", lambda: NDB.ndb_jsd(BINS, f(0, 4)), "samples")
case("ndb_jsd/nan", lambda: NDB.ndb_jsd(BINS, with_value(f(10, 4), NAN)), "samples")
case("ndb_jsd/bins", lambda: NDB.ndb_jsd("bins", f(10, 4)), "bins")

case("jsd/negative", lambda: NDB.jensen_shannon(np.array([0.5, -0.5, 1.0]), np.ones(3)), "p")
case("jsd/shape", lambda: NDB.jensen_shannon(np.ones(3), np.ones(4)), "q")
case("jsd/nan", lambda: NDB.jensen_shannon(np.array([0.5, NAN]), np.ones(2)), "p")
case("jsd/zero", lambda: NDB.jensen_shannon(np.zeros(3), np.ones(3)), "p")
case("jsd/q-inf", lambda: NDB.jensen_shannon(np.ones(3), np.array([1.0, INF, 1.0])), "q")

case("gaussian_statistics/one-row", lambda: FR.gaussian_statistics(f(1, 3)), "features")
case("gaussian_statistics/1d", lambda: FR.gaussian_statistics(f(5)), "features")
case("gaussian_statistics/nan", lambda: FR.gaussian_statistics(with_value(f(5, 3), NAN)), "features")
case("gaussian_statistics/empty", lambda: FR.gaussian_statistics(f(0, 3)), "features")

MU, SIG = np.zeros(3), np.eye(3)
case("frechet/mu2-shape", lambda: FR.frechet_distance(MU, SIG, np.zeros(4), SIG), "mu2")
case("frechet/sigma1-shape", lambda: FR.frechet_distance(MU, np.ones((3, 2)), MU, SIG), "sigma1")
case("frechet/mu1-nan", lambda: FR.frechet_distance(np.array([0.0, NAN, 0.0]), SIG, MU, SIG), "mu1")
case("frechet/sigma2-inf", lambda: FR.frechet_distance(MU, SIG, MU, np.where(SIG > 0, INF, 0.0)), "sigma2")
case("frechet/sigma2-shape", lambda: FR.frechet_distance(MU, SIG, MU, np.eye(4)), "sigma2")
case("frechet_features/D", lambda: FR.frechet_distance_features(f(5, 3), f(5, 4)), "f2")
case("frechet_features/one-row", lambda: FR.frechet_distance_features(f(1, 3), f(5, 3)), "f1")
case("frechet_features/nan", lambda: FR.frechet_distance_features(f(5, 3), with_value(f(5, 3), NAN)), "f2")

DIG = unit(4, 1, 8, 8) * 2 - 1
case("digit_fd/range", lambda: FR.digit_frechet_distance(DIG * 3, DIG), "images_a")
case("digit_fd/nan", lambda: FR.digit_frechet_distance(DIG, with_value(DIG, NAN)), "images_b")
case("digit_fd/shape", lambda: FR.digit_frechet_distance(unit(4, 3, 8, 8), DIG), "images_a")
case("inception_fid/batch", lambda: FR.inception_fid(A4, B4, "[0,1]", batch_size=0), "batch_size")
case("inception_fid/range", lambda: FR.inception_fid(A4, B4, "[0,2]"), "input_range")
case("inception_fid/nan", lambda: FR.inception_fid(with_value(A4, NAN), B4, "[0,1]"), "images_a")
case("inception_fid/shape", lambda: FR.inception_fid(unit(3, 1, 4, 4), B4, "[0,1]"), "images_a")


# ------------------------------------------------------------------------------------------------ presgan
class Enc(nn.Module):
    """q(z | y) = N(mean, std^2): y [N, 3] -> (mean, log_std) [N, 2]."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(3, 4)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, s = self.net(y).chunk(2, 1)
        return m, s


class BNGen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))

    def noise(self, n, device=None, generator=None):
        return torch.randn(n, 2, device=device, generator=generator)

    def forward(self, x, z):
        return self.net(z)


torch.manual_seed(0)
NG, ENC = PG.NoisyGenerator(PG.LinearGenerator(2, 3), (3,)), Enc()
X0, YP, ZP = torch.zeros(4, 0), f(4, 3), f(4, 2, seed=1)
case("NoisyGenerator/base", lambda: PG.NoisyGenerator(nn.Linear(2, 3), (3,)), "base")
case("NoisyGenerator/sigma-min0", lambda: PG.NoisyGenerator(PG.LinearGenerator(2, 3), (3,), sigma_min=0.0), "sigma_min")
case("NoisyGenerator/sigma-init", lambda: PG.NoisyGenerator(PG.LinearGenerator(2, 3), (3,), sigma_init=2.0), "sigma_init")
case("NoisyGenerator/event0", lambda: PG.NoisyGenerator(PG.LinearGenerator(2, 3), (0,)), "event_shape")
case("NoisyGenerator/sigma-max-nan", lambda: PG.NoisyGenerator(PG.LinearGenerator(2, 3), (3,), sigma_max=NAN), "sigma_max")
case("LinearGenerator/nz0", lambda: PG.LinearGenerator(0, 3), "nz")
case("LinearGenerator/dim-neg", lambda: PG.LinearGenerator(2, -1), "dim")
case("LinearGenerator/nz-float", lambda: PG.LinearGenerator(2.5, 3), "nz")

case("posterior/G", lambda: PG.posterior_log_prob(nn.Linear(2, 3), X0, YP), "G")
case("posterior/y-shape", lambda: PG.posterior_log_prob(NG, X0, f(4, 5)), "y")
case("posterior/y-nan", lambda: PG.posterior_log_prob(NG, X0, with_value(YP, NAN)), "y")
case("posterior/x-batch", lambda: PG.posterior_log_prob(NG, torch.zeros(3, 0), YP), "x")

case("entropy/z-batch", lambda: PG.entropy_surrogate(NG, X0, YP, f(3, 2)), "z")
case("entropy/leapfrog0", lambda: PG.entropy_surrogate(NG, X0, YP, ZP, num_leapfrog=0), "num_leapfrog")
case("entropy/y-nan", lambda: PG.entropy_surrogate(NG, X0, with_value(YP, NAN), ZP), "y")
case("entropy/batchnorm", lambda: PG.entropy_surrogate(PG.NoisyGenerator(BNGen(), (3,)), X0, YP, ZP), "G")
case("entropy/step-nan", lambda: PG.entropy_surrogate(NG, X0, YP, ZP, step_size=NAN), "step_size")
case("entropy/G", lambda: PG.entropy_surrogate(PG.LinearGenerator(2, 3), X0, YP, ZP), "G")

case("PresGANEntropy/G", lambda: PG.PresGANEntropy(PG.LinearGenerator(2, 3)), "G")
case("PresGANEntropy/step0", lambda: PG.PresGANEntropy(NG, step_size=0.0), "step_size")
case("PresGANEntropy/step-nan", lambda: PG.PresGANEntropy(NG, step_size=NAN), "step_size")
case("PresGANEntropy/target", lambda: PG.PresGANEntropy(NG, target_accept=1.5), "target_accept")
case("PresGANEntropy/leapfrog0", lambda: PG.PresGANEntropy(NG, num_leapfrog=0), "num_leapfrog")
case("PresGANEntropy/burn-in-neg", lambda: PG.PresGANEntropy(NG, burn_in=-1), "burn_in")
case("PresGANEntropy/nothing", lambda: PG.PresGANEntropy(NG, burn_in=0, num_samples=0), "num_samples")

D3 = nn.Linear(3, 1)
case("make_trainer/sigma-lr0", lambda: PG.make_presgan_trainer(NG, D3, sigma_lr=0.0), "sigma_lr")
case("make_trainer/sigma-lr-inf", lambda: PG.make_presgan_trainer(NG, D3, sigma_lr=INF), "sigma_lr")
case("make_trainer/sigma-lr-nan", lambda: PG.make_presgan_trainer(NG, D3, sigma_lr=NAN), "sigma_lr")
case("make_trainer/unknown", lambda: PG.make_presgan_trainer(NG, D3, leapfrogs=3), "leapfrogs")
case("make_trainer/objective", lambda: PG.make_presgan_trainer(NG, D3, objective="presgan"), "objective")
case("make_trainer/G", lambda: PG.make_presgan_trainer(PG.LinearGenerator(2, 3), D3), "G")

case("elbo/y-shape", lambda: PG.elbo(NG, ENC, f(4, 5)), "y")
case("elbo/y-nan", lambda: PG.elbo(NG, ENC, with_value(YP, NAN)), "y")
case("elbo/y-int", lambda: PG.elbo(NG, ENC, torch.ones(4, 3, dtype=torch.long)), "y")
case("elbo/y-empty", lambda: PG.elbo(NG, ENC, f(0, 3)), "y")

case("fit_encoder/steps0", lambda: PG.fit_encoder(NG, ENC, YP, steps=0), "steps")
case("fit_encoder/batch0", lambda: PG.fit_encoder(NG, ENC, YP, batch_size=0), "batch_size")
case("fit_encoder/lr0", lambda: PG.fit_encoder(NG, ENC, YP, lr=0.0), "lr")
case("fit_encoder/lr-nan", lambda: PG.fit_encoder(NG, ENC, YP, lr=NAN), "lr")
case("fit_encoder/data-shape", lambda: PG.fit_encoder(NG, ENC, f(4, 5)), "data")
case("fit_encoder/data-nan", lambda: PG.fit_encoder(NG, ENC, with_value(YP, NAN), steps=1), "data")
case("fit_encoder/data-empty", lambda: PG.fit_encoder(NG, ENC, f(0, 3), steps=1), "data")

case("log_likelihood/samples0", lambda: PG.log_likelihood(NG, ENC, YP, num_samples=0), "num_samples")
case("log_likelihood/overdispersion", lambda: PG.log_likelihood(NG, ENC, YP, overdispersion=0.5), "overdispersion")
case("log_likelihood/chunk0", lambda: PG.log_likelihood(NG, ENC, YP, num_samples=4, chunk=0), "chunk")
case("log_likelihood/bounds", lambda: PG.log_likelihood(NG, ENC, YP, num_samples=4, bounds=(1.0, 0.0)), "bounds")
case("log_likelihood/y-shape", lambda: PG.log_likelihood(NG, ENC, f(4, 5), num_samples=4), "y")
case("log_likelihood/y-nan", lambda: PG.log_likelihood(NG, ENC, with_value(YP, NAN), num_samples=4), "y")
case("log_likelihood/y-empty", lambda: PG.log_likelihood(NG, ENC, f(0, 3), num_samples=4), "y")


# ------------------------------------------------------------------------------------------------ evaluate
class TinyG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(3, 2)

    def noise(self, n, device=None, generator=None):
        return torch.randn(n, 2, device=device, generator=generator)

    def forward(self, x, z):
        return self.net(torch.cat([x, z], 1))


TG, XS = TinyG(), f(5, 1)
case("sample_protocol/k0", lambda: E.sample_protocol(TG, XS, 0), "k")
case("sample_protocol/chunk0", lambda: E.sample_protocol(TG, XS, 2, chunk=0), "chunk")
case("sample_protocol/x-list", lambda: E.sample_protocol(TG, [[0.0]], 2), "x")
case("sample_protocol/x-empty", lambda: E.sample_protocol(TG, f(0, 1), 2), "x")
case("sample_protocol/G", lambda: E.sample_protocol(nn.Linear(1, 1), XS, 2), "G")
case("sample_protocol/x-nan", lambda: E.sample_protocol(TG, with_value(XS, NAN), 2), "x")

NO_RUN = "no/such/run"
case("evaluate_run/protocol", lambda: E.evaluate_run(NO_RUN, protocol="lpips"), "protocol")
case("evaluate_run/metric", lambda: E.evaluate_run(NO_RUN, metric="fid"), "metric")
case("evaluate_run/num-inputs0", lambda: E.evaluate_run(NO_RUN, num_inputs=0), "num_inputs")
case("evaluate_run/num-inputs-float", lambda: E.evaluate_run(NO_RUN, num_inputs=2.5), "num_inputs")
case("evaluate_run/ndb-k1", lambda: E.evaluate_run(NO_RUN, ndb_k=1), "ndb_k")
case("evaluate_run/device", lambda: E.evaluate_run(NO_RUN, device="banana"), "device")
case("evaluate_run/missing", lambda: E.evaluate_run(NO_RUN), NO_RUN, errors=(FileNotFoundError,))


# ------------------------------------------------------------------------------------------------ the test
def outcome(c: Case) -> str:
    """``"clear"`` (expected type, message names the argument), ``"unclear"`` (another error, or a message that does
    not name the argument: typically an error from inside torch / numpy) or ``"silent"`` (no error at all)."""
    try:
        c.call()
    except c.errors as e:
        return "clear" if any(n in str(e) for n in c.names) else "unclear"
    except Exception:  # noqa: BLE001 - classifying, not handling
        return "unclear"
    return "silent"


def test_the_table_is_large():
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_bad_input_gives_a_clear_error(c: Case):
    with pytest.raises(c.errors) as info:
        c.call()
    msg = str(info.value)
    assert any(n in msg for n in c.names), f"message does not name {c.names}: {msg}"
