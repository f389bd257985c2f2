# ---------------------------------------------------------------------------------------------
# Every user-facing compiler message, with its code, in one place.
#
# A code is stable once released: tests assert codes, and docs/errors.md lists every entry of
# this table (tests/compiler/test_error_docs.py checks that the two agree). Messages are
# str.format templates.
# Codes are grouped by pipeline stage: E0xx reading/syntax, E1xx names and declarations,
# E2xx shapes, E3xx energies and update rules, E4xx the train block, E5xx command-line overrides.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from typing import NamedTuple


class Message(NamedTuple):
    code: str
    template: str
    explanation: str  # one paragraph for docs/errors.md


MESSAGES: dict[str, Message] = {}


def _m(code: str, template: str, explanation: str) -> Message:
    assert code not in MESSAGES, code
    MESSAGES[code] = Message(code, template, explanation)
    return MESSAGES[code]


# -- E0xx: reading and syntax -----------------------------------------------------------------
FILE_UNREADABLE = _m("E001", "cannot read model file: {reason}",
                     "The file does not exist, is a folder, or is not UTF-8 text.")
UNEXPECTED_CHARACTER = _m("E002", "unexpected character {char!r}",
                          "A character that starts no token of the language (for example `$` or `;`).")
UNEXPECTED_TOKEN = _m("E003", "unexpected {found}; expected {expected}",
                      "The parser met a token that cannot continue the statement; the message lists "
                      "what could stand there.")
UNEXPECTED_END = _m("E004", "unexpected end of file; expected {expected}",
                    "The file ends inside a block or statement, often a missing `}` or `)`.")
TOO_DEEP = _m("E005", "an expression is nested too deeply to compile",
              "The compiler walks expressions recursively; thousands of nested operators (for example "
              "a sum of thousands of terms written out) exceed Python's recursion limit.")

# -- E1xx: names and declarations -------------------------------------------------------------
UNKNOWN_NAME = _m("E101", "unknown name `{name}`",
                  "An expression uses a name that is no declared input, state, output, size or macro "
                  "parameter.")
DUPLICATE_NAME = _m("E102", "`{name}` is already declared (line {line})",
                    "Two declarations (inputs, states, sizes, labels, macros, energy terms) share a name.")
UNKNOWN_OPERATOR = _m("E103", "unknown operator `{name}`",
                      "A call names no built-in operator and no macro defined before it.")
WRONG_ARGUMENT_COUNT = _m("E104", "`{name}` takes {expected} positional argument(s), got {got}",
                          "An operator or macro was called with the wrong number of positional arguments.")
UNKNOWN_KEYWORD = _m("E105", "`{name}` has no option `{key}`",
                     "An operator was given a keyword option it does not know (conv knows k, stride, pad; "
                     "pools know stride).")
BAD_OPTION_VALUE = _m("E106", "option `{key}` of `{name}` must be {expected}, got {got}",
                      "An operator option or size argument has a value of the wrong kind, for example a "
                      "kernel size that is not a positive integer.")
MACRO_RECURSION = _m("E107", "macro `{name}` uses itself",
                     "Macros are expanded in place, so a macro may not call itself, directly or not.")
RESERVED_NAME = _m("E108", "`{name}` is reserved and cannot be declared",
                   "Operator names and `bias` cannot be used as names of inputs, states, sizes or macros.")
MISSING_INPUT = _m("E109", "model `{model}` declares no input",
                   "Every model needs exactly one `input` declaration: the clamped layer h0.")
OUTPUT_COUNT = _m("E110", "model `{model}` must declare exactly one output, found {count}",
                  "The `output` declaration names the free state the cost reads; there must be one.")
MISSING_COST = _m("E111", "model `{model}` has no cost",
                  "A model needs `cost squared_error(out, label)` or `cost cross_entropy(out, label)` "
                  "and a `label` declaration.")
UNCONSTRAINED_STATE = _m("E112", "state `{name}` appears in no energy term",
                         "A free state that no term of the energy touches has no equilibrium.")
DUPLICATE_PREDICTION = _m("E113", "state `{name}` already has a prediction (line {line})",
                          "A state may have one `~` prediction; add inputs inside it "
                          "(`a + b`, `add(a, b)`) to join several sources.")
NOT_A_FREE_STATE = _m("E114", "`{name}` is {role}, not a free state: it cannot be predicted",
                      "Only `state` and `output` declarations, and the input of a generative model, "
                      "can stand left of `~`.")
BAD_COST = _m("E115", "{problem}",
              "The cost must read the output state and the label: `cost KIND(output, label)` with KIND "
              "one of squared_error, cross_entropy.")
BAD_DOMAIN = _m("E116", "{problem}",
                "A domain's bounds must be finite numbers, and `in [a, b]` needs a < b.")
