"""Where one ``DPStep`` spends its time and memory: a per-part profile of the step training runs.

    profile = profile_dpstep(step)        # step: a minidp.step.DPStep, already warmed up once
    print_profile(profile, log)

Every layer function the model calls (minidp.nn: linear, attention, GELU, softmax, LayerNorm, dropout,
embedding, pooling, loss), every per-example record method (norms, clipped sums, Gram matrices), the
clipping, the noise, the denoiser and the optimizer are wrapped for the duration of one step, so the
profile is of the unmodified training path. Each part's time is *exclusive* (time inside nested
wrapped calls is charged to them: the attention row is the attention core without its Q/K/V projections).

Two passes over one step each:
1. time: ``time.perf_counter`` around every wrapped call (the wrappers cost about a microsecond a call,
   a few hundred calls a virtual batch: the step's unwrapped wall time, the faster of one step before
   and one after the profiled passes, is reported beside the profiled one);
2. memory: ``tracemalloc`` (NumPy reports its array buffers to it), per part the peak of traced memory
   above what was traced when the call began: the transient bytes that part needs at its worst.

FLOPs are counted from the shapes for the matrix-product parts (a multiply-add = 2 FLOPs), so each
row's GFLOP/s says how far it is from the machine's GEMM rate; elementwise parts report the elements
they produce instead. Rows are grouped by stage: forward, backward (input gradients), norms (per-example
‖∇_i‖²), clipped sum (Σ_i c_i ∇_i), clip, noise, denoise, optimizer, step (the rest of DPStep: sampling,
batching, accumulation, the host copy).
"""
from __future__ import annotations

import importlib
import time
import tracemalloc
from contextlib import ExitStack, contextmanager

import minidp.step as step_module


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _rows(x):
    """M: the rows (B·T, or B) of a (..., d) array."""
    return _prod(x.shape[:-1])


def _bt(x):
    """(B, T) of a (B, T, d) or (B, d) array (T = 1)."""
    return (int(x.shape[0]), int(x.shape[1])) if x.ndim == 3 else (int(x.shape[0]), 1)


# ------------------------------------------------------------------------ what each wrapped call is
# Each describer: (args, kwargs, result) -> (row label, FLOPs or None, elements produced or None).


def _linear_fwd(args, kwargs, result):
    p, x = args[0], args[1]
    d_out, d_in = p["weight"].shape
    M = _rows(x)
    return f"linear {d_in}->{d_out}", 2 * M * d_in * d_out, None


def _linear_bwd(args, kwargs, result):
    p, dy = args[0], args[2]
    d_out, d_in = p["weight"].shape
    M = _rows(dy)
    return f"linear {d_in}->{d_out} (dx)", 2 * M * d_in * d_out, None


def _attention_fwd(args, kwargs, result):
    x, num_heads = args[1], args[3]
    B, T, C = x.shape
    return "attention core (QK^T, softmax, PV)", 4 * B * T * T * C, None


def _attention_bwd(args, kwargs, result):
    dctx = args[2]
    B, T, C = dctx.shape
    return "attention core (QK^T, softmax, PV)", 8 * B * T * T * C, None


def _elementwise(label):
    def describe(args, kwargs, result):
        out = result[0] if isinstance(result, tuple) else result
        return label, None, _prod(getattr(out, "shape", ()))
    return describe


def _record_linear_norm(args, kwargs, result):
    record = args[0]
    a3 = record.a.a if record.a.a.ndim == 3 else record.a.a[:, None, :]
    B, T = _bt(record.g)
    d_in, d_out = int(a3.shape[-1]), int(record.g.shape[-1])
    method = record.chosen_method()
    if method == "ghost":  # g_i g_iᵀ and the Frobenius product (a_i a_iᵀ is the Gram row, counted there)
        flops = 2 * B * T * T * d_out + 2 * B * T * T
    else:  # materialise g_iᵀ a_i, square and sum
        flops = 2 * B * T * d_in * d_out + 2 * B * d_in * d_out
    return f"linear {d_in}->{d_out} norms ({method})", flops, None


def _record_linear_sum(args, kwargs, result):
    record = args[0]
    B, T = _bt(record.g)
    d_in, d_out = int(record.a.a.shape[-1]), int(record.g.shape[-1])
    return f"linear {d_in}->{d_out} clipped sum", 2 * B * T * d_in * d_out, None


def _gram(args, kwargs, result):
    shared = args[0]
    a = shared.a
    B, T = _bt(a)
    d = int(a.shape[-1])
    return f"Gram a_i a_i^T (d={d})", 2 * B * T * T * d, None


def _record_dense(label):
    def describe(args, kwargs, result):
        return label, None, _prod(args[0].grads.shape)
    return describe


def _record_embedding_norm(args, kwargs, result):
    record = args[0]
    B, T, C = record.g.shape
    return "embedding norms (ghost over equal ids)", 2 * B * T * T * C, None


