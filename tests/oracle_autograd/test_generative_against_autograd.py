# ---------------------------------------------------------------------------------------------
# Generative models (the input predicted from the states) against autograd of their energy
# written out by hand:
#     E(h1, h2) = 1/2 |x - sigmoid(W_x h1 + b_x)|^2 + 1/2 |h1 - tanh(W_1 h2 + b_1)|^2 + 1/2 |h2|^2
#   - the compiled predictions, energies and state gradients equal the hand-written ones;
#   - the free phase (gradient relaxation with the data clamped) reaches a stationary point of E;
#   - inference learning's weight gradient is autograd's dE/dtheta at the relaxed states, and at
#     the minimum it is the gradient of the minimised energy min_h E(h; theta) (the envelope
#     theorem), checked against central finite differences of that minimum;
#   - sampling: the fitted Gaussian is the inferred top states' mean and covariance, and the
#     ancestral pass is the hand-written top-down decoder.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import build
from support.catalogue import GENERATIVE as GENERATIVE_MODELS
from pcdsl.runtime import generate
from pcdsl.runtime.estimators import generative_gradients, pcil_gradients

GENERATIVE = """model gen {
  input x  : [12] ~ sigmoid(dense(h1, 12) + bias)
  state h1 : [6]  ~ tanh(dense(h2, 6) + bias)
  state h2 : [3]
  energy prior = 0.5 * sum(h2 ** 2)
}
train {
  pcil(free_steps=400)
  relax(step=0.2)
}"""


def _weights(model) -> dict:
    return dict(model.named_parameters())


def _energy(w, x, h1, h2):
    ex = 0.5 * ((x - torch.sigmoid(F.linear(h1, w["x_w_h1"], w["x_b"]))) ** 2).sum(1)
    e1 = 0.5 * ((h1 - torch.tanh(F.linear(h2, w["h1_w_h2"], w["h1_b"]))) ** 2).sum(1)
    return ex + e1 + 0.5 * (h2 ** 2).sum(1)


def _decode(w, h2):
    h1 = torch.tanh(F.linear(h2, w["h1_w_h2"], w["h1_b"]))
    return h1, torch.sigmoid(F.linear(h1, w["x_w_h1"], w["x_b"]))


