# ---------------------------------------------------------------------------------------------
# A training loop of one's own, in Python, around a compiled pcdsl model (notebook style: run
# it top to bottom, or cell by cell).
#
#   python examples/custom_training_loop.py            # about 20 s on two CPU cores
#
# pcdsl.load compiles a model file (or a shipped model by name) into a torch.nn.Module class.
# Its members are the primitives of EP: the free phase, the relaxation, the energies, the
# parameter gradients at fixed states. Below, centered EP is written out with them, then the
# one-call `ep_gradients` gives the same gradient. Everything else (data, optimiser, metrics)
# is plain PyTorch.
# ---------------------------------------------------------------------------------------------
import sys

import torch
from sklearn.datasets import load_digits

import pcdsl

EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 5

# %% the model: the shipped demo, a predictive coding MLP 64-256-256-10 on the 8x8 digits
Model = pcdsl.load("mlp_digits")
print(pcdsl.describe("mlp_digits")["free_phase"])
torch.manual_seed(0)
model = Model()
config = Model.train_config                  # the file's train block: beta, steps, lr, ...
print(f"{Model.NAME}: states {Model.STATES}, update groups {Model.UPDATE_GROUPS}, beta {config.beta}, "
      f"K = {config.steps}")

# %% data: scikit-learn's digits, scaled to [0, 1]
digits = load_digits()
x_all = torch.tensor(digits.data, dtype=torch.float32) / 16.0
y_all = torch.tensor(digits.target)
x_train, y_train, x_test, y_test = x_all[:1400], y_all[:1400], x_all[1400:], y_all[1400:]


# %% centered EP, written with the module's primitives
def centered_ep(model, x, label, beta, steps):
    """(dF/dtheta at +beta - dF/dtheta at -beta) / (2 beta), from the feedforward free state."""
    with torch.no_grad():
        free = model(x)                                          # the free equilibrium
        plus = model.relax(x, free, label, +beta, steps)         # K iterations nudged towards y
        minus = model.relax(x, free, label, -beta, steps)        # and away from it
    _, grads_plus = model.param_grads(x, plus)
    _, grads_minus = model.param_grads(x, minus)
    return [(gp - gm) / (2 * beta) for gp, gm in zip(grads_plus, grads_minus)]


x, y = x_train[:32], y_train[:32]
mine = centered_ep(model, x, y, config.beta, config.steps)
theirs = model.ep_gradients(x, y)["grads"]                       # the runtime's estimator
print("hand-written centered EP equals ep_gradients:",
      all(torch.allclose(a, b, atol=1e-6) for a, b in zip(mine, theirs)))

# %% train
optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
generator = torch.Generator().manual_seed(0)
for epoch in range(1, EPOCHS + 1):
    order = torch.randperm(len(x_train), generator=generator)
    for start in range(0, len(order), config.batch):
        batch = order[start:start + config.batch]
        grads = centered_ep(model, x_train[batch], y_train[batch], config.beta, config.steps)
        for parameter, grad in zip(model.parameters(), grads):
            parameter.grad = grad
        optimizer.step()
    with torch.no_grad():
        states = model(x_test)
        accuracy = (states[Model.OUTPUT].argmax(1) == y_test).float().mean().item()
        energy = model.energy(x_test, states).mean().item()          # 0 at the feedforward state
    print(f"epoch {epoch}: test accuracy {100 * accuracy:.2f} %  (free-phase energy {energy:.1e})")
