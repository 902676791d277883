"""Benchmark: exact (full SVD, rmt.py) vs fast (top-k, batched; fast.py) RMT denoising of a whole gradient.

Shapes are the 2-D linear weights of an encoder (HF layout (out, in)), per layer:
4 × (H, H) attention Q/K/V/O, (F, H) intermediate, (H, F) output.
    roberta-base:  12 layers, H = 768, F = 3072
    minilm:         6 layers, H = 384, F = 1536
Two gradients per model, float32 by default, noise std s = 1:
    noise    pure noise: nothing passes the edge (what docs/design.md §4 reports for real runs)
    planted  per matrix a rank-3 signal whose noisy singular values land at about 3.0 and 1.6 × the
             bulk edge (kept) and 0.8 × (below the BBP transition: not detectable), plus the noise

The overhead is fast_s / dp_step_s, with the DP step time from ``--dp-step-json PATH`` (the JSON of
``scripts/bench/bench_step.py --json``: key ``dp_s``, or a per-model dict {model: {"dp_s": ...}}) or
``--dp-step-s SECONDS``; with neither, ``dp_step_s`` and ``fast_overhead`` are null.

    python -m scripts.bench.bench_denoise --json bench_denoise.json --dp-step-s 20
    python -m scripts.bench.bench_denoise --quick
    python -m scripts.bench.bench_denoise --device cuda --dp-step-json bench_step.json   # on a GPU (CuPy)

On cuda every timed call ends with ``cupy.cuda.Device().synchronize()``, so the time is the GPU's.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from minidp.backend import get_xp
from minidp.denoise import denoise_gradients, summarize
from minidp.denoise.rmt import bulk_edge, signal_sq_estimate

MODELS = {"roberta-base": (12, 768, 3072), "minilm": (6, 384, 1536)}
QUICK_MODELS = {"minilm-2layers": (2, 384, 1536)}
PLANTED_OVER_EDGE = (3.0, 1.6, 0.8)  # target noisy singular values / bulk edge (0.8: sub-BBP, invisible)


def model_shapes(layers: int, hidden: int, ffn: int) -> dict[str, tuple[int, int]]:
    """{hf_name: shape} of the encoder's linear weights."""
    shapes = {}
    for i in range(layers):
        p = f"roberta.encoder.layer.{i}."
        for proj in ("query", "key", "value"):
            shapes[p + f"attention.self.{proj}.weight"] = (hidden, hidden)
        shapes[p + "attention.output.dense.weight"] = (hidden, hidden)
        shapes[p + "intermediate.dense.weight"] = (ffn, hidden)
        shapes[p + "output.dense.weight"] = (hidden, ffn)
    return shapes


