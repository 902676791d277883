"""The auto-encoder's forward/backward pairs against finite differences (float64), and its training."""
from __future__ import annotations

import numpy as np
import pytest

from minidp.errors import ConfigError
from minidp.run.federated import autoencoder as ae
from tests.nn.gradcheck import check_grad

TOL = 1e-6
SPECS = [ae.AutoEncoderSpec(kind="linear", d=7, k=3), ae.AutoEncoderSpec(kind="mlp", d=6, k=2, hidden=5)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_encoder_backward(spec):
    rng = np.random.default_rng(0)
    p = ae.init_params(spec, rng, device="cpu")
    x = rng.standard_normal((4, spec.d))  # (B, d)
    R = rng.standard_normal((4, spec.k))  # L = Σ z · R
    scale = 0.7

    def loss():
        return float((ae.encoder_forward(p, x, kind=spec.kind, scale=scale)[0] * R).sum())

    _, cache = ae.encoder_forward(p, x, kind=spec.kind, scale=scale)
    dx, grads = ae.encoder_backward(p, cache, R, kind=spec.kind, scale=scale)
    check_grad(loss, x, dx, tol=TOL, name=f"{spec.kind} encoder dx")
    for name, g in grads.items():
        check_grad(loss, p[name], g, tol=TOL, name=f"{spec.kind} {name}")
    assert set(grads) == {n for n in p if n.startswith("encoder")}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_decoder_backward(spec):
    rng = np.random.default_rng(1)
    p = ae.init_params(spec, rng, device="cpu")
    z = rng.standard_normal((5, spec.k))  # (B, k)
    R = rng.standard_normal((5, spec.d))
    scale = 1.9

    def loss():
        return float((ae.decoder_forward(p, z, kind=spec.kind, scale=scale)[0] * R).sum())

    _, cache = ae.decoder_forward(p, z, kind=spec.kind, scale=scale)
    dz, grads = ae.decoder_backward(p, cache, R, kind=spec.kind, scale=scale)
    check_grad(loss, z, dz, tol=TOL, name=f"{spec.kind} decoder dz")
    for name, g in grads.items():
        check_grad(loss, p[name], g, tol=TOL, name=f"{spec.kind} {name}")
    assert set(grads) == {n for n in p if n.startswith("decoder")}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_whole_loss_backward(spec):
    """The reconstruction loss end to end: every parameter's gradient against finite differences."""
    rng = np.random.default_rng(2)
    model = ae.AutoEncoder(spec=spec, params=ae.init_params(spec, rng, device="cpu"), scale=0.3)
    x = 0.3 * rng.standard_normal((6, spec.d))
    _, grads = model.loss_and_grads(x)
    assert set(grads) == set(model.params)
    for name, g in grads.items():
        check_grad(lambda: model.loss_and_grads(x)[0], model.params[name], g, tol=TOL, name=f"{spec.kind} {name}")


def test_mse_gradient():
    rng = np.random.default_rng(3)
    x, x_hat = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    _, d = ae.mse_forward(x_hat, x, scale=2.0)
    check_grad(lambda: ae.mse_forward(x_hat, x, scale=2.0)[0], x_hat, d, tol=TOL, name="mse dx_hat")


def test_linear_training_finds_the_principal_subspace():
    """Vectors on a 2-D subspace of R^8: a k = 2 linear auto-encoder learns to reconstruct them."""
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.standard_normal((8, 2)))[0]  # (8, 2)
    vectors = 1e-3 * rng.standard_normal((512, 2)) @ basis.T  # (512, 8), tiny like LoRA updates
    model, history = ae.train_autoencoder(vectors, ae.AutoEncoderSpec(kind="linear", d=8, k=2),
                                          rng=rng, steps=400, lr=2e-2, batch_size=128)
    err = ae.relative_error(vectors, model.decode(model.encode(vectors)))
    print(f"first loss {history[0]:.3f}, last {history[-1]:.2e}, relative error {err:.2e}")
    assert err < 1e-3 and history[-1] < history[0]


def test_linear_is_scale_equivariant():
    rng = np.random.default_rng(5)
    spec = ae.AutoEncoderSpec(kind="linear", d=5, k=2)
    model = ae.AutoEncoder(spec=spec, params=ae.init_params(spec, rng, device="cpu"), scale=3.0)
    x = rng.standard_normal((3, 5))
    assert np.allclose(model.decode(model.encode(7.0 * x)), 7.0 * model.decode(model.encode(x)), rtol=1e-12)
    assert np.all(model.encode(np.zeros((1, 5))) == 0)


def test_bad_specs():
    with pytest.raises(ConfigError):
        ae.AutoEncoderSpec(kind="conv", d=4, k=2)
    with pytest.raises(ConfigError):
        ae.AutoEncoderSpec(kind="linear", d=4, k=0)
    with pytest.raises(ConfigError):
        ae.AutoEncoderSpec(kind="mlp", d=4, k=2, hidden=0)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_match_latent_norm_keeps_reconstructions(spec):
    rng = np.random.default_rng(6)
    model = ae.AutoEncoder(spec=spec, params=ae.init_params(spec, rng, device="cpu"), scale=0.05)
    x = 0.05 * rng.standard_normal((20, spec.d))
    before = model.decode(model.encode(x))
    a = ae.match_latent_norm(model, x)
    z = model.encode(x)
    print(spec.kind, f"factor {a:.3g}")
    np.testing.assert_allclose(model.decode(z), before, rtol=1e-10, atol=1e-14)
    assert abs((z ** 2).sum() / (x ** 2).sum() - 1.0) < 1e-12
