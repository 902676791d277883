"""RMT denoising of DP-SGD gradient matrices (arXiv 2510.01137; docs/design.md §4; docs/denoiser.md).

    rmt.py          the algorithm on one matrix, readable next to the equations (full SVD)
    fast.py         the same result from the top singular triplets only, same-shape matrices batched
    gradients.py    a whole gradient dict {hf_name: array}: which matrices, exact or fast, per-matrix stats
    diagnostics.py  alignment cosines to the clipped gradient (NON-PRIVATE: for analysis only)
"""
from minidp.denoise.diagnostics import alignment
from minidp.denoise.fast import denoise_group, denoise_groups, rmt_denoise_fast
from minidp.denoise.gradients import default_include, denoise_gradients, summarize
from minidp.denoise.rmt import bulk_edge, rmt_denoise, rmt_denoise_with_stats

__all__ = [
    "rmt_denoise",
    "rmt_denoise_with_stats",
    "denoise_gradients",
    "summarize",
    "default_include",
    "bulk_edge",
    "denoise_group",
    "denoise_groups",
    "rmt_denoise_fast",
    "alignment",
]
