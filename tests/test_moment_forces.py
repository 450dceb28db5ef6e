"""Notebook 03's gradient picture (minilib.course.moment_forces): each term's pull on a collapsed group."""
import pytest
import torch

from minilib.course.moment_forces import force_summary, subset_losses, term_forces
from minilib.data.toys import ring
from minilib.nets.mlp import make_models
from minilib.objectives import get_objective

R = ring()


def _group(k=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return R.modes[0] + 0.05 * torch.randn(k, 2, generator=g)  # every sample on mode 0


def test_order_one_terms_only_move_the_group_and_order_two_spreads_it():
    group = _group()
    _, D, P = make_models(R, z_dim=2, hidden=16)
    for name in ("gan+mr1", "gan+mr2", "gan+l2"):
        forces = term_forces(group, R, get_objective(name), D=D)
        assert set(forces) == ({"gan", "moment"} if "mr" in name else {"gan", "rec"})
        assert all(f.shape == (16, 2) and torch.isfinite(f).all() for f in forces.values())
    mr1 = force_summary(group, term_forces(group, R, get_objective("gan+mr1"), D=D)["moment"])
    assert abs(mr1["spread"]) < 1e-4 * mr1["size"] and mr1["move"] > 0  # a pure translation
    f_mr1 = term_forces(group, R, get_objective("gan+mr1"), D=D)["moment"].mean(0)
    assert f_mr1[0] < 0 and abs(f_mr1[1]) < 0.1 * abs(f_mr1[0])  # towards the ring's centre (mode 0 is at (2, 0))
    mr2 = force_summary(group, term_forces(group, R, get_objective("gan+mr2"), D=D)["moment"])
    assert mr2["spread"] > 0  # the variance is far too small: the samples are pushed apart
    l2 = force_summary(group, term_forces(group, R, get_objective("gan+l2"), D=D)["rec"])
    assert l2["spread"] < 0  # ℓ2 pulls every sample to the same point: it squeezes the group


def test_proxy_terms_use_the_predictor_and_errors_name_what_is_missing():
    group = _group()
    _, D, P = make_models(R, z_dim=2, hidden=16)
    pm = force_summary(group, term_forces(group, R, get_objective("gan+pmr2"), D=D, P=P)["moment"])
    assert pm["size"] > 0
    with pytest.raises(ValueError, match="P .the fitted predictor"):
        term_forces(group, R, get_objective("gan+pmr2"), D=D)
    with pytest.raises(ValueError, match="D .a trained discriminator"):
        term_forces(group, R, get_objective("gan+mr2"))
    with pytest.raises(ValueError, match=r"group must be a \[K, 2\]"):
        term_forces(group[:, :1], R, get_objective("gan+mr2"), D=D)


def test_subset_losses_see_one_mode_but_not_symmetric_subsets():
    objs = [get_objective(n) for n in ("gan+pmr1", "gan+pmr2", "gan+mr2")]
    res = subset_losses(R, {"all": list(range(8)), "one": [0], "diag": [1, 3, 5, 7]}, objs, k=16, n_groups=4000)
    # order 1 with exact moments: E|mean of K samples|^2 per coordinate = Var/K = 2/16 for any centred subset
    assert res["all"]["gan+pmr1"] == pytest.approx(2 / 16, rel=0.1)
    assert res["diag"]["gan+pmr1"] == pytest.approx(2 / 16, rel=0.1)
    assert res["one"]["gan+pmr1"] == pytest.approx(2.0, rel=0.05)  # mean (2, 0) against (0, 0): (4 + 0) / 2
    assert res["diag"]["gan+pmr2"] < res["all"]["gan+pmr2"] < res["one"]["gan+pmr2"]  # the finite-K preference
    assert res["one"]["gan+mr2"] > 100 * res["all"]["gan+mr2"]  # coinciding samples: MR2's likelihood explodes
    with pytest.raises(ValueError, match="mode indices"):
        subset_losses(R, {"bad": [8]}, objs)