BAD_SIZE = _m("E117", "{problem}",
              "A shape dimension must be a positive integer expression of declared sizes "
              "(numbers, sizes, + - * / and parentheses).")
BIAS_SHAPE = _m("E118", "cannot infer the shape of `bias` here",
                "A `bias` takes the shape of what it is added to or multiplied with; used alone, or "
                "next to a number only, it has none.")
DUPLICATE_PARAMETER = _m("E119", "parameter `{name}` is already created by another term",
                         "Parameters are named after their term and source (`h2_w_h1`, `h2_b`); when "
                         "names of states and inputs combine to the same parameter name in two terms "
                         "(the weight `h_w_b` of `h` reading `b`, the bias `h_w_b` of a state `h_w`), "
                         "rename one of them.")
LABEL_MISUSE = _m("E120", "the label `{name}` may only appear in the cost",
                  "Energy terms cannot read the label: only the cost does.")
OUTPUT_IS_STATE = _m("E121", "`{name}` is {role}; the {what} must be {expected}",
                     "The cost reads a free output state and a label; a cost naming an input or state "
                     "in the wrong place is rejected.")

BAD_NUMBER = _m("E122", "`{text}` is not a usable number: {problem}",
                "Numbers in a model file (and constants computed from them) must be finite and fit a "
                "float32 model: magnitudes up to 3.4e38, and non-zero values no smaller than 1.2e-38, "
                "which would otherwise round to zero on the way to the device.")
GENERATIVE_SUPERVISED = _m("E123", "`{name}` is {role}, but the model is generative: its input `{input}` is predicted",
                           "A model whose input is predicted from its states (`input x : [...] ~ f(h1)`) "
                           "is generative: the states relax to explain the clamped data, and the weights "
                           "learn to predict it. It has no output, cost or label to train towards; a "
                           "model with both would leave unclear which of the two its training follows. "
                           "Write a supervised model (an output, a label, a cost, the input unpredicted) "
                           "or a generative one.")
MACRO_TOO_LARGE = _m("E124", "macro `{name}` expands to more than {limit:,} expression nodes",
                     "Every macro use is written out in place, so macros that each use the one before "
                     "twice double in size at every level: 20 levels make a million nodes, which no "
                     "compiler stage (nor an editor checking as you type) gets through in reasonable "
                     "time (and generated code grows faster still). One use of a macro, with the "
                     "macros it uses in turn and each use of an argument counted at its full size, "
                     "may write out at most this many nodes; a VGG block's use needs 11.")

# -- E2xx: shapes -----------------------------------------------------------------------------
SHAPE_MISMATCH = _m("E201", "`{name}` is declared {declared} but its prediction has shape {inferred}",
                    "The shape inferred for a prediction must equal the declared shape of its state "
                    "(checked at the sizes' values).")
RANK_MISMATCH = _m("E202", "`{op}` expects {expected}, got shape {got}",
                   "An operator received an input of the wrong rank, e.g. conv on a vector or dense on an "
                   "image (use flatten).")
BROADCAST_MISMATCH = _m("E203", "shapes {left} and {right} do not match in `{op}`",
                        "Element-wise operations need equal shapes (a bias broadcasts over space).")
NON_POSITIVE_DIM = _m("E204", "`{op}` produces a non-positive size {shape}",
                      "A convolution or pooling window larger than its (padded) input.")
UNEVEN_POOL = _m("E205", "`{op}` with window {k} and stride {stride} does not tile size {size} evenly",
                 "Pooling must cover its input exactly; pad the input or pick another window.")
LABEL_SHAPE = _m("E206", "label `{label}` has shape {label_shape} but output `{output}` has {output_shape}",
                 "The label's shape is the number of classes and must equal the output's shape.")
FRACTIONAL_DIM = _m("E207", "dimension `{expr}` of `{name}` is {value} at {where}, not a positive integer",
                    "A symbolic dimension must evaluate to a positive integer at the sizes' values.")
TOO_LARGE = _m("E208", "{what} would hold {count} elements, more than the 2^31 - 1 a tensor may",
               "A state, an intermediate result or a parameter is limited to 2^31 - 1 elements (and "
               "all parameters together to 2^32), so that a typo such as an extra digit in a size "
               "is an error here, not an exhausted memory at the first batch.")

# -- E3xx: energies and derived update rules --------------------------------------------------
NOT_SCALAR = _m("E301", "energy `{name}` is not a scalar: wrap tensor expressions in sum(...)",
                "Every energy term must reduce to one number per example; `sum(...)` reduces.")
NO_FREE_STATE = _m("E302", "energy `{name}` touches no free state",
                   "A term that depends only on the input and parameters does not affect the states.")