def _data(batch=5, seed=3):
    return torch.rand((batch, 12), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _model(text: str = GENERATIVE):
    _, model = build(text)
    with torch.no_grad():              # weights large enough for the latents to matter
        for p in model.parameters():
            p.mul_(2.0)
    return model


def test_the_module_is_generative():
    model = _model()
    assert (model.OUTPUT, model.COST, model.NUM_CLASSES, model.INPUT) == (None, None, None, "x")
    assert model.FEEDFORWARD is False
    assert set(model.UPDATE_RULES.values()) == {"gradient"}


def test_predictions_energies_and_state_gradients_equal_the_hand_written_ones():
    model, x = _model(), _data()
    generator = torch.Generator().manual_seed(5)
    h1 = torch.randn((5, 6), generator=generator, dtype=torch.float64).requires_grad_(True)
    h2 = torch.randn((5, 3), generator=generator, dtype=torch.float64).requires_grad_(True)
    w = _weights(model)
    states = {"h1": h1, "h2": h2}
    predictions = model.predictions(x, states)
    torch.testing.assert_close(predictions["x"], torch.sigmoid(F.linear(h1, w["x_w_h1"], w["x_b"])))
    torch.testing.assert_close(predictions["h1"], torch.tanh(F.linear(h2, w["h1_w_h2"], w["h1_b"])))
    energy = _energy(w, x, h1, h2)
    torch.testing.assert_close(model.energy(x, states), energy)
    g1, g2 = torch.autograd.grad(energy.sum(), [h1, h2])
    grads = model.state_grads(x, states)
    torch.testing.assert_close(grads["h1"], g1)
    torch.testing.assert_close(grads["h2"], g2)


def test_the_free_phase_reaches_a_stationary_point_of_the_energy():
    model, x = _model(), _data()
    with torch.no_grad():
        states = model(x)
    h1, h2 = (states[n].detach().requires_grad_(True) for n in ("h1", "h2"))
    g1, g2 = torch.autograd.grad(_energy(_weights(model), x, h1, h2).sum(), [h1, h2])
    assert max(float(g1.abs().max()), float(g2.abs().max())) < 1e-8


def test_the_weight_gradient_is_autograd_at_the_relaxed_states():
    model, x = _model(), _data()
    estimate = pcil_gradients(model, x, None, 3)           # pcil on a generative model: inference learning
    states = estimate["relaxed"]
    params = list(model.parameters())
    energy = _energy(_weights(model), x, states["h1"], states["h2"]).mean()
    truth = torch.autograd.grad(energy, params)
    for got, want in zip(estimate["grads"], truth):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    reconstruction = model.predictions(x, states)["x"]
    torch.testing.assert_close(estimate["loss"], ((reconstruction - x) ** 2).mean())


def test_at_the_minimum_it_is_the_gradient_of_the_minimised_energy():
    """The envelope theorem: d/dtheta min_h E(h; theta) = dE/dtheta at the minimiser. The
    directional derivative of the minimum along a random direction, by central differences of
    two long relaxations, against the estimate's inner product with that direction."""
    model, x = _model(), _data()
    estimate = generative_gradients(model, x, free_steps=2000)
    direction = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
                 for i, p in enumerate(model.parameters())]
    step = 1e-5

    def minimum(sign: float) -> float:
        with torch.no_grad():
            for p, d in zip(model.parameters(), direction):
                p.add_(sign * step * d)
            value = float(model.energy(x, model(x, 2000)).mean())
            for p, d in zip(model.parameters(), direction):
                p.sub_(sign * step * d)
        return value

    finite_difference = (minimum(1.0) - minimum(-1.0)) / (2 * step)
    predicted = sum(float((g * d).sum()) for g, d in zip(estimate["grads"], direction))
    assert predicted == pytest.approx(finite_difference, rel=1e-5)


def test_the_fitted_gaussian_is_the_inferred_top_states_mean_and_covariance():
    model, x = _model(), _data(batch=40)
    assert generate.top_states(model) == ["h2"]
    fitted = generate.fit_top_distribution(model, [(x[:25], None), (x[25:], None)])
    with torch.no_grad():
        top = model(x)["h2"]
    mean, scale = fitted["h2"]
    torch.testing.assert_close(mean, top.mean(0))
    torch.testing.assert_close(scale @ scale.T, torch.cov(top.T), rtol=1e-4, atol=1e-8)