def _record_embedding_sum(args, kwargs, result):
    record = args[0]
    return f"embedding clipped sum ({record.num_embeddings} rows)", None, record.num_embeddings * record.g.shape[-1]


def _sized_dict(label, position: int = 0):
    """A call whose argument ``position`` is a {name: array} dict: elements = its total size."""
    def describe(args, kwargs, result):
        return label, None, sum(_prod(g.shape) for g in args[position].values())
    return describe


# (stage, module path, attribute, describer); attribute "Class.method" wraps a method on the class.
TARGETS = [
    ("forward", "minidp.nn.linear", "forward", _linear_fwd),
    ("forward", "minidp.nn.attention", "forward", _attention_fwd),
    ("forward", "minidp.nn.activations", "gelu_forward", _elementwise("GELU (erf)")),
    ("forward", "minidp.nn.activations", "softmax_forward", _elementwise("softmax")),
    ("forward", "minidp.nn.activations", "tanh_forward", _elementwise("tanh")),
    ("forward", "minidp.nn.layernorm", "forward", _elementwise("LayerNorm")),
    ("forward", "minidp.nn.dropout", "forward", _elementwise("dropout")),
    ("forward", "minidp.nn.embedding", "forward", _elementwise("embedding lookup")),
    ("forward", "minidp.nn.pooling", "forward", _elementwise("pooling")),
    ("forward", "minidp.nn.loss", "forward", _elementwise("cross-entropy")),
    ("backward", "minidp.nn.linear", "backward", _linear_bwd),
    ("backward", "minidp.nn.attention", "backward", _attention_bwd),
    ("backward", "minidp.nn.activations", "gelu_backward", _elementwise("GELU")),
    ("backward", "minidp.nn.activations", "softmax_backward", _elementwise("softmax")),
    ("backward", "minidp.nn.activations", "tanh_backward", _elementwise("tanh")),
    ("backward", "minidp.nn.layernorm", "backward", _elementwise("LayerNorm")),
    ("backward", "minidp.nn.dropout", "backward", _elementwise("dropout")),
    ("backward", "minidp.nn.embedding", "backward", _elementwise("embedding")),
    ("backward", "minidp.nn.pooling", "backward", _elementwise("pooling")),
    ("backward", "minidp.nn.loss", "backward", _elementwise("cross-entropy")),
    ("norms", "minidp.per_example", "LinearRecord.norm_sq", _record_linear_norm),
    ("norms", "minidp.per_example", "SharedInput.gram", _gram),
    ("norms", "minidp.per_example", "DenseRecord.norm_sq", _record_dense("bias/LayerNorm norms")),
    ("norms", "minidp.per_example", "EmbeddingRecord.norm_sq", _record_embedding_norm),
    ("clipped sum", "minidp.per_example", "LinearRecord.weighted_sum", _record_linear_sum),
    ("clipped sum", "minidp.per_example", "DenseRecord.weighted_sum", _record_dense("bias/LayerNorm clipped sum")),
    ("clipped sum", "minidp.per_example", "EmbeddingRecord.weighted_sum", _record_embedding_sum),
    ("clip", "minidp.step", "clip_and_sum", _elementwise("norms -> factors (rest of clip_and_sum)")),
    ("noise", "minidp.step", "add_noise", _sized_dict("Gaussian noise + divide by qN")),
    ("denoise", "minidp.step", "denoise_released", _sized_dict("RMT denoiser")),
]


class _Recorder:
    """Exclusive time (or transient traced bytes) per (stage, label), with a stack for nested calls."""
    def __init__(self, memory: bool):
        self.memory = memory
        self.rows: dict = {}
        self.stack: list = []  # per open call: [start time, child time, traced at entry, peak seen]

    def wrap(self, stage, fn, describe):
        recorder = self

        def wrapped(*args, **kwargs):
            recorder.enter()
            try:
                result = fn(*args, **kwargs)
            finally:
                spent, child, transient = recorder.leave()
            label, flops, elements = describe(args, kwargs, result)
            row = recorder.rows.setdefault((stage, label), {"calls": 0, "seconds": 0.0, "flops": 0,
                                                            "elements": 0, "transient_bytes": 0})
            row["calls"] += 1
            row["seconds"] += spent - child
            row["flops"] += flops or 0
            row["elements"] += elements or 0
            row["transient_bytes"] = max(row["transient_bytes"], transient)
            return result

        wrapped.__wrapped__ = fn
        return wrapped

    def enter(self):
        traced = 0
        if self.memory:
            traced, peak = tracemalloc.get_traced_memory()
            if self.stack:  # remember the parent's peak so far before resetting
                self.stack[-1][3] = max(self.stack[-1][3], peak)
            tracemalloc.reset_peak()
        self.stack.append([time.perf_counter(), 0.0, traced, traced])

    def leave(self):
        start, child, traced_at_entry, peak_seen = self.stack.pop()
        spent = time.perf_counter() - start
        transient = 0
        if self.memory:
            _, peak = tracemalloc.get_traced_memory()
            peak = max(peak, peak_seen)
            transient = peak - traced_at_entry
            if self.stack:
                self.stack[-1][3] = max(self.stack[-1][3], peak)
        if self.stack:
            self.stack[-1][1] += spent
        return spent, child, transient


