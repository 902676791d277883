"""Where the float32 gradients of the benchmark's methods differ: each against the same model in float64.

    python -m scripts.bench.grad_agreement [--layers N] [--seq-len T] [--batch B]

bench_step reports how far its methods' gradient norms spread (float32). This script says whose rounding
the spread is: it builds the benchmark's random model and batch (scripts/bench/_shapes.py) once, computes
minidp's non-private gradient norm and clipped-sum norm in float64 (minidp's float64 path equals
transformers to 1e-12, tests/oracle), then each method's float32 norm and its relative difference from that
reference: minidp (with the fast float32 Φ of GELU and with the plain erf form), torch, Opacus ghost
clipping. No timing.
"""
from __future__ import annotations

import argparse

from minidp.nn import activations
from minidp.numerics import normal_cdf_plain
from minidp.privacy.clipping import clipped_grad_sum
from models.roberta import SequenceClassifier
from scripts.bench import bench_step
from scripts.bench._shapes import init_weights, make_inputs, model_fields


def minidp_norms(spec: dict, dtype: str) -> tuple[float, float]:
    """(‖summed gradient‖, ‖clipped sum‖) of minidp's model in ``dtype``."""
    fields = model_fields(spec)
    config, params = init_weights(fields, spec["seed"])
    model = SequenceClassifier(config, params, dtype=dtype, device="cpu")
    ids, mask, labels = make_inputs(fields, spec["batch"], spec["seq_len"], spec["seed"] + 1)
    _, grads = model.loss_and_grads(ids, mask, labels)
    clipped, _ = clipped_grad_sum(model, ids, mask, labels, max_grad_norm=spec["max_grad_norm"])
    return bench_step._norm_of(grads), bench_step._norm_of(clipped)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm", help="the benchmark's model shapes (bench_step --models)")
    parser.add_argument("--layers", type=int, default=None, help="override the number of layers")
    parser.add_argument("--vocab-size", type=int, default=None, help="override the vocabulary (smaller: faster)")
    parser.add_argument("--seq-len", type=int, default=128, help="T")
    parser.add_argument("--batch", type=int, default=32, help="B")
    parser.add_argument("--seed", type=int, default=0, help="weights and batch seed (as bench_step)")
    args = parser.parse_args(argv)
    spec = {"model": args.model, "seq_len": args.seq_len, "batch": args.batch, "repeats": 1, "seed": args.seed,
            "max_grad_norm": 1.0, "layers": args.layers, "vocab_size": args.vocab_size, "device": "cpu"}
    ref_plain, ref_clipped = minidp_norms(spec, "float64")
    rows = {}
    rows["minidp float32 (fast Φ)"] = minidp_norms(spec, "float32")
    fast = activations.normal_cdf
    activations.normal_cdf = normal_cdf_plain
    try:
        rows["minidp float32 (plain erf Φ)"] = minidp_norms(spec, "float32")
    finally:
        activations.normal_cdf = fast
    for method in ("torch_nonprivate", "opacus_ghost"):
        step, _ = bench_step.torch_worker({**spec, "method": method})
        norm = step()
        rows[method + " float32"] = (norm, None) if method == "torch_nonprivate" else (None, norm)
    print(f"reference (minidp float64): summed gradient {ref_plain:.9f}, clipped sum {ref_clipped:.9f}")
    for name, (plain, clipped) in rows.items():
        parts = []
        if plain is not None:
            parts.append(f"summed {plain:.7f} ({(plain - ref_plain) / ref_plain:+.2e})")
        if clipped is not None:
            parts.append(f"clipped {clipped:.7f} ({(clipped - ref_clipped) / ref_clipped:+.2e})")
        print(f"{name:30s} " + "   ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