def planted_signal(m: int, n: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """Σ_j θ_j a_j b_jᵀ with θ_j chosen so the noisy singular value sits at PLANTED_OVER_EDGE[j] × edge."""
    edge = bulk_edge(m, n, s)
    X = np.zeros((m, n))
    for ratio in PLANTED_OVER_EDGE:
        lam = max(ratio, 1.0) * edge  # sub-edge targets: the smallest detectable θ, halved below
        theta = math.sqrt(float(signal_sq_estimate(np.array([lam]), s, m, n)[0]))
        if ratio < 1.0:
            theta *= ratio
        a = rng.standard_normal(m)
        b = rng.standard_normal(n)
        X += theta * np.outer(a / np.linalg.norm(a), b / np.linalg.norm(b))
    return X


def make_grads(shapes, case: str, s: float, dtype, xp, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    grads = {}
    for name, (m, n) in shapes.items():
        G = s * rng.standard_normal((m, n), dtype=np.float32)
        if case == "planted":
            G = G + planted_signal(m, n, s, rng).astype(np.float32)
        grads[name] = xp.asarray(G.astype(dtype))
    return grads


def timed(fn, repeats: int, synchronize=lambda: None):
    """(best seconds of ``repeats`` calls after one warm-up, the last result); ``synchronize`` waits for the
    device before the clock starts and before it stops."""
    fn()  # warm-up (BLAS threads, allocations, kernel compilation)
    best = math.inf
    for _ in range(repeats):
        synchronize()
        t0 = time.perf_counter()
        out = fn()
        synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def read_dp_step(args) -> dict | float | None:
    """The DP step time: a float, a {model: seconds} dict, or None."""
    if args.dp_step_s is not None:
        return float(args.dp_step_s)
    if args.dp_step_json is None:
        return None
    with open(args.dp_step_json) as f:
        data = json.load(f)
    per_model = {k: v["dp_s"] for k, v in data.items() if isinstance(v, dict) and "dp_s" in v}
    if per_model:
        if "dp_s" in data:
            per_model["*"] = data["dp_s"]
        return per_model
    if "dp_s" not in data:
        sys.exit(f"bench_denoise: {args.dp_step_json} has no key 'dp_s' (nor per-model dicts with one)")
    return float(data["dp_s"])


def dp_step_for(dp, model: str):
    if isinstance(dp, dict):
        return dp.get(model, dp.get("*"))
    return dp


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--dp-step-json", metavar="PATH", help="JSON of scripts/bench/bench_step.py --json")
    parser.add_argument("--dp-step-s", type=float, metavar="SECONDS", help="measured DP step time")
    parser.add_argument("--quick", action="store_true", help="small shapes, one repeat, no exact timing of big models")
    parser.add_argument("--models", nargs="*", choices=sorted(MODELS), help="default: all")
    parser.add_argument("--cases", nargs="*", default=["noise", "planted"], choices=["noise", "planted"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the gradients live")
    parser.add_argument("--shape", metavar="LAYERS,HIDDEN,FFN",
                        help="one custom encoder shape instead of --models (e.g. 1,32,64 for a smoke test)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for the fast path")
    parser.add_argument("--noise-std", type=float, default=1.0)
    args = parser.parse_args(argv)

    xp = get_xp(args.device)
    synchronize = xp.cuda.Device().synchronize if args.device == "cuda" else (lambda: None)
    dp = read_dp_step(args)
    models = QUICK_MODELS if args.quick else {k: MODELS[k] for k in (args.models or MODELS)}
    if args.shape:
        try:
            models = {f"custom-{args.shape}": tuple(int(v) for v in args.shape.split(","))}
            assert len(next(iter(models.values()))) == 3
        except (ValueError, AssertionError):
            parser.error(f"--shape {args.shape!r}: give LAYERS,HIDDEN,FFN, e.g. 1,32,64")
    repeats = 1 if args.quick else args.repeats
    results = {}
    for model, dims in models.items():
        shapes = model_shapes(*dims)
        dp_s = dp_step_for(dp, model)
        per_case = {}
        for case in args.cases:
            grads = make_grads(shapes, case, args.noise_std, args.dtype, xp, seed=0)
            exact_s, (exact_out, exact_stats) = timed(
                lambda: denoise_gradients(grads, args.noise_std, method="exact"), 1, synchronize)
            fast_s, (fast_out, fast_stats) = timed(
                lambda: denoise_gradients(grads, args.noise_std, method="fast"), repeats, synchronize)
            rel = max(float(xp.linalg.norm((fast_out[k] - exact_out[k]).astype(xp.float64)))
                      / max(float(xp.linalg.norm(exact_out[k].astype(xp.float64))), 1e-300) for k in shapes)
            iters = [st.get("iterations") for st in fast_stats.values()]
            per_case[case] = {
                "exact_s": exact_s,
                "fast_s": fast_s,
                "speedup": exact_s / fast_s,
                "fast_overhead": fast_s / dp_s if dp_s else None,
                "max_rel_diff_fast_vs_exact": rel,
                "kept_exact": summarize(exact_stats)["total_kept"],
                "kept_fast": summarize(fast_stats)["total_kept"],
                "fast_methods": sorted({st["method"] for st in fast_stats.values()}),
                "fast_iterations_max": max((i for i in iters if i is not None), default=None),
            }
            c = per_case[case]
            print(f"{model:>15s} {case:>8s}: exact {exact_s:7.3f} s  fast {fast_s:7.3f} s  "
                  f"({c['speedup']:.1f}x)  kept {c['kept_exact']}/{c['kept_fast']}  "
                  f"max rel diff {rel:.1e}  iters<= {c['fast_iterations_max']}  "
                  f"overhead {'n/a' if dp_s is None else format(c['fast_overhead'], '.2%')}", flush=True)
        worst_fast = max(c["fast_s"] for c in per_case.values())
        results[model] = {
            "shapes": sorted({f"{m}x{n}" for m, n in shapes.values()}),
            "num_matrices": len(shapes),
            "dtype": args.dtype,
            "device": args.device,
            "cases": per_case,
            "exact_s": max(c["exact_s"] for c in per_case.values()),
            "fast_s": worst_fast,
            "dp_step_s": dp_s,
            "fast_overhead": worst_fast / dp_s if dp_s else None,
        }
    if dp is None:
        print("no --dp-step-json / --dp-step-s given: dp_step_s and fast_overhead are null")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
