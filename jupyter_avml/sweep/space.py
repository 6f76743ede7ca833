"""Search spaces: the spec's hyperparameter-tuning expressions (section 9), from Python or from YAML text.

An expression is a small frozen object (``Distribution``, see ``expressions.py``) that knows how to draw a
value and how to write itself back as the text the user would type::

    >>> from jupyter_avml.sweep.space import choice, parse_expression, uniform
    >>> uniform(0.001, 0.01)
    uniform(0.001, 0.01)
    >>> parse_expression("choice('sgd', 'adam')") == choice("sgd", "adam")
    True

``SearchSpace.from_config`` accepts every shape the spec and the cloud SDK use and normalises them to a list
of flat sub-spaces (one unless the space is conditional). Values that are not expressions stay fixed.

Nothing here imports optuna: the Bayesian sampler (``sampling.py``) translates expressions when it needs to.
"""

from __future__ import annotations

import ast
import copy
import difflib
import itertools
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.expressions import (
    EXPRESSION_CLASSES,
    Choice,
    Distribution,
    LogNormal,
    LogUniform,
    LogUniformBoundsWarning,
    Normal,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    RandInt,
    Uniform,
    _sample_value,
    choice,
    lognormal,
    loguniform,
    normal,
    qlognormal,
    qloguniform,
    qnormal,
    quantize,
    quniform,
    randint,
    uniform,
)

__all__ = [
    "Distribution", "Choice", "RandInt", "Uniform", "QUniform", "LogUniform", "QLogUniform", "Normal",
    "QNormal", "LogNormal", "QLogNormal", "LogUniformBoundsWarning", "choice", "randint", "uniform",
    "quniform", "loguniform", "qloguniform", "normal", "qnormal", "lognormal", "qlognormal", "quantize",
    "parse_expression", "SearchSpace", "MAX_GRID_SIZE", "EXPRESSIONS",
]

#: Grids larger than this are refused rather than enumerated (``iterations`` is at most 1000 anyway).
MAX_GRID_SIZE = 100_000
#: The expression names, in the order the spec lists them.
EXPRESSIONS = tuple(EXPRESSION_CLASSES)