def test_a_sample_is_the_top_down_decoding_of_a_drawn_top_state():
    model = _model()
    mean = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    scale = torch.tensor([[0.5, 0.0, 0.0], [0.1, 0.4, 0.0], [0.0, -0.2, 0.3]], dtype=torch.float64)
    drawn = generate.sample(model, {"h2": (mean, scale)}, 4, torch.Generator().manual_seed(7))
    noise = torch.randn((4, 3), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    _, expected = _decode(_weights(model), mean + noise @ scale.T)
    torch.testing.assert_close(drawn, expected)


def test_images_are_laid_out_as_squares_and_channels():
    values = torch.linspace(-0.5, 1.5, 2 * 16).view(2, 16)
    images = generate.as_images(values, (16,))
    assert images.shape == (2, 4, 4) and float(images.min()) == 0.0 and float(images.max()) == 1.0
    colour = generate.as_images(torch.zeros((1, 3, 2, 5)), (3, 2, 5), mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    assert colour.shape == (1, 2, 5, 3) and torch.all(colour == 0.5)
    with pytest.raises(generate.GenerationError, match="square number"):
        generate.as_images(torch.zeros((1, 12)), (12,))


@pytest.mark.parametrize("entry", GENERATIVE_MODELS, ids=lambda e: e.id)
def test_every_generative_model_learns_the_gradient_of_its_relaxed_energy(entry):
    """Every generative model of the catalogue: with relaxations long enough (its header's
    free_steps) the update is autograd's gradient of the energy at the end of the relaxation,
    taken through the iterations (what `pcdsl gradcheck --algorithm pcil` checks)."""
    _, model = build(entry.path, list(entry.sets))
    x = _data(batch=3, seed=11).new_empty((3, *model.INPUT_SHAPE)).uniform_(0, 1, generator=torch.Generator().manual_seed(11))
    estimate = generative_gradients(model, x, free_steps=entry.free_steps)
    params = list(model.parameters())
    energy = model.energy(x, model(x, entry.free_steps)).mean()
    truth = torch.autograd.grad(energy, params)
    for (name, _), got, want in zip(model.named_parameters(), estimate["grads"], truth):
        assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.9999, name


def test_the_top_down_error_decodes_the_inferred_top_states_by_hand():
    model, x = _model(), _data()
    with torch.no_grad():
        inferred = model(x)["h2"]
    _, decoded = _decode(_weights(model), inferred)
    torch.testing.assert_close(generate.top_down_errors(model, x), ((decoded - x) ** 2).mean(1))


# -- generative classification: the top state clamped to the one-hot label ---------------------
CLASSIFIER = """model classifier {
  input x  : [12] ~ sigmoid(dense(h1, 12) + bias)
  state h1 : [6]  ~ tanh(dense(c, 6) + bias)
  state c  : [4]
  energy prior = 0.5 * sum(c ** 2)
}
train {
  pcil(free_steps=40, label=c)
  relax(step=0.2)
}"""


def _classifier_energy(w, x, h1, c):
    ex = 0.5 * ((x - torch.sigmoid(F.linear(h1, w["x_w_h1"], w["x_b"]))) ** 2).sum(1)
    e1 = 0.5 * ((h1 - torch.tanh(F.linear(c, w["h1_w_c"], w["h1_b"]))) ** 2).sum(1)
    return ex + e1 + 0.5 * (c ** 2).sum(1)


def _clamped_by_hand(model, x, c, steps):
    """Synchronous gradient sweeps of h1 with c held, each moving half the step (two groups)."""
    h1 = torch.zeros((x.shape[0], 6), dtype=x.dtype)
    for _ in range(steps):
        h1 = h1.detach().requires_grad_(True)
        grad, = torch.autograd.grad(_classifier_energy(_weights(model), x, h1, c).sum(), [h1])
        h1 = (h1 - 0.5 * model.RELAX_STEP * grad).detach()
    return h1


def _classifier():
    return _model(CLASSIFIER)


def test_clamped_inference_and_its_update_equal_the_hand_written_ones():
    model, x = _classifier(), _data()
    label = torch.tensor([0, 3, 1, 1, 2])
    c = F.one_hot(label, 4).to(x.dtype)
    estimate = pcil_gradients(model, x, label, 1, label_state="c")
    h1 = _clamped_by_hand(model, x, c, 40)
    torch.testing.assert_close(estimate["relaxed"]["h1"], h1)
    torch.testing.assert_close(estimate["relaxed"]["c"], c)
    truth = torch.autograd.grad(_classifier_energy(_weights(model), x, h1, c).mean(), list(model.parameters()))
    for got, want in zip(estimate["grads"], truth):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_the_class_is_the_clamp_with_the_lowest_energy():
    model, x = _classifier(), _data()
    energies = generate.class_energies(model, x, "c")
    by_hand = torch.stack([
        _classifier_energy(_weights(model), x, _clamped_by_hand(model, x, F.one_hot(torch.full((5,), k), 4).to(x.dtype), 40),
                           F.one_hot(torch.full((5,), k), 4).to(x.dtype)) for k in range(4)], 1)
    torch.testing.assert_close(energies, by_hand.detach())
    assert energies.shape == (5, 4)