BAD_CURVATURE = _m("E303", "the energy is not bounded below in `{name}`: its curvature there is {curvature}",
                   "A state's equilibrium needs an energy that grows in every direction of the state: "
                   "its highest power must be even, with a positive constant coefficient, as in a "
                   "self term 0.5*sum(h**2) or a `~` prediction of h. A linear or negative term alone "
                   "runs away (or sticks to a bound of the domain), and EP's estimate is then no "
                   "gradient.")
STATE_IN_KINK = _m("E304", "`{name}` appears inside `{op}` in energy term `{term}`, and {op} has a kink there",
                   "A state inside a nonlinearity of an energy term (not through a weight) has no "
                   "closed-form update and is relaxed by gradient steps, which need a derivative "
                   "without jumps: a kink (relu, leaky_relu, hardsigmoid, maxpool, elu with alpha "
                   "!= 1) can put the minimum on the kink, where projected gradient steps cycle "
                   "forever. Smooth functions (tanh, sigmoid, softplus, gelu, silu) are relaxed by "
                   "gradient steps; inside a `~` prediction a kink is harmless (the squared error "
                   "vanishes at the equilibrium).")
BAD_EXPONENT = _m("E305", "a tensor's exponent must be an integer from 1 to {limit}, got {value}",
                  "`t ** n` raises every element of a tensor to the power n, which must be a whole "
                  "number from 1 to 16: a root or a negative power of a state has no energy that a "
                  "relaxation can minimise safely, and huge exponents are refused before the "
                  "compiler expands them.")
NON_SUM_TENSOR = _m("E306", "`{op}` needs a tensor argument; got a scalar",
                    "sum(...) of a scalar, or a tensor operator applied to a number.")
SUM_OUTSIDE = _m("E307", "sum(...) inside a tensor expression",
                 "sum reduces a term to a scalar and may only appear at the top of an energy term "
                 "(possibly scaled and added).")

# -- E4xx: the train block --------------------------------------------------------------------
UNKNOWN_SETTING = _m("E401", "unknown train setting `{name}`",
                     "The train block accepts: " "ep, bp, relax, sgd, cosine, constant, init, init_gain, augment, "
                     "normalize, batch, eval_batch, epochs, seed, pad, keep_checkpoints, precision, checkpoint_steps, checkpoint_minutes, "
                     "divergence_steps, stop_on_divergence.")
UNKNOWN_SETTING_ARG = _m("E402", "`{setting}` has no argument `{key}`",
                         "A train setting got a keyword it does not know.")
BAD_SETTING_VALUE = _m("E403", "invalid value for `{key}`: {problem}",
                       "A train setting's value has the wrong type or range (for example beta <= 0, "
                       "an unknown EP scheme).")
DUPLICATE_SETTING = _m("E404", "`{key}` is set twice in the train block (line {line})",
                       "Each key may be set once.")
BF16_NEEDS_FEEDFORWARD = _m("E405", "`precision bf16` with EP needs a feedforward free phase; `{name}`'s is a {reason}",
                            "Mixed precision keeps EP's gradient when the free equilibrium is the "
                            "feedforward pass: there every prediction error is zero, the nudged phases "
                            "carry only the O(beta) moves, and bfloat16 rounds those moves, not the O(1) "
                            "values. In a model whose free phase is a relaxation each phase's parameter "
                            "gradient is O(1) and EP's estimate is their O(beta) difference, which "
                            "bfloat16 products do not resolve (measured cosines with backprop of 0.49 "
                            "to 0.81, against 0.995 for bfloat16 backprop).")
BF16_ALGORITHM = _m("E407", "`precision bf16` is available for `ep` and `bp`, not for `{algorithm}`",
                    "Mixed precision is built into EP's estimate and backprop's autocast region. "
                    "Recurrent backprop and predictive-coding inference learning (`pcil`, `ipc`) run "
                    "in the parameters' precision (float32), and a config asking for bfloat16 would "
                    "silently not get it.")
PCIL_NEEDS_FEEDFORWARD = _m("E406", "`{algorithm}` needs a feedforward free phase; `{name}`'s is a {reason}",
                            "Predictive-coding inference learning starts the states at the feedforward "
                            "pass, where every prediction error is zero, clamps the output and lets the "
                            "errors spread down from it: its weight update is the energy's gradient "
                            "there. A model whose free phase is a relaxation has no such starting point "
                            "and its errors are not zero without the clamp, so the update would not be "
                            "driven by the target alone. Train it with `ep`, `bp` or `rbp`.")
