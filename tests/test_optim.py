"""Optimizers against torch.optim (the oracle) in float64, and the linear warm-up/decay schedule."""
import numpy as np
import pytest

from minidp.errors import ConfigError
from minidp.optim import SGD, Adam, AdamW, linear_schedule, make_optimizer
from tests.helpers import require_module

SHAPES = {"encoder.layer.0.weight": (6, 4), "encoder.layer.0.bias": (6,), "classifier.weight": (2, 6)}
STEPS = 7
TOL = 1e-10


def run_both(ours_factory, torch_factory, lr_per_step=None):
    torch = require_module("torch")
    rng = np.random.default_rng(0)
    params = {n: rng.normal(size=s) for n, s in SHAPES.items()}
    grads_seq = [{n: rng.normal(size=s) for n, s in SHAPES.items()} for _ in range(STEPS)]
    tparams = {n: torch.tensor(p.copy(), dtype=torch.float64, requires_grad=True) for n, p in params.items()}
    opt = ours_factory()
    topt = torch_factory(list(tparams.values()))
    for t, grads in enumerate(grads_seq):
        lr = None if lr_per_step is None else lr_per_step[t]
        opt.step(params, grads, lr=lr)
        if lr is not None:
            for group in topt.param_groups:
                group["lr"] = lr
        for n, tp in tparams.items():
            tp.grad = torch.tensor(grads[n])
        topt.step()
    worst = max(np.abs(params[n] - tparams[n].detach().numpy()).max() for n in SHAPES)
    print(f"max |ours - torch| after {STEPS} steps: {worst:.2e}")
    return worst, opt, params


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.9, 0.0), (0.9, 0.01)])
def test_sgd_matches_torch(momentum, wd):
    torch = require_module("torch")
    worst, _, _ = run_both(lambda: SGD(0.1, momentum=momentum, weight_decay=wd),
                           lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=momentum, weight_decay=wd))
    assert worst <= TOL


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_adam_matches_torch(wd):
    torch = require_module("torch")
    worst, _, _ = run_both(lambda: Adam(1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd),
                           lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd))
    assert worst <= TOL


def test_adamw_matches_torch_with_a_changing_lr():
    torch = require_module("torch")
    lrs = [linear_schedule(t, total_steps=STEPS + 1, warmup_steps=2, base_lr=1e-2) for t in range(1, STEPS + 1)]
    worst, _, _ = run_both(lambda: AdamW(1e-2, weight_decay=0.1),
                           lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1), lr_per_step=lrs)
    assert worst <= TOL


def test_only_names_in_grads_are_updated_in_place():
    params = {"a": np.ones(3), "b": np.ones(2)}
    a_before = params["a"]
    AdamW(0.1).step(params, {"a": np.full(3, 2.0)})
    assert params["a"] is a_before and not np.allclose(params["a"], 1.0)
    np.testing.assert_array_equal(params["b"], np.ones(2))
    with pytest.raises(KeyError):
        SGD(0.1).step(params, {"c": np.ones(1)})


def test_state_dict_roundtrip_continues_identically():
    rng = np.random.default_rng(1)
    grads = [{"w": rng.normal(size=(3, 3))} for _ in range(4)]
    p1 = {"w": rng.normal(size=(3, 3))}
    p2 = {"w": p1["w"].copy()}
    o1 = Adam(1e-2)
    o1.step(p1, grads[0])
    o1.step(p1, grads[1])
    saved = o1.state_dict()
    assert isinstance(saved["state"]["w"]["exp_avg"], np.ndarray) and saved["state"]["w"]["step"] == 2
    o2 = Adam(1e-2)
    o2.step(p2, grads[0])
    o2.step(p2, grads[1])
    o2.load_state_dict(saved, like=p2)
    for g in grads[2:]:
        o1.step(p1, g)
        o2.step(p2, g)
    np.testing.assert_array_equal(p1["w"], p2["w"])
    saved["state"]["w"]["exp_avg"][:] = 99.0  # the saved copy is not aliased to live state
    assert not np.any(o1.state["w"]["exp_avg"] == 99.0)


def test_make_optimizer():
    assert isinstance(make_optimizer("SGD", 0.1, momentum=0.9), SGD)
    assert type(make_optimizer("adam", 0.1)) is Adam
    opt = make_optimizer("adamw", 0.1)
    assert isinstance(opt, AdamW) and opt.weight_decay == 0.01
    with pytest.raises(ConfigError):
        make_optimizer("lamb", 0.1)
    with pytest.raises(ConfigError):
        make_optimizer("sgd", 0.1, betas=(0.9, 0.9))


def test_linear_schedule():
    lrs = [linear_schedule(t, total_steps=10, warmup_steps=4, base_lr=1.0) for t in range(12)]
    np.testing.assert_allclose(lrs, [0, .25, .5, .75, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0, 0], atol=1e-15)
    assert linear_schedule(0, total_steps=5, warmup_steps=0, base_lr=2.0) == 2.0
    with pytest.raises(ConfigError):
        linear_schedule(0, total_steps=5, warmup_steps=6, base_lr=1.0)