# --------------------------------------------------------------------------------------------------------
# Reading expression text
# --------------------------------------------------------------------------------------------------------
# Text that starts like a call is an attempt at an expression: it parses, or it is an error (never a value).
_CALL_RE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_.]*\s*\(")


def parse_expression(text: Any, *, key: str | None = None, source: str | None = None,
                     line: int | None = None) -> Distribution | None:
    """Read ``"uniform(0.001, 0.01)"``, ``"choice('a', 'b')"``... into a ``Distribution``.

    Arguments are Python literals (numbers, strings, lists, dicts) read with ``ast.literal_eval``; nested
    expressions are allowed inside a ``choice`` of sub-space dicts. Nothing is ever evaluated.

    Returns ``None`` for text that is not an expression (a plain value such as ``"sgd"`` or ``"(3, 2)"``)
    and for anything that is not a string.

    Raises
    ------
    ConfigError
        For text shaped like a call that is not a valid expression: an unknown name (with a "did you mean"),
        a wrong number of arguments, arguments that are not literals, or values out of range (``low >=
        high``, ``q <= 0``, ``sigma <= 0``, ``randint`` upper < 1). The message names ``key``.
    """
    if not isinstance(text, str) or not _CALL_RE.match(text):
        return None
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise _keyed(ConfigError(f"cannot read search expression {text.strip()!r}: {exc.msg}", value=text),
                     key, source, line) from None
    try:
        return _build(tree.body, text.strip())
    except ConfigError as exc:
        raise _keyed(exc, key, source, line) from None


def _keyed(exc: ConfigError, key: str | None, source: str | None, line: int | None) -> ConfigError:
    prefix = f"{key}: " if key else ""
    return ConfigError(prefix + exc.message, field=key or exc.field, value=exc.value, source=source, line=line)


def _build(node: ast.AST, text: str) -> Any:
    """Turn an AST into values: calls to known expressions become distributions, the rest must be literals."""
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ConfigError(f"{ast.unparse(node.func)}() is not a search expression; expressions are "
                              f"{', '.join(EXPRESSIONS)} (in {text!r})", value=text)
        name = node.func.id
        if name not in EXPRESSION_CLASSES:
            close = difflib.get_close_matches(name.lower(), EXPRESSIONS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}()?" if close else f"; expressions are {', '.join(EXPRESSIONS)}"
            raise ConfigError(f"unknown search expression {name}(){hint} (in {text!r})", value=text)
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise ConfigError(f"{name}() does not take *arguments (in {text!r})", value=text)
        args = [_build(arg, text) for arg in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ConfigError(f"{name}() does not take **arguments (in {text!r})", value=text)
            kwargs[kw.arg] = _build(kw.value, text)
        return _call(name, args, kwargs, text)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ConfigError(f"** inside a dict is not allowed in a search expression (in {text!r})", value=text)
        return {_build(k, text): _build(v, text) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.List):
        return [_build(e, text) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_build(e, text) for e in node.elts)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ConfigError(f"{ast.unparse(node)!r} is not a literal value: arguments of search expressions are "
                          f"numbers, strings, lists or dicts (in {text!r})", value=text) from None


def _call(name: str, args: list, kwargs: dict, text: str) -> Distribution:
    if name == "choice":
        if kwargs:
            raise ConfigError(f"choice() takes values only, not keyword arguments (in {text!r})", value=text)
        return choice(*args)
    cls = EXPRESSION_CLASSES[name]
    names = cls.signature
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        raise ConfigError(f"{name}() has no argument {unknown[0]!r}; its arguments are ({', '.join(names)}) "
                          f"(in {text!r})", value=text)
    bound = dict(zip(names, args, strict=False))  # too many arguments: refused below
    for k, v in kwargs.items():
        if k in bound:
            raise ConfigError(f"{name}() got {k} twice (in {text!r})", value=text)
        bound[k] = v
    if len(args) > len(names) or len(bound) != len(names):
        given = len(args) + len(kwargs)
        raise ConfigError(f"{name}() takes {len(names)} argument{'s' if len(names) > 1 else ''} "
                          f"({', '.join(names)}), got {given} (in {text!r})", value=text)
    return cls(**bound)


# --------------------------------------------------------------------------------------------------------
# Search spaces
# --------------------------------------------------------------------------------------------------------
class SearchSpace:
    """A search space normalised to flat sub-spaces.

    ``subspaces`` is a list of ``{parameter: Distribution or fixed value}`` dicts: one dict for an ordinary
    space, several for a conditional space (one per sub-space, each usually with its own ``model_name``).
    No ``Choice`` of sub-spaces remains inside them. Build one with ``from_config``.
    """

    def __init__(self, subspaces: list[dict[str, Any]]):
        if not subspaces:
            raise ConfigError("search_space has no sub-space", field="search_space")
        self.subspaces = [dict(s) for s in subspaces]

    # -- building -------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, search_space: Any, *, source: str | None = None,
                    lines: Mapping[str, int] | None = None) -> SearchSpace:
        """Normalise every accepted shape to ``subspaces``.

        Accepted shapes:

        - a mapping ``{parameter: expression}``, where an expression is a ``Distribution``, its text
          (``"uniform(0.001, 0.01)"``) or a fixed value (kept as is);
        - a list of such mappings: a conditional space, one mapping per sub-space (the cloud SDK's list of
          ``ImageObjectDetectionSearchSpace``);
        - a mapping with a value ``choice({...}, {...})`` of sub-space dicts (the older cloud SDK's
          ``{'model': choice({'model_name': choice('yolov5'), ...}, {...})}``): each dict becomes a
          sub-space, merged with the mapping's other keys (shared by every sub-space). Several such keys
          give every combination; a parameter may not be both shared and inside a sub-space.

        ``lines`` maps parameter names (or ``"search_space"``) to line numbers, for messages.
        """
        if isinstance(search_space, SearchSpace):
            return search_space
        lines = dict(lines or {})

        def fail(message: str, key: str | None = None, value: Any = None) -> ConfigError:
            line = lines.get(key) if key is not None else None
            if line is None:
                line = lines.get("search_space")
            return ConfigError(f"search_space: {message}", field=key or "search_space", value=value,
                               source=source, line=line)

        if isinstance(search_space, Mapping):
            mappings = [search_space]
        elif isinstance(search_space, (list, tuple)):
            mappings = list(search_space)
            for i, m in enumerate(mappings):
                if not isinstance(m, Mapping):
                    raise fail(f"a conditional space is a list of mappings (one per sub-space); item {i + 1} "
                               f"is {m!r}", value=m)
        else:
            raise fail(f"expected a mapping of parameter to expression (or a list of them), got {search_space!r}",
                       value=search_space)
        if not mappings or not any(mappings):
            raise fail("the search space is empty; give at least one parameter, e.g. "
                       "{'model_name': choice('yolov5')}")
        subspaces: list[dict[str, Any]] = []
        for mapping in mappings:
            subspaces.extend(_expand(mapping, source, lines, fail))
        return cls(subspaces)

    # -- reading --------------------------------------------------------------------------------------
    @property
    def is_conditional(self) -> bool:
        """True when there are several sub-spaces."""
        return len(self.subspaces) > 1

    def parameters(self) -> set[str]:
        """Every parameter name of every sub-space."""
        return {k for sub in self.subspaces for k in sub}

    def distributions(self) -> set[str]:
        """The kinds of expression used (``{"choice", "uniform"}``...); fixed values are not counted."""
        return {v.kind for _, _, v in self.items() if isinstance(v, Distribution)}

    def items(self) -> Iterator[tuple[int, str, Any]]:
        """``(sub-space index, parameter, expression or fixed value)`` for every entry."""
        for index, sub in enumerate(self.subspaces):
            for key, value in sub.items():
                yield index, key, value

    def grid_size(self) -> int:
        """How many combinations ``grid()`` enumerates (before removing duplicates across sub-spaces)."""
        return sum(math.prod(len(v.grid_values(k)) for k, v in sub.items() if isinstance(v, Distribution))
                   for sub in self.subspaces)

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of every ``choice``, sub-space after sub-space, each combination once.

        Order: sub-spaces in order; within one, ``itertools.product`` over the parameters in their order,
        each choice's values in the order written. A configuration reachable from two sub-spaces appears
        once (at its first place).

        Raises
        ------
        ConfigError
            When a parameter is not a ``choice`` (grid sampling takes only ``choice``) or the grid has more
            than ``MAX_GRID_SIZE`` combinations.
        """
        return [params for _, params in self.grid_with_subspaces()]

    def grid_with_subspaces(self) -> list[tuple[int, dict[str, Any]]]:
        """``grid()`` with the index of the sub-space each combination comes from."""
        size = self.grid_size()
        if size > MAX_GRID_SIZE:
            raise ConfigError(f"grid sampling: the search space has {size} combinations, more than "
                              f"{MAX_GRID_SIZE} can be enumerated; use random or bayesian sampling",
                              field="search_space", value=size)
        out: list[tuple[int, dict[str, Any]]] = []
        seen: set[str] = set()
        for index, sub in enumerate(self.subspaces):
            keys = list(sub)
            options = [sub[k].grid_values(k) if isinstance(sub[k], Distribution) else (sub[k],) for k in keys]
            for combo in itertools.product(*options):
                params = {k: copy.deepcopy(v) for k, v in zip(keys, combo, strict=True)}
                # repr of the sorted items identifies a configuration even when values are unhashable.
                ident = repr(sorted(params.items(), key=lambda kv: kv[0]))
                if ident not in seen:
                    seen.add(ident)
                    out.append((index, params))
        return out

    def sample(self, rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
        """Random sampling: a sub-space uniformly, then every parameter of it. Returns ``(index, params)``."""
        index = int(rng.integers(len(self.subspaces))) if self.is_conditional else 0
        return index, {k: _sample_value(v, rng) for k, v in self.subspaces[index].items()}

    def contains(self, params: Mapping[str, Any], subspace: int = 0) -> bool:
        """Whether ``params`` is a configuration sub-space ``subspace`` can produce: the same parameters, each
        value one its expression can give (a fixed value: equal)."""
        if not 0 <= subspace < len(self.subspaces):
            return False
        sub = self.subspaces[subspace]
        if set(params) != set(sub):
            return False
        return all(sub[k].contains(v) if isinstance(sub[k], Distribution) else v == sub[k] for k, v in params.items())

    def locate(self, params: Mapping[str, Any]) -> int | None:
        """The index of the first sub-space that can produce ``params``, or None."""
        return next((i for i in range(len(self.subspaces)) if self.contains(params, i)), None)

    def to_config(self) -> dict[str, Any] | list[dict[str, Any]]:
        """YAML/JSON-able form with expressions as text; ``from_config`` reads it back to an equal space."""
        out = [{k: (str(v) if isinstance(v, Distribution) else copy.deepcopy(v)) for k, v in sub.items()}
               for sub in self.subspaces]
        return out[0] if len(out) == 1 else out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.subspaces == other.subspaces

    def __repr__(self) -> str:
        return f"SearchSpace({self.to_config()!r})"


def _expand(mapping: Mapping, source, lines, fail) -> list[dict[str, Any]]:
    """One mapping -> flat sub-spaces (several when a value is a choice of sub-space dicts)."""
    fixed: dict[str, Any] = {}
    branches: list[tuple[str, list[dict[str, Any]]]] = []
    for key, raw in mapping.items():
        if not isinstance(key, str) or not key.strip():
            raise fail(f"parameter names are strings, got {key!r}", value=key)
        value = raw
        if isinstance(raw, str):
            try:
                parsed = parse_expression(raw)
            except ConfigError as exc:
                raise fail(f"{key}: {exc.message}", key, raw) from None
            value = parsed if parsed is not None else raw
        if isinstance(value, Choice) and value.is_subspaces:
            subs: list[dict[str, Any]] = []
            for option in value.values:
                subs.extend(_expand(option, source, lines, fail))
            branches.append((key, subs))
        else:
            fixed[key] = value
    if not branches:
        if not fixed:
            raise fail("a sub-space is empty; give at least one parameter, e.g. {'model_name': choice('yolov5')}")
        return [fixed]
    out = []
    for combo in itertools.product(*(subs for _, subs in branches)):
        merged = dict(fixed)
        for (branch_key, _), sub in zip(branches, combo, strict=True):
            for key, value in sub.items():
                if key in merged:
                    raise fail(f"{key} is set both outside and inside the sub-spaces of {branch_key!r}; set it "
                               f"in one place", key, value)
                merged[key] = value
        out.append(merged)
    return out