RBP_NEEDS_RELAXATION = _m("E408", "`rbp` differentiates a relaxation's equilibrium; `{name}`'s free phase is the "
                          "feedforward pass",
                          "Recurrent backprop finds the gradient at the free equilibrium by iterating the "
                          "adjoint of one relaxation sweep. Where the free phase is the feedforward pass "
                          "that equilibrium is reached without relaxing, backprop through the pass is the "
                          "same gradient exactly, in one backward pass, and the adjoint of a predictive-"
                          "coding sweep converges slowly (a relative error of 1.5e-2 after 50 iterations "
                          "on a three-layer PCN): the config would buy a worse gradient at more cost.")
PCIL_OUTPUT_READ = _m("E409", "`{algorithm}` clamps the output `{output}`, but the prediction of `{reader}` reads it",
                      "Predictive-coding inference learning clamps the output to its prediction minus the "
                      "cost's gradient, and finds that prediction from the output's own term. A state "
                      "predicted from the output adds its own error to the output's, so the clamp would "
                      "hold the wrong value and the update would follow neither the target nor the "
                      "cost. The output must be the last layer of the feedforward pass.")
INFERENCE_SETTING_ALGORITHM = _m("E410", "`{setting}` shapes the inference sweeps of `pcil` and `ipc`, not `{algorithm}`",
                                 "Precision schedules and the forward update (Qi et al. 2025) change how "
                                 "predictive-coding inference learning relaxes its states and updates its "
                                 "weights. EP's estimate is the cost's gradient only as a difference at "
                                 "equilibria of one fixed energy: a schedule that reweights the energy from "
                                 "sweep to sweep leaves no such equilibrium, and the estimate would not pass "
                                 "EP's gradient check; backprop and recurrent backprop have no inference "
                                 "sweeps to weight. The output's nudge (`pcil(nudge=)`) is PC-IL's way of "
                                 "perturbing the output; EP's is `beta`.")
SCHEDULE_NEEDS_PGD = _m("E411", "a precision schedule relaxes by gradient steps of the weighted energy; `update=modpgd` has "
                        "no weighted form",
                        "mod-PGD's update reads each layer's pre-activation to step past the ReLU's "
                        "floor; it is defined for the plain energy only. Under a precision schedule "
                        "each sweep is a projected gradient step of the precision-weighted energy, "
                        "which with every precision 1 is the `pgd` sweep, so the file must ask for "
                        "`update=pgd` rather than have its `update` silently replaced.")
CLAMP_NEEDS_SQUARED_ERROR = _m("E412", "`perturb=clamp` needs a squared-error cost; `{name}`'s is `{cost}`",
                               "Clamping perturbs the output by moving it a fraction beta of the way to "
                               "the target: h_L <- (1 - beta) h_L + beta y. That is the nudge of the "
                               "squared-error cost (to first order in beta), so EP's estimate from it is "
                               "the gradient of that cost; for cross-entropy it would be the gradient of "
                               "a cost the model does not have.")
PRECISION_TABLE_ROWS = _m("E413", "the precision table has {rows} rows; `{name}` has {layers} layers",
                          "A precision table gives one row per layer, from the layer next to the "
                          "input (row 1) to the output's (the last row), and one column per inference "
                          "sweep. A state's layer is the longest chain of predictions from the input "
                          "to it (`pcdsl check` lists them).")
GENERATIVE_ALGORITHM = _m("E414", "`{what}` is for supervised models; `{name}` is generative and trains "
                          "with `pcil` (its free phase, then the weight update)",
                          "A generative model has no cost, so there is no gradient of one for EP, "
                          "backprop or recurrent backprop to estimate, no output for iPC or a clamp to "
                          "hold, and no layers above an input to schedule precisions over. It trains by "
                          "inference learning: the states relax with the data clamped (the free phase, "
                          "`free_steps` iterations), then each weight follows its local prediction error "
                          "there; its inference is the free phase, so `pcil(steps=, update=)` do not "
                          "apply either. Write `pcil(free_steps=...)` in the train block.")
GENERATIVE_LABEL = _m("E415", "`label={state}`: {problem}",
                      "Generative classification clamps a top state of a generative model to the "
                      "one-hot label while the states relax to explain the image, so that the "
                      "weights learn to generate each class from its code; a test image's class is "
                      "the one whose clamp leaves the lowest energy. The state must be a free "
                      "state of a generative model, a vector with one entry per class, predicted "
                      "by nothing (the top of the hierarchy: a predicted state would be pulled "
                      "towards its prediction and the label at once), and read by the prediction "
                      "of a state below it (else every class's clamp leaves the same energy).")

# -- E5xx: command-line overrides -------------------------------------------------------------
BAD_OVERRIDE = _m("E501", "{problem}",
                  "`--set key=value` names a train key (see `pcdsl check` docs) or a size; the value is "
                  "a number, true/false, a word, or a JSON list.")
