"""Benchmarks: speed and memory are measured here, never in timed tests. bench_step (the DP step against the
non-private step and Opacus; --profile, --study-setting), bench_model, bench_lora_step, bench_denoise,
compare_pld, stress_fast_denoiser; _shapes (the benchmark models), _bench_common (processes, memory),
_bench_study (the study's setting), _step_profile (where one DPStep's time goes)."""
