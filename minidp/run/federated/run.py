"""The federated run: read and check everything, plan the privacy, stage 1, the rounds, the run directory.

    summary = run_federated(config, log=print)

Order (docs/federated.md):
1. ``build`` checks every input and does every piece of work that writes nothing: the config, the
   checkpoint, the data (train -> PUBLIC split + clients' split; held-out eval), the partition into K
   clients, the privacy plan (σ calibrated by the RDP accountant for T rounds at client rate q), and stage 1
   (pseudo-clients' updates on the public split -> the encoder, fixed from here on). Bad input stops here:
   one line, nothing written.
2. The run directory gets config.json; then each round: Poisson-sample clients at rate q; each sampled
   client runs E local steps and encodes its update; the server clips each whole contribution to C, sums,
   adds N(0, σ²C²) once, divides by qK (``aggregation.py``), optionally denoises (``server.py``), decodes
   and steps; the accountant records the round. Rows go to metrics.jsonl (covered or held-out) and
   metrics_nonprivate.jsonl (noise-free functions of the clients' data: NOT covered).
3. model/ (the global adapter as a PEFT directory), then summary.json last: its presence means the run
   finished.

Random draws: RandomStreams(seed) gives client sampling, the DP noise and dropout; the partition, the
clients' minibatches and stage 1 have generators of their own (spawned apart from those streams).
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from minidp.backend import RandomStreams
from minidp.data import load_tokenizer, split_dataset
from minidp.data.batching import TokenizedDataset
from minidp.errors import ConfigError
from minidp.run.federated import aggregation, server
from minidp.run.federated.client import local_update, set_params
from minidp.run.federated.codec import BYTES_PER_NUMBER, Codec, build_codec
from minidp.run.federated.config import FederatedConfig
from minidp.run.federated.partition import partition
from minidp.privacy import RDPAccountant, get_noise_multiplier
from minidp.privacy.gdp import epsilon_from_mu, mu_poisson
from minidp.privacy.mechanism import noise_std_of_average
from minidp.privacy.sampling import poisson_sample
from minidp.run.rundir import RunDir
from minidp.run.train import check_max_length, evaluate, load_splits
from models import load_pretrained
from models.hf import save_adapter

SEED_SPAWN_KEY = (41,)  # keeps the federated generators apart from RandomStreams' children of the same seed

OUTPUT_PRIVACY = {
    "covered (post-processing of the noisy releases)": [
        "model/", "metrics.jsonl: round, epsilon_rdp, epsilon_gdp_approx, bytes_per_client, "
        "expected_bytes_per_round, denoise_kept_total", "summary.json: privacy"],
    "public by design (chosen before the run, or computed from the PUBLIC split only)": [
        "config.json (includes the seed: with --seed the run is not private against anyone who knows it)",
        "summary.json: stage1 (encoder training on the public split)"],
    "held-out data, NOT protected": ["metrics.jsonl: eval", "summary.json: final_eval"],
    "NOT covered: computed from the clients' data without noise": [
        "metrics_nonprivate.jsonl: clients_sampled, bytes_sent (realised), mean_local_loss, mean_norm, "
        "clipped_fraction, dropped_nonfinite, reconstruction_error_non_private, seconds"],
}


@dataclass
class PrivacyPlan:
    """Client-level privacy, fixed before the first round."""

    private: bool
    noise_multiplier: float  # σ
    sample_rate: float  # q, the client sampling rate
    rounds: int  # T
    clients: int  # K
    delta: float  # δ
    max_grad_norm: float  # C
    target_epsilon: float | None
    epsilon_rdp: float | None  # after T rounds (None: not private)
    order: float | None
    mu_gdp: float | None  # μ by the CLT (an approximation)
    epsilon_gdp_approx: float | None
    seed: int | None
    clipped: bool = True  # each client's whole contribution clipped to C (False only for the unclipped reference)

    def statement(self) -> str:
        if not self.private:
            clipping = (f"each client's whole contribution clipped to C = {self.max_grad_norm:g} as in the private "
                        f"arms (--clip-non-private)" if self.clipped else "no clipping")
            return (f"NOT PRIVATE: a non-private federated reference (--non-private): {self.rounds} rounds, "
                    f"client rate q = {self.sample_rate:g}, K = {self.clients}, the sum divided by qK as in the "
                    f"private arms, but {clipping}, σ = 0 and no accounting: NO guarantee (ε = ∞)")
        target = "" if self.target_epsilon is None else f" (target ε = {self.target_epsilon:g})"
        text = (f"privacy: client-level (ε = {self.epsilon_rdp:.4f}, δ = {self.delta:.3g})-DP{target} under "
                f"add/remove-one-CLIENT adjacency, RDP accountant (order {self.order:g}), for {self.rounds} rounds "
                f"of Poisson client sampling: q = {self.sample_rate:.5g}, σ = {self.noise_multiplier:.4f}, "
                f"C = {self.max_grad_norm:g} on each client's whole contribution; K = {self.clients}, "
                f"K·δ = {self.clients * self.delta:.3g}. Central DP: the server is trusted with the clipped "
                f"contributions; the guarantee holds against anyone who sees the released aggregates and models. "
                f"GDP by the CLT (Bu et al. 2020; an approximation, NOT an upper bound): μ = {self.mu_gdp:.4f}, "
                f"ε ≈ {self.epsilon_gdp_approx:.4f}")
        if self.seed is not None:
            text += ("\nWARNING: --seed was given: sampling and noise are reproducible from the seed, so the run "
                     "is NOT private against anyone who knows it (experiments only)")
        return text


def plan_privacy(config: FederatedConfig) -> PrivacyPlan:
    """σ (RDP-calibrated for T rounds at rate q, or given), δ (default 1/K²), ε by RDP and by GDP."""
    f, p = config.federation, config.privacy
    K, q, T = f.clients, f.sample_rate, f.rounds
    delta = p.delta if p.delta is not None else 1.0 / K ** 2
    if p.non_private:
        return PrivacyPlan(False, 0.0, q, T, K, delta, p.max_grad_norm, None, None, None, None, None,
                           config.run.seed, clipped=p.clip_non_private)
    sigma = float(p.noise_multiplier) if p.noise_multiplier is not None else \
        float(get_noise_multiplier(p.epsilon, delta, q, T))
    accountant = RDPAccountant()
    accountant.step(noise_multiplier=sigma, sample_rate=q, steps=T)
    eps, order = accountant.get_epsilon_and_order(delta)
    mu = mu_poisson(noise_multiplier=sigma, sample_rate=q, steps=T)
    return PrivacyPlan(True, sigma, q, T, K, delta, p.max_grad_norm, p.epsilon, float(eps), float(order), mu,
                       epsilon_from_mu(mu=mu, delta=delta), config.run.seed)


@dataclass
class Federation:
    """Everything a run is built from (``build``), before its first round."""

    config: FederatedConfig
    plan: PrivacyPlan
    model: object  # models.roberta.SequenceClassifier with LoRA layers
    client_data: TokenizedDataset
    eval_data: TokenizedDataset
    shards: list  # K index arrays into client_data
    codec: Codec
    stage1: dict  # the encoder's report (public split only)
    streams: RandomStreams
    local_rng: np.random.Generator
    notes: dict


def _generators(seed: int | None) -> tuple[np.random.Generator, ...]:
    """(partition, local minibatches, stage 1) generators, independent of RandomStreams(seed)."""
    root = np.random.SeedSequence(seed, spawn_key=SEED_SPAWN_KEY)
    return tuple(np.random.default_rng(child) for child in root.spawn(3))


def build(config: FederatedConfig, log=print) -> Federation:
    """Check every input and do all work that writes nothing (see module docstring). Raises MinidpError."""
    config.validate()
    f, m = config.federation, config.model
    check_max_length(config)
    train_set, eval_set = load_splits(config)
    if eval_set is None or len(eval_set) == 0:
        raise ConfigError("data: the held-out split is empty")
    if config.data.eval_limit is not None:
        eval_set = eval_set.subset(np.arange(min(len(eval_set), config.data.eval_limit)))
    client_set, public_set = split_dataset(train_set, eval_fraction=f.public_fraction, seed=0)
    if len(client_set) < f.clients:
        raise ConfigError(f"federation.clients (--clients): {f.clients} clients but only {len(client_set)} "
                          f"training examples outside the public split")
    if len(public_set) < f.public_clients:
        raise ConfigError(f"federation.public_clients (--public-clients): {f.public_clients} pseudo-clients but "
                          f"the public split holds {len(public_set)} examples")
    plan = plan_privacy(config)
    partition_rng, local_rng, stage1_rng = _generators(config.run.seed)
    streams = RandomStreams(seed=config.run.seed, device=m.device)
    lora = {"r": m.lora_rank, "alpha": m.lora_alpha, "targets": m.lora_target_list(), "dropout": m.lora_dropout}
    model = load_pretrained(m.path, num_labels=train_set.num_classes, dtype=m.dtype, device=m.device,
                            trainable="lora", seed=config.run.seed if config.run.seed is not None else 0,
                            lora=lora, pooling=m.pooling, log=log)
    model.dropout_rng = streams.dropout
    config = dataclasses.replace(config, model=dataclasses.replace(m, pooling=model.pooling))
    tokenizer = load_tokenizer(m.path)
    client_data = TokenizedDataset(client_set, tokenizer, m.max_length)
    public_data = TokenizedDataset(public_set, tokenizer, m.max_length)
    eval_data = TokenizedDataset(eval_set, tokenizer, m.max_length)
    shards = partition(client_data.labels, clients=f.clients, scheme=f.partition, alpha=f.alpha, rng=partition_rng)
    codec, stage1 = Codec("none"), {}
    if config.encoder.encoder != "none":  # stage 1: public pseudo-clients from the initial adapter
        initial = {n: model.params[n].copy() for n in model.trainable}
        public_shards = partition(public_data.labels, clients=f.public_clients, scheme="iid", rng=stage1_rng)
        public_updates = [local_update(model, public_data, shard, initial, config.local, stage1_rng)[0]
                          for shard in public_shards]
        codec, stage1 = build_codec(config.encoder.encoder, public_updates, config.encoder.settings(), stage1_rng)
        set_params(model, initial)
    notes = {"client_examples": len(client_set), "public_examples": len(public_set),
             "eval_examples": len(eval_set), "shard_sizes": [int(len(s)) for s in shards],
             "public_split": (f"{len(public_set)} examples carved from the training split (stratified, seed 0), "
                              f"disjoint from the clients' data and from the same distribution; treated as "
                              f"public: the encoder (stage 1) sees only it, at no privacy cost to the clients")}
    return Federation(config=config, plan=plan, model=model, client_data=client_data, eval_data=eval_data,
                      shards=shards, codec=codec, stage1=stage1, streams=streams, local_rng=local_rng, notes=notes)


def strict(obj):
    """``obj`` with every non-finite float replaced by None (strict JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, np.floating):
        return strict(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def one_round(t: int, fed: Federation, global_params: dict, zero_wire: dict, accountant: RDPAccountant, *,
              noise_std: float, bytes_per_client: int, shapes: dict) -> tuple[dict, dict]:
    """Round ``t`` (module docstring, step 2): sample, local updates, encode, clip + sum + noise, denoise,
    decode, step; updates ``global_params`` and the model in place. Returns (metrics row, non-private row)."""
    config, plan, model, codec = fed.config, fed.plan, fed.model, fed.codec
    f = config.federation
    expected_clients = f.sample_rate * f.clients  # qK, the public divisor
    start = time.perf_counter()
    sampled = poisson_sample(f.clients, f.sample_rate, fed.streams.sampling)  # client ids
    wires, losses, errors = [], [], []
    for i in sampled:
        update, loss = local_update(model, fed.client_data, fed.shards[i], global_params, config.local,
                                    fed.local_rng)
        wires.append(codec.encode(update))  # on the client: the encoder is public and fixed
        errors.append(codec.reconstruction_error(update))
        if loss is not None:
            losses.append(loss)
    clip = plan.max_grad_norm if plan.clipped else None
    total, norms, factors = aggregation.clipped_sum(wires, zero_wire, clip)
    if plan.private:  # the round's only private release
        released = aggregation.release(total, noise_multiplier=plan.noise_multiplier,
                                       max_grad_norm=plan.max_grad_norm, expected_clients=expected_clients,
                                       rng=fed.streams.noise)
        accountant.step(noise_multiplier=plan.noise_multiplier, sample_rate=f.sample_rate, steps=1)
    else:
        released = aggregation.average_without_noise(total, expected_clients=expected_clients)
    kept = None
    denoise = config.denoise.settings()
    if denoise is not None:  # post-processing in wire space, where the noise is i.i.d. N(0, s²)
        released, summary = server.denoise_release(released, noise_std=noise_std, settings=denoise,
                                                   encoded=codec.encoder != "none", seed=t)
        kept = summary["total_kept"]
    server.apply_update(global_params, codec.decode(released, shapes), server_lr=f.server_lr)
    set_params(model, global_params)
    row = {"round": t, "bytes_per_client": bytes_per_client,
           "expected_bytes_per_round": expected_clients * bytes_per_client}
    if plan.private:
        row["epsilon_rdp"] = accountant.get_epsilon(plan.delta)
        row["epsilon_gdp_approx"] = epsilon_from_mu(
            mu=mu_poisson(noise_multiplier=plan.noise_multiplier, sample_rate=f.sample_rate, steps=t),
            delta=plan.delta)
    if kept is not None:
        row["denoise_kept_total"] = kept
    if t % config.run.eval_every == 0 or t == f.rounds:
        row["eval"] = evaluate(model, fed.eval_data, config.data.task, config.run.eval_batch_size)
    finite_errors = [e for e in errors if e is not None and math.isfinite(e)]
    nonprivate = {"round": t, "clients_sampled": int(len(sampled)),
                  "bytes_sent": int(len(sampled)) * bytes_per_client,
                  "mean_local_loss": float(np.mean(losses)) if losses else None,
                  "mean_norm": float(np.mean([n for n in norms if math.isfinite(n)])) if norms else None,
                  "clipped_fraction": float(np.mean([c < 1.0 for c in factors])) if factors else None,
                  "dropped_nonfinite": int(sum(not math.isfinite(n) for n in norms)),
                  "reconstruction_error_non_private": float(np.mean(finite_errors)) if finite_errors else None,
                  "seconds": time.perf_counter() - start}
    return row, nonprivate


def run_federated(config: FederatedConfig, *, log=print) -> dict:
    """Run the whole federated training (module docstring); returns the summary written to summary.json."""
    run_dir = RunDir(config.run.out)
    run_dir.check_usable(resume=False, overwrite=config.run.overwrite)
    fed = build(config, log=log)
    config, plan, model, codec = fed.config, fed.plan, fed.model, fed.codec
    f = config.federation
    log(plan.statement())
    shapes = {n: tuple(model.params[n].shape) for n in model.trainable}
    bytes_per_client = codec.numbers_sent(shapes) * BYTES_PER_NUMBER
    raw_bytes = sum(int(np.prod(s)) for s in shapes.values()) * BYTES_PER_NUMBER
    expected_clients = f.sample_rate * f.clients  # qK, the public divisor
    noise_std = 0.0 if not plan.private else noise_std_of_average(
        noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm, expected_batch_size=expected_clients)
    global_params = {n: model.params[n].copy() for n in model.trainable}
    zero_wire = codec.encode({n: model.xp.zeros_like(v) for n, v in global_params.items()})
    accountant = RDPAccountant()
    run_dir.start(overwrite=config.run.overwrite, config=strict({
        **config.to_dict(), "privacy_plan": dataclasses.asdict(plan), "statement": plan.statement(),
        "notes": fed.notes, "bytes_per_client": bytes_per_client, "bytes_per_client_uncompressed": raw_bytes}))
    bar = tqdm(total=f.rounds, desc="rounds", file=sys.stderr, dynamic_ncols=True, disable=not config.run.progress)
    history = []
    for t in range(1, f.rounds + 1):
        row, nonprivate = one_round(t, fed, global_params, zero_wire, accountant, noise_std=noise_std,
                                    bytes_per_client=bytes_per_client, shapes=shapes)
        run_dir.log(strict(row), strict(nonprivate))
        history.append(row)
        bar.set_postfix({k: v for k, v in (("acc", row.get("eval", {}).get("accuracy")),
                                           ("eps", row.get("epsilon_rdp"))) if v is not None}, refresh=False)
        bar.update(1)
    bar.close()
    final = history[-1]["eval"]
    privacy = {"level": "client", "adjacency": "add/remove one client", "model": "central DP (trusted server)",
               "private": plan.private, "delta": plan.delta, "noise_multiplier": plan.noise_multiplier,
               "sample_rate": f.sample_rate, "rounds": f.rounds, "clients": f.clients,
               "max_grad_norm": plan.max_grad_norm, "clipped": plan.clipped, "target_epsilon": plan.target_epsilon,
               "epsilon_rdp": accountant.get_epsilon(plan.delta) if plan.private else None,
               "rdp_order": plan.order, "accountant": "rdp" if plan.private else None,
               "mu_gdp_approx": plan.mu_gdp, "epsilon_gdp_approx": plan.epsilon_gdp_approx,
               "gdp_note": "central-limit approximation (Bu, Dong, Long & Su 2020): not an upper bound"}
    summary = strict({"final_eval": final, "privacy": privacy, "statement": plan.statement(),
                      "encoder": config.encoder.encoder, "bytes_per_client": bytes_per_client,
                      "bytes_per_client_uncompressed": raw_bytes,
                      "compression_ratio": raw_bytes / bytes_per_client, "stage1": fed.stage1, "notes": fed.notes,
                      "output_privacy": OUTPUT_PRIVACY})
    json.dumps(summary, allow_nan=False)  # strict JSON, checked before it is written
    if config.run.save_model:
        save_adapter(model, run_dir.path / "model")
    run_dir.write_json("summary.json", summary)  # last: its presence means the run finished
    return summary
