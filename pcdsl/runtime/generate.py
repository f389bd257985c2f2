# ---------------------------------------------------------------------------------------------
# What a trained generative model produces: samples and reconstructions, as tensors and as
# PNG image grids.
#
# A generative model (its input predicted from its states) is deterministic: its top states,
# the ones no `~` term predicts, have no distribution of their own beyond the energy's prior
# term. Samples follow the practice of deterministic generative PCNs: the top states are
# inferred for training data (the free phase, the data clamped), a Gaussian is fitted to them
# (full covariance up to MAX_FULL_COVARIANCE dimensions, per-dimension beyond), new top states
# are drawn from it, and every other state and the input take their predictions from the
# states above (the ancestral pass, top-down through the `~` terms).
#
# Generative classification (`pcil(label=c)`): training holds the top state c at the one-hot
# label while the other states explain the image. A test image's class is the one whose clamp
# leaves the lowest relaxed energy (the most probable class under the model, with equal priors),
# one clamped relaxation per class; a class's samples decode its one-hot code (with the other
# top states, if any, drawn as above).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math

import torch

from pcdsl.runtime.estimators import clamped_free_phase, one_hot

MAX_FULL_COVARIANCE = 1024


class GenerationError(ValueError):
    """The model or its input cannot be sampled or shown as images; the message is for the user."""


def require_generative(model) -> None:
    if model.OUTPUT is not None:
        raise GenerationError(f"{model.NAME} is a supervised model (output `{model.OUTPUT}`): only a generative "
                              "model, whose input is predicted from its states (`input x : [...] ~ ...`), "
                              "generates data")


def top_states(model) -> list[str]:
    """The states no `~` term predicts: where the ancestral pass starts. A `~` term is named
    after its target and an `energy` term has a name of its own (E102), so the predicted states
    are those that name a term in TERM_PARAMETERS."""
    return [state for state in model.STATES if state not in model.TERM_PARAMETERS]


@torch.no_grad()
def ancestral_pass(model, top: dict[str, torch.Tensor]) -> tuple[dict, torch.Tensor]:
    """(states, input): the top states as given, every other state and the input their
    predictions from the states above. The predictions form no cycle through the states below
    the top (every one of them is predicted), so as many passes as there are states settle
    each one at its prediction from the final values above it; each state is then projected
    into its domain."""
    batch = next(iter(top.values())).shape[0]
    reference = next(model.parameters())
    states = {name: top[name] if name in top else
              torch.zeros((batch, *model.STATE_SHAPES[name]), dtype=reference.dtype, device=reference.device)
              for name in model.STATES}
    data = torch.zeros((batch, *model.INPUT_SHAPE), dtype=reference.dtype, device=reference.device)
    for _ in range(len(model.STATES) + 1):
        predictions = model.predictions(data, states)
        data = predictions[model.INPUT]
        for name in model.STATES:
            if name in predictions and name not in top:
                low, high = model.STATE_BOUNDS[name]
                value = predictions[name]
                states[name] = value if low is None and high is None else value.clamp(low, high)
    return states, data


@torch.no_grad()
def infer(model, x: torch.Tensor, free_steps: int | None = None) -> dict:
    """The states that explain `x` (the free phase, the data clamped)."""
    return model(x, free_steps)


@torch.no_grad()
def explain(model, x: torch.Tensor, free_steps: int | None = None, label_state: str | None = None
            ) -> tuple[dict, torch.Tensor | None]:
    """(states, class energies or None): the states that explain `x`: the free phase, or for a
    generative classifier the clamped free phase of the class with the lowest energy (with the
    [B, classes] energies of every class's clamp)."""
    if label_state is None:
        return infer(model, x, free_steps), None
    energies = class_energies(model, x, label_state, free_steps)
    chosen = one_hot(model, label_state, energies.argmin(1), x)
    return clamped_free_phase(model, x, label_state, chosen, free_steps), energies


@torch.no_grad()
def class_energies(model, x: torch.Tensor, label_state: str, free_steps: int | None = None) -> torch.Tensor:
    """Generative classification: per example and class, the energy left after the free phase
    with `label_state` clamped to that class's one-hot code, shape [B, classes]; the class is
    the argmin."""
    energies = []
    for k in range(model.STATE_SHAPES[label_state][0]):
        label = torch.full((x.shape[0],), k, dtype=torch.long, device=x.device)
        states = clamped_free_phase(model, x, label_state, one_hot(model, label_state, label, x), free_steps)
        energies.append(model.energy(x, states))
    return torch.stack(energies, 1)


@torch.no_grad()
def fit_top_distribution(model, batches, free_steps: int | None = None, label_state: str | None = None) -> dict:
    """A Gaussian per top state, fitted to its inferred values over `batches` of data (of
    (x, label) pairs): name -> (mean, scale), where scale is the Cholesky factor of the
    covariance (or the standard deviations, beyond MAX_FULL_COVARIANCE dimensions). With
    `label_state`, inference clamps it to each example's label and it gets no Gaussian."""
    values: dict[str, list[torch.Tensor]] = {name: [] for name in require_top_states(model) if name != label_state}
    reference = next(model.parameters())
    for x, label in batches:
        x = x.to(reference.device, reference.dtype)
        if label_state is None:
            states = infer(model, x, free_steps)
        else:
            value = one_hot(model, label_state, label.to(reference.device), x)
            states = clamped_free_phase(model, x, label_state, value, free_steps)
        for name in values:
            values[name].append(states[name].flatten(1))
    fitted = {}
    for name, parts in values.items():
        flat = torch.cat(parts).double()
        if flat.shape[0] < 2:
            raise GenerationError("fitting the top states' distribution needs at least 2 training examples")
        mean = flat.mean(0)
        centred = flat - mean
        if flat.shape[1] <= MAX_FULL_COVARIANCE:
            covariance = centred.T @ centred / (flat.shape[0] - 1)
            # a little jitter: a covariance of fewer examples than dimensions is singular
            jitter = 1e-6 * max(float(covariance.diagonal().mean()), 1e-12)
            scale = torch.linalg.cholesky(covariance + jitter * torch.eye(flat.shape[1], dtype=flat.dtype))
        else:
            scale = centred.std(0)
        fitted[name] = (mean, scale)
    return fitted