@contextmanager
def _patched(recorder: _Recorder, optimizer):
    with ExitStack() as stack:
        for stage, module_name, attribute, describe in TARGETS:
            owner = importlib.import_module(module_name)
            if "." in attribute:
                cls_name, attribute = attribute.split(".")
                owner = getattr(owner, cls_name)
            original = getattr(owner, attribute)
            setattr(owner, attribute, recorder.wrap(stage, original, describe))
            stack.callback(setattr, owner, attribute, original)
        original_step = optimizer.step  # a bound method, wrapped on the instance
        optimizer.step = recorder.wrap("optimizer", original_step,  # step(params, grads): count the grads
                                       _sized_dict(f"{type(optimizer).__name__} update", position=1))
        stack.callback(delattr, optimizer, "step")
        yield


def profile_dpstep(step) -> dict:
    """Profile one call of ``step`` (a DPStep) per pass; returns {"rows": [...], "step_seconds", ...}."""
    t0 = time.perf_counter()
    step()  # unwrapped: the reference wall time (the faster of this step and one after the profiled passes)
    plain_seconds = time.perf_counter() - t0

    timing = _Recorder(memory=False)
    with _patched(timing, step.optimizer):
        timing.enter()
        step_module.DPStep.__call__(step)
        total, child, _ = timing.leave()
    timing.rows[("step", "sampling, batching, accumulation, host copy")] = {
        "calls": 1, "seconds": total - child, "flops": 0, "elements": 0, "transient_bytes": 0}

    memory = _Recorder(memory=True)
    tracemalloc.start()
    try:
        with _patched(memory, step.optimizer):
            memory.enter()
            step_module.DPStep.__call__(step)
            _, _, step_transient = memory.leave()
    finally:
        tracemalloc.stop()
    t0 = time.perf_counter()
    step()
    plain_seconds = min(plain_seconds, time.perf_counter() - t0)
    rows = []
    for key, row in timing.rows.items():
        mem_row = memory.rows.get(key, {})
        rows.append({"stage": key[0], "part": key[1], **row,
                     "transient_bytes": mem_row.get("transient_bytes", row["transient_bytes"])})
    rows.sort(key=lambda r: -r["seconds"])
    return {"plain_step_seconds": plain_seconds, "profiled_step_seconds": total, "rows": rows,
            "step_transient_bytes": step_transient,
            "total_gflop": sum(r["flops"] for r in rows) / 1e9}


def stage_totals(profile: dict) -> dict:
    """{stage: {"seconds", "gflop"}} summed over the rows."""
    out: dict = {}
    for row in profile["rows"]:
        s = out.setdefault(row["stage"], {"seconds": 0.0, "gflop": 0.0})
        s["seconds"] += row["seconds"]
        s["gflop"] += row["flops"] / 1e9
    return out


def print_profile(profile: dict, log, top: int = 40) -> None:
    total = profile["profiled_step_seconds"]
    log(f"one DPStep: {profile['plain_step_seconds']:.3f} s unwrapped, {total:.3f} s profiled; "
        f"{profile['total_gflop']:.1f} GFLOP counted in matrix products; "
        f"peak traced memory above the step's start {profile['step_transient_bytes'] / 2**20:.0f} MB")
    log(f"{'stage':12s} {'part':44s} {'calls':>5s} {'s':>7s} {'%':>5s} {'GFLOP':>7s} {'GFLOP/s':>8s} "
        f"{'Melem':>7s} {'MB':>6s}")
    for row in profile["rows"][:top]:
        gflop = row["flops"] / 1e9
        rate = f"{gflop / row['seconds']:8.1f}" if row["flops"] and row["seconds"] > 0 else f"{'':8s}"
        log(f"{row['stage']:12s} {row['part'][:44]:44s} {row['calls']:5d} {row['seconds']:7.3f} "
            f"{100 * row['seconds'] / total:5.1f} {gflop if row['flops'] else float('nan'):7.2f} {rate} "
            f"{row['elements'] / 1e6 if row['elements'] else float('nan'):7.2f} "
            f"{row['transient_bytes'] / 2**20:6.0f}")
    log("by stage:")
    for stage, s in sorted(stage_totals(profile).items(), key=lambda kv: -kv[1]["seconds"]):
        log(f"  {stage:12s} {s['seconds']:7.3f} s  {100 * s['seconds'] / total:5.1f} %  {s['gflop']:7.2f} GFLOP")
