"""Empirical privacy auditing: plant canaries in the real DP step, attack them, and turn the attack into a
lower bound on ε — to hold against the accountant's ε, an upper bound.

    result = audit_gaussian(epsilon=2.0, delta=1e-5)     # calibration: the bare Gaussian mechanism
    result = audit_dpsgd(epsilon=3.0, delta=1e-5)        # the real DP-SGD step (tiny BERT by default)
    result.epsilon_lower, result.epsilon_accountant, result.violation, result.to_dict()

Canaries: Dirac gradient canaries (Nasr et al. 2023, "Tight auditing of differentially private machine
learning"). Canary j is an example whose whole gradient is a·C·e_j — norm a·C (a = ``canary_norm``, 1 by
default) on one coordinate e_j of a parameter, by default a row of the position-embedding table past the
longest sequence, which no real example ever touches. Each of the m canaries is in the training set with
probability ½: those inclusion bits are the secret. An included canary is an example like any other: it is
Poisson-sampled at every step, its norm enters the same clip factor min(1, C/‖∇_i‖) as the real examples'
(privacy/clipping.py, clipped with its whole gradient), and its clipped gradient the same sum that
``add_noise`` releases. An excluded canary stays in the dataset with a zero gradient — the same as absent,
as it adds nothing to the sum — so the dataset size, and the public divisor qN, do not depend on the bits.
Nothing in DPStep changes: the canaries enter through a dataset wrapper (``CanaryDataset``) and a model
wrapper (``CanaryModel``) whose per-example records hold the canaries' gradients beside the real ones.

Attack (white box): the attacker sees every released gradient g_t (the denoised one when the denoiser is
on: post-processing) and scores canary j by s_j = Σ_t ⟨g_t, e_j⟩. The canaries (of every run) are split into
two halves: on the first the attacker chooses how many guesses to make and a threshold; on the second those
choices are applied once and turned into ε lower bounds (``minidp/privacy/lower_bounds.py``):
* one-run bound (Steinke, Nasr & Jagielski 2023): guess "in" for the k_in highest scores and "out" for the
  k_out lowest; valid however the canaries interact (denoiser, parameters shared with the data);
* a threshold test with Clopper–Pearson intervals: needs independent canaries, so it is used only when each
  canary's coordinate is untouched by the data and by the denoiser (the bare mechanism; DP-SGD with the
  default canaries). Then both bounds are computed at confidence 1 − (1 − c)/2 and ``epsilon_lower`` is the
  larger (together they hold at c); otherwise ``epsilon_lower`` is the one-run bound at c.
Repeated runs pool their canaries: each canary affects only its own run, so every bound stays valid.

Fault injection, to show that the audit has power: ``noise_multiplier=0`` (no noise) and ``clip=False``
(the canaries' gradients skip clipping; the accountant still assumes sensitivity

    canaries.py   the canaries, their per-example records, the models and data an audit trains on
    attack.py     the attacker: choices on one half of the canaries, ε lower bounds on the other
    audits.py     audit_gaussian, audit_dpsgd and their AuditResult
"""
from minidp.run.audit.audits import MECHANISMS, audit_dpsgd, audit_gaussian
from minidp.run.audit.canaries import (TINY_CONFIG, CanaryDataset, CanaryModel, CanaryRecord, MixedRecord,
                                       canary_coordinates, load_audit_model, random_token_data)

__all__ = ["MECHANISMS", "TINY_CONFIG", "CanaryDataset", "CanaryModel", "CanaryRecord", "MixedRecord", "audit_dpsgd",
           "audit_gaussian", "canary_coordinates", "load_audit_model", "random_token_data"]
