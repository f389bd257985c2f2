# ---------------------------------------------------------------------------------------------
# Is a run that has not blown up plainly failing?
#
# A step whose loss or gradient is not finite stops the run at once (step.py's health flag). A
# run can also fail with finite numbers: the loss climbing to 1e11 (a learning rate of 20) or
# the accuracy falling back to chance. `TrainingHealth` watches the training loss and accuracy
# over windows of steps (one host read per window) and reports, with the numbers, when one of
# these has held for `divergence_steps` steps:
#   exploding   the window's mean loss is over 10 times the best window's (or the run's first
#               step's), and above the first
#   at chance   the window's accuracy is at most 1.2 x chance, after a window reached 2 x chance
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math

EXPLODING = 10.0       # the window's mean loss against the best window's
AT_CHANCE = 1.2        # the window's accuracy against chance, after ...
ABOVE_CHANCE = 2.0     # ... a window had reached this


class TrainingHealth:
    def __init__(self, num_classes: int, divergence_steps: int):
        self.chance = 1.0 / num_classes
        self.divergence_steps = divergence_steps
        self.first_loss: float | None = None
        self.best_loss = math.inf
        self.best_acc = 0.0
        self.failing_since: int | None = None    # the step at which the failing windows began
        self.reported = False

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def observe(self, loss: float, acc: float, first_step: int, last_step: int,
                start_loss: float | None = None) -> str | None:
        """One window's mean loss and accuracy, over steps first_step..last_step (counted over
        the run); the warning text when the run has been failing for divergence_steps steps
        (once per failing stretch), else None. `start_loss`: the loss of the window's first
        step, the reference of the run's first window (a learning rate of 20 explodes the
        loss within it)."""
        if self.first_loss is None and start_loss is not None and math.isfinite(start_loss):
            self.first_loss = self.best_loss = start_loss
        problem = None
        if self.first_loss is not None and loss > EXPLODING * self.best_loss and loss > self.first_loss:
            problem = (f"the training loss over steps {first_step}-{last_step} is {loss:.3g}, "
                       f"{loss / self.best_loss:.3g} times its best ({self.best_loss:.3g})")
        elif self.best_acc >= ABOVE_CHANCE * self.chance and acc <= AT_CHANCE * self.chance:
            problem = (f"the training accuracy over steps {first_step}-{last_step} is {100 * acc:.1f} %, "
                       f"chance is {100 * self.chance:.1f} % (it had reached {100 * self.best_acc:.1f} %)")
        if self.first_loss is None:
            self.first_loss = loss
        if problem is None:
            self.best_loss = min(self.best_loss, loss)
            self.best_acc = max(self.best_acc, acc)
            self.failing_since, self.reported = None, False
            return None
        if self.failing_since is None:
            self.failing_since = first_step
        if self.reported or last_step - self.failing_since + 1 < self.divergence_steps:
            return None
        self.reported = True
        return f"training is failing since step {self.failing_since}: {problem}"
