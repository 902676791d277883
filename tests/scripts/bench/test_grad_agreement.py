"""scripts/bench/grad_agreement.py runs on a small model and prints every method against the float64 reference."""
from __future__ import annotations

from minidp import numerics
from scripts.bench import grad_agreement


def test_every_method_is_printed_against_the_float64_reference(capsys):
    assert grad_agreement.main(["--layers", "1", "--vocab-size", "2000", "--seq-len", "16", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "reference (minidp float64)" in out
    for name in ("minidp float32 (fast Φ)", "minidp float32 (plain erf Φ)", "torch_nonprivate float32",
                 "opacus_ghost float32"):
        assert name in out
    assert grad_agreement.activations.normal_cdf is numerics.normal_cdf  # the fast form is put back
