"""The study and the benchmarks around minidp, run from the repository root as modules:

    python -m scripts.study.reproduce --runs-dir DIR        # the RMT study (scripts/study/)
    python -m scripts.bench.bench_step --profile            # the benchmarks (scripts/bench/)
    bash scripts/gpu_check.sh                               # the suite and the benchmarks on a GPU
    python -m scripts.property_seeds                        # the property tests under 50 seeds

The .py files beside this one are old paths kept as shims (reproduce.py, regime_map.py, bench_denoise.py,
choose_demo_lr.py: a running study and generated reports name them), and the study_plan*.json files here
extend the plans in scripts/study/.
"""