@torch.no_grad()
def sample(model, fitted: dict, count: int, generator: torch.Generator,
           clamped: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """`count` inputs generated from top states drawn from `fitted` (fit_top_distribution),
    and those of `clamped` as given ([count, ...] each: a label state's one-hot codes)."""
    reference = next(model.parameters())
    top = dict(clamped or {})
    for name, (mean, scale) in fitted.items():
        noise = torch.randn((count, mean.shape[0]), generator=generator, dtype=torch.float64)
        drawn = mean + (noise @ scale.T if scale.dim() == 2 else noise * scale)
        drawn = drawn.to(reference.device, reference.dtype).view(count, *model.STATE_SHAPES[name])
        low, high = model.STATE_BOUNDS[name]      # a Gaussian reaches past a bounded domain
        top[name] = drawn if low is None and high is None else drawn.clamp(low, high)
    return ancestral_pass(model, top)[1]


@torch.no_grad()
def reconstruct(model, x: torch.Tensor, free_steps: int | None = None, label_state: str | None = None
                ) -> torch.Tensor:
    """The model's prediction of `x` from the states that relaxed to explain it (explain)."""
    return model.predictions(x, explain(model, x, free_steps, label_state)[0])[model.INPUT]


@torch.no_grad()
def top_down_errors(model, x: torch.Tensor, free_steps: int | None = None, label_state: str | None = None
                    ) -> torch.Tensor:
    """Per-example mean squared error of the input decoded from the inferred top states alone
    (the ancestral pass from them), shape [B]: how much of the data the top of the hierarchy
    explains, which is what samples are drawn from. The reconstruction error uses every
    state, and a wide state next to the input can explain the data on its own."""
    tops = require_top_states(model)
    states, _ = explain(model, x, free_steps, label_state)
    _, decoded = ancestral_pass(model, {name: states[name] for name in tops})
    return ((decoded - x) ** 2).flatten(1).mean(1)


def require_top_states(model) -> list[str]:
    tops = top_states(model)
    if not tops:
        raise GenerationError(f"every state of {model.NAME} is predicted (its predictions run in a cycle through "
                              "the input): it has no top state to decode or draw samples from")
    return tops


# ---- images ---------------------------------------------------------------------------------

def as_images(values: torch.Tensor, input_shape: tuple[int, ...], mean=None, std=None) -> torch.Tensor:
    """[N, H, W] or [N, H, W, 3] values in [0, 1] of inputs of `input_shape`: a vector of a
    square number of entries is a square grey image, [1 or 3, H, W] a grey or colour one; a
    normalised input (`normalize(mean=, std=)`) is mapped back first, then values are clipped."""
    values = values.detach().to("cpu", torch.float64)
    if len(input_shape) == 1:
        # a flattened image: grey, or colour when the normalisation has three channels
        channels = len(mean) if mean is not None and len(mean) == 3 else 1
        side = math.isqrt(input_shape[0] // channels)
        if channels * side * side != input_shape[0]:
            raise GenerationError(f"inputs of shape {list(input_shape)} are not images: a vector needs a square "
                                  "number of pixels (times 3 for colour)")
        values = values.view(-1, channels, side, side)
    elif len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise GenerationError(f"inputs of shape {list(input_shape)} are not images: expected [pixels], "
                              "[1, H, W] or [3, H, W]")
    else:
        values = values.view(-1, *input_shape)
    if mean is not None and std is not None:
        shape = (1, len(mean), 1, 1)
        values = values * torch.tensor(std, dtype=values.dtype).view(shape) + torch.tensor(mean, dtype=values.dtype).view(shape)
    values = values.clamp(0.0, 1.0)
    return values[:, 0] if values.shape[1] == 1 else values.permute(0, 2, 3, 1)


def image_grid(images: torch.Tensor, columns: int, padding: int = 2, scale: int = 2) -> bytes:
    """PNG bytes of `images` ([N, H, W] or [N, H, W, 3] in [0, 1]) in rows of `columns`, on a
    mid-grey background, each pixel drawn `scale` x `scale`."""
    from PIL import Image
    import io
    count, height, width = images.shape[:3]
    colour = images.dim() == 4
    rows = math.ceil(count / columns)
    canvas = torch.full((rows * (height + padding) + padding, columns * (width + padding) + padding)
                        + ((3,) if colour else ()), 0.5, dtype=torch.float64)
    for index in range(count):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        canvas[top:top + height, left:left + width] = images[index]
    pixels = (canvas * 255).round().to(torch.uint8).numpy()
    picture = Image.fromarray(pixels, mode="RGB" if colour else "L")
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
