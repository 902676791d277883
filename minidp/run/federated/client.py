"""One client's round: E local non-private LoRA steps from the global adapter, returning its update Δ.

    update, loss = local_update(model, data, shard, global_params, settings, rng)
    Δ[name] = θ_local[name] − θ_global[name]       for every trainable name (LoRA factors + head)

Each local step draws a minibatch of min(b, |shard|) of the client's own examples uniformly without
replacement (by ``rng``), computes the mean cross-entropy's gradient (``model.loss_and_grads``: no clipping,
no noise — privacy is client-level, added by the server's mechanism, ``aggregation.py``) and takes one
optimizer step. The model's trainable parameters are set from ``global_params`` first, so clients never see
each other's updates. An empty shard returns Δ = 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minidp.backend import array_module
from minidp.optim import OPTIMIZERS, make_optimizer
from minidp.run.flagspec import flag


@dataclass(frozen=True)
class LocalSettings:
    """A client's local training (each field with its `minidp federated` flag, shown under "federation")."""

    steps: int = flag("--local-steps", 5, group="federation",
                      help="E: local (non-private) steps per sampled client")  # E local steps per round
    batch_size: int = flag("--local-batch-size", 16, group="federation", help="examples per local step")
    lr: float = flag("--local-lr", 1e-3, group="federation", help="local learning rate")
    # sgd | adam | adamw (fresh state every round)
    optimizer: str = flag("--local-optimizer", "adam", choices=OPTIMIZERS, group="federation",
                          help="fresh state each round")


def set_params(model, params: dict) -> None:
    """Copy ``params`` ({name: array}) into the model's parameters (fresh arrays: no aliasing)."""
    for name, value in params.items():
        model.params[name] = value.copy()


def local_update(model, data, shard: np.ndarray, global_params: dict, settings: LocalSettings,
                 rng: np.random.Generator) -> tuple[dict, float | None]:
    """(Δ {name: array}, mean training loss over the local steps or None for an empty shard)."""
    if len(shard) == 0 or settings.steps == 0:
        return {n: array_module(v).zeros_like(v) for n, v in global_params.items()}, None
    set_params(model, global_params)
    optimizer = make_optimizer(settings.optimizer, settings.lr)
    model.train()
    losses = []
    for _ in range(settings.steps):
        idx = rng.choice(shard, size=min(settings.batch_size, len(shard)), replace=False)  # (b,)
        batch = data.batch(data.by_length(idx))
        loss, grads = model.loss_and_grads(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                           token_type_ids=batch.get("token_type_ids"))
        optimizer.step(model.params, grads)
        losses.append(loss)
    model.eval()
    update = {n: model.params[n] - global_params[n] for n in global_params}
    set_params(model, global_params)
    return update, float(np.mean(losses))
