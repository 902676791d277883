"""Optimizers acting in place on the flat parameter dict {hf_name: array}, and the linear LR schedule.

    opt = make_optimizer("adamw", lr=1e-3, weight_decay=0.01)
    opt.step(params, grads)           # params[name] updated in place for every name in grads

Update rules (g = gradient, t = 1, 2, ... the step count, per parameter):
    SGD    g += wd·p;  v = μ·v + g (v = g at the first step);  p -= lr·v           (torch.optim.SGD)
    Adam   g += wd·p;  m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²
           p -= lr · (m / (1-β1^t)) / (sqrt(v / (1-β2^t)) + eps)                 (Kingma & Ba 2015)
    AdamW  p *= 1 - lr·wd (decoupled, Loshchilov & Hutter 2019), then the Adam update without L2
All state (moments, step counts) is keyed by parameter name, lives on the parameters' device, and is
saved as host arrays by ``state_dict``.
"""
from __future__ import annotations

import math

from minidp.backend import array_module, to_host
from minidp.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")


class _Optimizer:
    """Shared plumbing: the learning-rate override, name checks and state (de)serialisation."""

    def __init__(self, lr: float):
        if not lr >= 0:
            raise ConfigError(f"lr={lr} must be >= 0")
        self.lr = float(lr)
        self.state: dict[str, dict] = {}  # {param name: {"step": int, buffer name: array}}

    def step(self, params: dict, grads: dict, lr: float | None = None) -> None:
        """Update ``params[name]`` in place for every name in ``grads``."""
        lr = self.lr if lr is None else float(lr)
        for name in grads:
            if name not in params:
                raise KeyError(f"gradient for unknown parameter {name!r}")
            p, g = params[name], grads[name]
            if p.shape != g.shape:
                raise ValueError(f"{name}: parameter shape {p.shape} but gradient shape {g.shape}")
            self._update(name, p, g, lr)

    def _update(self, name, p, g, lr):
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {
            "lr": self.lr,
            "state": {
                name: {k: (v if isinstance(v, (int, float)) else to_host(v).copy()) for k, v in buf.items()}
                for name, buf in self.state.items()
            },
        }

    def load_state_dict(self, d: dict, like: dict | None = None) -> None:
        """Restore state; with ``like`` (the params dict) buffers are moved to each parameter's device."""
        self.lr = float(d["lr"])
        self.state = {}
        for name, buf in d["state"].items():
            xp = array_module(like[name]) if like is not None and name in like else None
            self.state[name] = {
                k: (v if isinstance(v, (int, float)) else (xp.asarray(v) if xp is not None else v.copy()))
                for k, v in buf.items()
            }


class SGD(_Optimizer):
    """SGD with optional heavy-ball momentum and L2 weight decay (added to the gradient)."""

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)

    def _update(self, name, p, g, lr):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            st = self.state.setdefault(name, {"step": 0})
            if "momentum_buffer" not in st:
                st["momentum_buffer"] = g.copy()  # v_1 = g_1, as torch
            else:
                st["momentum_buffer"] *= self.momentum
                st["momentum_buffer"] += g
            st["step"] += 1
            g = st["momentum_buffer"]
        p -= lr * g


class Adam(_Optimizer):
    """Adam with L2 weight decay added to the gradient (torch.optim.Adam's ``weight_decay``)."""

    decoupled = False

    def __init__(self, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError(f"betas={tuple(betas)} must lie in [0, 1)")
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)

    def _update(self, name, p, g, lr):
        xp = array_module(p)
        if self.weight_decay and self.decoupled:
            p *= 1.0 - lr * self.weight_decay  # AdamW: shrink the weights, outside the moments
        elif self.weight_decay:
            g = g + self.weight_decay * p  # Adam: L2 penalty's gradient enters the moments
        st = self.state.setdefault(name, {"step": 0})
        if "exp_avg" not in st:
            st["exp_avg"] = xp.zeros_like(p)
            st["exp_avg_sq"] = xp.zeros_like(p)
        st["step"] += 1
        t = st["step"]
        m, v = st["exp_avg"], st["exp_avg_sq"]
        # The update in place through ONE scratch array (the same operations, in the same order, as the
        # plain form in the comments: bit-identical, without its five parameter-sized temporaries).
        scratch = xp.multiply(g, 1.0 - self.beta1)  # (1-β1) g
        m *= self.beta1
        m += scratch  # m_t = β1 m + (1-β1) g
        xp.multiply(g, g, out=scratch)
        scratch *= 1.0 - self.beta2  # (1-β2) g²
        v *= self.beta2
        v += scratch  # v_t = β2 v + (1-β2) g²
        bias1 = 1.0 - self.beta1**t
        bias2 = 1.0 - self.beta2**t
        xp.sqrt(v, out=scratch)
        scratch /= math.sqrt(bias2)
        scratch += self.eps  # denom = sqrt(v) / sqrt(1-β2^t) + eps = sqrt(v̂_t) + eps
        xp.divide(m, scratch, out=scratch)  # m / denom
        scratch *= lr / bias1
        p -= scratch  # p -= (lr / (1-β1^t)) · (m / denom) = lr · m̂_t / denom


class AdamW(Adam):
    """Adam with decoupled weight decay: p ← p·(1 − lr·wd) before the Adam step."""

    decoupled = True

    def __init__(self, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay)


def make_optimizer(name: str, lr: float, **kw) -> _Optimizer:
    """"sgd" | "adam" | "adamw" with its keyword options (momentum, betas, eps, weight_decay)."""
    classes = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
    key = name.lower()
    if key not in classes:
        raise ConfigError(f"optimizer {name!r} is not one of {OPTIMIZERS}")
    try:
        return classes[key](lr, **kw)
    except TypeError as err:
        raise ConfigError(f"optimizer {name!r}: {err}") from None


def linear_schedule(step: int, *, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up 0 → base_lr over ``warmup_steps``, then linear
    decay to 0 at ``total_steps`` (as transformers' get_linear_schedule_with_warmup)."""
    if total_steps < 1 or warmup_steps < 0 or warmup_steps > total_steps:
        raise ConfigError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps}), total_steps >= 1")
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    return base_lr * max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
