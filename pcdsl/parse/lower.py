# ---------------------------------------------------------------------------------------------
# Lowering: Lark syntax tree -> ModelIR.
#
# This stage resolves names (with did-you-mean), expands macros in place, checks operator
# arity and options, names every parameter, and turns the train block into a validated
# TrainConfig. It stops at the first error. Shapes and energies are the checker's business.
#
# Parameter names are derived from where the parameter sits, so that they read well in the
# generated code and survive macro expansion: the weight of a dense/conv in the term of `h2`
# that reads `h1` is `h2_w_h1`; the term's bias is `h2_b` (then `h2_b2`, ...).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import lark

from ..diagnostics import did_you_mean, messages
from ..ir.model import (Bias, Binary, Call, Cost, Domain, ModelIR, Neg, Number, Ref, Size, children,
                        SourceSpan, Term, Variable, walk)
from ..ir.numbers import MAX_ELEMENTS as MAX_SIZE, unrepresentable
from ..ops import COSTS as _COSTS
from ..ops import REGISTRY, Add
from .spans import fail, to_span
from .train_block import lower_train_block

COSTS = tuple(_COSTS)
# names a model cannot declare: the operators, `bias`, and the words of the language
RESERVED = set(REGISTRY) | {"bias", "model", "state", "input", "output", "label", "size",
                            "def", "energy", "cost", "train", "in", "true", "false"}


@dataclass
class _Macro:
    name: str
    params: list[str]
    body: lark.Tree
    span: SourceSpan


@dataclass
class _TermScope:
    """Names the parameters created while lowering one term."""
    owner: str
    taken: set[str]
    biases: int = 0
    created: set[str] = field(default_factory=set)

    def new(self, name: str, where) -> str:
        if name in self.created:
            index = 2
            while f"{name}_{index}" in self.created:
                index += 1
            name = f"{name}_{index}"
        if name in self.taken:
            fail(messages.DUPLICATE_PARAMETER, where, name=name)
        self.created.add(name)
        return name


# E124: how many expression nodes one top-level macro use may write out, counting each use of an
# argument at its full size (a shipped VGG block's use needs 11; a use of 1,000 nodes compiles
# in about a second to a module of about a megabyte, and each doubling beyond quadruples that)
MAX_EXPANDED_NODES = 1_000


class Lowerer:
    def __init__(self, file: str, text: str):
        self.file = file
        self.text = text
        self.declared: dict[str, tuple[str, SourceSpan]] = {}   # name -> (role, span)
        self.macros: dict[str, _Macro] = {}
        self.params: set[str] = set()
        self.expanded = 0            # expression nodes the present top-level macro use writes out (E124)
        self.outermost = None        # that use: (name, token)
        self.node_counts: dict[int, tuple[int, Any]] = {}   # id(lowered expression) -> (its node count, it)

    # ------------------------------------------------------------------ entry
    def lower(self, tree: lark.Tree, overrides: dict[str, Any]) -> ModelIR:
        model = tree.children[0]
        train = tree.children[1] if len(tree.children) > 1 else None
        name_token, *items = model.children
        self._collect_declarations(items)

        sizes, variables, terms, cost = [], [], [], None
        predicted: dict[str, SourceSpan] = {}
        for item in items:
            kind = item.data
            if kind == "size_decl":
                sizes.append(self._size(item, overrides))
            elif kind in ("input_decl", "state_decl", "output_decl", "label_decl"):
                variables.append(self._variable(item))
                prediction = self._child(item, "prediction")
                if prediction is not None:
                    terms.append(self._pc_term(item.children[0], prediction.children[0],
                                               prediction, predicted))
            elif kind == "pc_term":
                terms.append(self._pc_term(item.children[0], item.children[1], item, predicted))
            elif kind == "energy_term":
                terms.append(self._energy_term(item))
            elif kind == "cost_decl":
                cost = self._cost(item, cost)
        model_span = to_span(model.meta)

        self._require_structure(str(name_token), variables, cost, model_span, predicted)
        config, config_spans = lower_train_block(train, overrides, {v.name for v in variables})
        return ModelIR(name=str(name_token), file=self.file, text=self.text,
                       source_sha256=hashlib.sha256(self.text.encode()).hexdigest(),
                       sizes=sizes, variables=variables, terms=terms, cost=cost, train=config,
                       train_spans=config_spans, span=model_span)

    # ------------------------------------------------------------------ declarations
    @staticmethod
    def _child(tree: lark.Tree, data: str) -> Optional[lark.Tree]:
        return next((c for c in tree.children if isinstance(c, lark.Tree) and c.data == data), None)

    def _collect_declarations(self, items) -> None:
        roles = {"size_decl": "size", "input_decl": "input", "state_decl": "state",
                 "output_decl": "output", "label_decl": "label", "energy_term": "energy",
                 "macro_def": "macro"}
        for item in items:
            role = roles.get(item.data)
            if role is None:
                continue
            token = item.children[0]
            name = str(token)
            if name in RESERVED:
                fail(messages.RESERVED_NAME, token, name=name)
            if name in self.declared:
                fail(messages.DUPLICATE_NAME, token, name=name, line=self.declared[name][1].line)
            self.declared[name] = (role, to_span(token))
            if role == "macro":
                params = [str(p) for p in item.children[1:-1] if p is not None]
                self.macros[name] = _Macro(name, params, item.children[-1], to_span(token))

    def _size(self, item, overrides) -> Size:
        token, value = item.children
        number = int(value)
        if str(token) in overrides:
            number = overrides[str(token)]
        if number <= 0:
            fail(messages.BAD_SIZE, value, problem=f"size `{token}` must be a positive integer, got {number}")
        if number > MAX_SIZE:
            fail(messages.BAD_SIZE, value, problem=f"size `{token}` = {number} is larger than any tensor may be "
                 f"({MAX_SIZE:,} elements)")
        return Size(name=str(token), value=number, span=to_span(token))

    def _variable(self, item) -> Variable:
        role = item.data.removesuffix("_decl")
        token = item.children[0]
        shape_tree = self._child(item, "shape")
        shape = [self._dim(d) for d in shape_tree.children]
        domain = Domain()
        for child in item.children:
            if isinstance(child, lark.Tree) and child.data in ("lower_bound", "box"):
                bounds = [float(c.children[0]) for c in child.children]
                if not all(math.isfinite(b) for b in bounds):
                    fail(messages.BAD_DOMAIN, child.meta, problem="a domain bound must be a finite number")
                for bound_tree, bound in zip(child.children, bounds):
                    problem = unrepresentable(bound)
                    if problem:
                        fail(messages.BAD_NUMBER, bound_tree.meta, text=str(bound_tree.children[0]), problem=problem)
                if child.data == "lower_bound":
                    domain = Domain(low=bounds[0])
                else:
                    low, high = bounds
                    if not low < high:
                        fail(messages.BAD_DOMAIN, child.meta,
                             problem=f"empty domain: lower bound {low:g} is not below upper bound {high:g}")
                    domain = Domain(low=low, high=high)
        return Variable(name=str(token), role=role, shape=shape, domain=domain, span=to_span(token))

    def _dim(self, tree):
        """A shape dimension: numbers, sizes and arithmetic only."""
        expr = self._expr(tree, {}, None, ())
        self._require_size_expr(expr)
        return expr

    def _require_size_expr(self, expr) -> None:
        for node in walk(expr):
            if isinstance(node, Ref) and self.declared[node.name][0] != "size":
                fail(messages.BAD_SIZE, node.span,
                     problem=f"`{node.name}` is {_a(self.declared[node.name][0])}, not a size")
            if not isinstance(node, (Number, Ref, Binary, Neg)):
                fail(messages.BAD_SIZE, node.span,
                     problem="a shape dimension may only use numbers, sizes and + - * /")

    # ------------------------------------------------------------------ terms
    def _pc_term(self, target_token, expr_tree, where, predicted) -> Term:
        target = str(target_token)
        if target not in self.declared:
            fail(messages.UNKNOWN_NAME, target_token, name=target,
                 hint=did_you_mean(target, self._names("state", "output")))
        role = self.declared[target][0]
        if role not in ("state", "output", "input"):      # a predicted input: a generative model
            fail(messages.NOT_A_FREE_STATE, target_token, name=target, role=f"the {role}")
        if target in predicted:
            fail(messages.DUPLICATE_PREDICTION, target_token, name=target, line=predicted[target].line)
        predicted[target] = to_span(target_token)
        scope = _TermScope(owner=target, taken=self.params)
        prediction = self._expr(expr_tree, {}, scope, ())
        self.params |= scope.created
        return Term(name=target, target=target, prediction=prediction, span=to_span(where.meta))

    def _energy_term(self, item) -> Term:
        token, expr_tree = item.children
        scope = _TermScope(owner=str(token), taken=self.params)
        energy = self._expr(expr_tree, {}, scope, ())
        self.params |= scope.created
        return Term(name=str(token), energy=energy, span=to_span(item.meta))

    def _cost(self, item, previous) -> Cost:
        kind, output, label = item.children
        if previous is not None:
            fail(messages.BAD_COST, kind, problem="a model has one cost; this is the second")
        if str(kind) not in COSTS:
            fail(messages.BAD_COST, kind, hint=did_you_mean(str(kind), COSTS),
                 problem=f"unknown cost `{kind}`; the costs are squared_error and cross_entropy")
        for token, expected in ((output, "output"), (label, "label")):
            name = str(token)
            if name not in self.declared:
                fail(messages.UNKNOWN_NAME, token, name=name, hint=did_you_mean(name, self._names(expected)))
            role = self.declared[name][0]
            if role != expected:
                fail(messages.OUTPUT_IS_STATE, token, name=name, role=_a(role),
                     what=f"{'first' if expected == 'output' else 'second'} argument of the cost",
                     expected=f"the {expected}")
        return Cost(kind=str(kind), output=str(output), label=str(label), span=to_span(item.meta))

    def _require_structure(self, model, variables, cost, span, predicted) -> None:
        where = SourceSpan(line=span.line, column=span.column, end_line=span.line, end_column=span.column + 5)
        inputs = [v for v in variables if v.role == "input"]
        if not inputs:
            fail(messages.MISSING_INPUT, where, model=model)
        if len(inputs) > 1:
            fail(messages.DUPLICATE_NAME, inputs[1].span, name="input",
                 line=inputs[0].span.line, hint="a model has one clamped input")
        outputs = [v for v in variables if v.role == "output"]
        if inputs[0].name in predicted:
            # generative: the states explain the data; nothing supervised may stand beside that
            supervised = [(v.span, v.name, _a(v.role)) for v in variables if v.role in ("output", "label")]
            if cost is not None:
                supervised.append((cost.span, f"cost {cost.kind}", "a cost"))
            if supervised:
                span_, name, role = min(supervised, key=lambda s: (s[0].line, s[0].column))
                fail(messages.GENERATIVE_SUPERVISED, span_, name=name, role=role, input=inputs[0].name)
            return
        if len(outputs) != 1:
            fail(messages.OUTPUT_COUNT, outputs[1].span if len(outputs) > 1 else where,
                 model=model, count=len(outputs),
                 hint=None if outputs else f"or predict the input (`input {inputs[0].name} : [...] ~ ...`) "
                 "for a generative model")
        if cost is None:
            fail(messages.MISSING_COST, where, model=model,
                 hint=f"add `cost cross_entropy({outputs[0].name}, <label>)` and a `label` declaration")

    # ------------------------------------------------------------------ expressions
    def _names(self, *roles) -> list[str]:
        return [n for n, (r, _) in self.declared.items() if not roles or r in roles]

    def _expr(self, tree, env: dict, scope: Optional[_TermScope], stack: tuple[str, ...]):
        if stack:                    # inside a macro: count, so that nested doubling stops early
            self._count(1)
        span = to_span(tree.meta) if isinstance(tree, lark.Tree) else to_span(tree)
        data = tree.data if isinstance(tree, lark.Tree) else None
        if data == "number":
            text = str(tree.children[0])
            value = float(text)
            problem = unrepresentable(value)
            if problem:
                fail(messages.BAD_NUMBER, span, text=text, problem=problem)
            return Number(value=value, span=span)
        if data == "name":
            token = tree.children[0]
            name = str(token)
            if name in env:
                # an argument is lowered once and shared, but every later stage walks each use
                self._count(self._node_count(env[name]) - 1)
                return env[name]
            if name == "bias":
                if scope is None:
                    fail(messages.BAD_SIZE, span, problem="`bias` cannot be part of a shape")
                scope.biases += 1
                suffix = "" if scope.biases == 1 else str(scope.biases)
                return Bias(param=scope.new(f"{scope.owner}_b{suffix}", span), span=span)
            if name not in self.declared or self.declared[name][0] in ("macro", "energy"):
                candidates = self._names("input", "state", "output", "size", "label") + list(env)
                fail(messages.UNKNOWN_NAME, span, name=name, hint=did_you_mean(name, candidates))
            if self.declared[name][0] == "label":
                fail(messages.LABEL_MISUSE, span, name=name)
            return Ref(name=name, span=span)
        if data in ("add", "sub", "mul", "div", "pow"):
            op = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}[data]
            left, right = (self._expr(c, env, scope, stack) for c in tree.children)
            return Binary(op=op, left=left, right=right, span=span)
        if data == "neg":
            return Neg(operand=self._expr(tree.children[0], env, scope, stack), span=span)
        if data == "call":
            return self._call(tree, env, scope, stack, span)
        fail(messages.BAD_SIZE, span, problem="this expression is not allowed here")

    def _call(self, tree, env, scope, stack, span):
        name_token, *arg_trees = tree.children
        name = str(name_token)
        arg_trees = [a for a in arg_trees if a is not None]
        positional = [a for a in arg_trees if not (isinstance(a, lark.Tree) and a.data == "keyword")]
        keywords = [a for a in arg_trees if isinstance(a, lark.Tree) and a.data == "keyword"]
        if name in self.macros:
            return self._expand_macro(self.macros[name], name_token, positional, keywords, env, scope, stack)
        if name not in REGISTRY:
            fail(messages.UNKNOWN_OPERATOR, name_token, name=name,
                 hint=did_you_mean(name, list(REGISTRY) + list(self.macros)))
        op = REGISTRY[name]
        variadic = op.tensors < 0
        arity = -op.tensors if variadic else op.tensors + len(op.sizes)
        if (not variadic and len(positional) != arity) or (variadic and len(positional) < arity):
            expected = f"{arity} or more" if variadic else str(arity)
            fail(messages.WRONG_ARGUMENT_COUNT, name_token, name=name, expected=expected, got=len(positional))
        known = {option.name: option for option in op.options}
        options = {}
        for keyword in keywords:
            key_token, value_tree = keyword.children
            key = str(key_token)
            if key not in known:
                fail(messages.UNKNOWN_KEYWORD, key_token, name=name, key=key,
                     hint=did_you_mean(key, known) if known else f"`{name}` takes no options")
            options[key] = self._option_value(value_tree, env, scope, stack, name, known[key])
        args = [self._expr(a, env, scope, stack) for a in positional]
        if op is Add:
            result = args[0]
            for arg in args[1:]:
                result = Binary(op="+", left=result, right=arg, span=span)
            return result
        if not variadic:
            args, sizes = args[:op.tensors], args[op.tensors:]
            for option, value in zip(op.sizes, sizes):
                self._require_option(value, name, option)
                options[option.name] = value
        param = None
        if op.has_weight:
            if scope is None:  # a shape dimension: no term to own a weight
                fail(messages.BAD_SIZE, span, problem="a shape dimension may only use numbers, sizes and + - * /")
            source = next((n.name for n in walk(args[0]) if isinstance(n, Ref)
                           and self.declared.get(n.name, ("",))[0] in ("input", "state", "output")), None)
            param = scope.new(f"{scope.owner}_w_{source}" if source else f"{scope.owner}_w", span)
        return Call(op=name, args=args, options=options, param=param, span=span)

    def _option_value(self, value_tree, env, scope, stack, op, option):
        if isinstance(value_tree, lark.Tree) and value_tree.data in ("list", "string"):
            fail(messages.BAD_OPTION_VALUE, value_tree.meta, key=option.name, name=op,
                 expected=_expected(option), got="a list" if value_tree.data == "list" else "a string")
        value = self._expr(value_tree, env, scope, stack)
        self._require_option(value, op, option)
        return value

    def _require_option(self, expr, op, option):
        """Operator sizes and options are number expressions of numbers and sizes (integers for
        integer options: a plain number must be a whole number, at least the option's minimum)."""
        if isinstance(expr, Number) and option.integer:
            if not float(expr.value).is_integer() or expr.value < option.minimum:
                fail(messages.BAD_OPTION_VALUE, expr.span, key=option.name, name=op,
                     expected=_expected(option), got=_fmt(expr.value))
            return
        for node in walk(expr):
            sized = isinstance(node, Ref) and self.declared[node.name][0] == "size"
            if not (isinstance(node, (Number, Binary, Neg)) or sized):
                fail(messages.BAD_OPTION_VALUE, expr.span, key=option.name, name=op,
                     expected="an integer (a number or a size)" if option.integer else "a number",
                     got="a tensor expression")

    def _count(self, nodes: int) -> None:
        self.expanded += nodes
        if self.expanded > MAX_EXPANDED_NODES:
            name, token = self.outermost
            fail(messages.MACRO_TOO_LARGE, token, name=name, limit=MAX_EXPANDED_NODES,
                 hint="write the repeated layers out as states, or give a macro fewer uses of another")

    def _node_count(self, expr) -> int:
        """The nodes of a lowered expression, as the stages after lowering walk it (shared
        subexpressions once per use); memoised, so that counting stays linear."""
        found = self.node_counts.get(id(expr))
        if found is None:
            found = (1 + sum(self._node_count(child) for child in children(expr)), expr)   # (kept alive: ids stay unique)
            self.node_counts[id(expr)] = found
        return found[0]

    def _expand_macro(self, macro, name_token, positional, keywords, env, scope, stack):
        if macro.name in stack:
            fail(messages.MACRO_RECURSION, name_token, name=macro.name)
        if keywords:
            fail(messages.UNKNOWN_KEYWORD, keywords[0].children[0], name=macro.name,
                 key=str(keywords[0].children[0]), hint="macro arguments are positional")
        if len(positional) != len(macro.params):
            fail(messages.WRONG_ARGUMENT_COUNT, name_token, name=macro.name,
                 expected=len(macro.params), got=len(positional))
        bound = {p: self._expr(a, env, scope, stack) for p, a in zip(macro.params, positional)}
        if not stack:
            self.outermost, self.expanded = (macro.name, name_token), 0
        return self._expr(macro.body, bound, scope, stack + (macro.name,))



def _expected(option) -> str:
    if option.integer:
        return "a positive integer" if option.minimum else "a non-negative integer"
    return "a number"


def _a(role: str) -> str:
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
