"""Settings declared once: the fields of a config dataclass, with the docstring under each, are
the command line's flags (CleanRL's one-dataclass style, tyro's docstring-as-help convention).

    @dataclass
    class TrainConfig:
        epochs: int = 10
        \"\"\"Passes over the data.\"\"\"

    add_flags(parser, TrainConfig)            # --epochs N  "Passes over the data. (default 10)"
    config = build(TrainConfig, given(args))  # only the flags the user typed override defaults

A field's flag is ``--field-name``; ``field(metadata={"flag": ..., "choices": ..., "parse": ...})``
renames it, restricts it or parses its text. Nested dataclass fields (a ``DreamConfig`` inside a
``CMAConfig``) contribute their own fields' flags, so a composed config still has flat flags.
Flags default to "not given" (``argparse.SUPPRESS``), which lets a command reject a flag that
does not apply (``given``) and keeps every default in the dataclass alone.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Callable, Iterator
from functools import cache

from worldmodels.core.errors import UserError

METAVARS = {int: "N", float: "X", str: "TEXT", dict: "JSON"}


@cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` from the string literal under each field of dataclass ``cls`` (and its bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def _base_type(hint) -> tuple[object, bool]:
    """(the type inside ``X | None``, whether None is allowed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def parse_json_object(text: str) -> dict:
    """A flag's JSON object text -> dict, or a ``UserError`` that quotes it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg}): {text}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text}")
    return value


def _parser_for(hint, meta: dict) -> Callable[[str], object] | None:
    if "parse" in meta:
        return meta["parse"]
    base, optional = _base_type(hint)
    if base in (int, float, str):
        return base
    if base is dict or typing.get_origin(base) is dict:
        return parse_json_object
    if typing.get_origin(base) is tuple:
        kinds = typing.get_args(base)
        item = kinds[0]

        def parse(text: str):
            try:
                return tuple(item(p) for p in text.split(","))
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected comma-separated {item.__name__}s, got {text!r}") from None

        return parse
    return None


def flag_key(field: dataclasses.Field) -> str:
    """The name a field goes by on the command line, underscores kept: ``seq_len`` -> ``--seq-len``."""
    return field.metadata.get("flag", field.name)


def flag_name(field: dataclasses.Field) -> str:
    return "--" + flag_key(field).replace("_", "-")


def iter_fields(cls: type, skip: frozenset[str] = frozenset()) -> Iterator[tuple[type, dataclasses.Field]]:
    """(owning dataclass, field) for every flag-bearing field of ``cls``, nested configs flattened."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.metadata.get("cli") is False:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            yield from iter_fields(hints[f.name], skip)
        else:
            yield cls, f


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return f.metadata.get("none", "none")
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return json.dumps(value) if isinstance(value, dict) else str(value)


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *classes: type,
              labels: tuple[str, ...] = (), skip: frozenset[str] | set[str] = frozenset(),
              seen: set[str] | None = None) -> None:
    """Add one flag per field of the dataclasses ``classes`` (nested configs flattened) to ``parser``.

    Help is the field's docstring plus its default. A field several configs share (``--epochs`` of
    vision and memory training) becomes one flag that sets all of them; with ``labels`` (one per
    class) its help lists each default. ``seen`` (flag names already added, updated) lets a
    command add more configs later without repeating a flag such as ``--seed``.
    """
    seen = set() if seen is None else seen
    found: dict[str, list[tuple[str, type, dataclasses.Field]]] = {}
    for i, cls in enumerate(classes):
        for owner, f in iter_fields(cls, frozenset(skip)):
            found.setdefault(flag_name(f), []).append((labels[i] if labels else "", owner, f))
    for name, owners in found.items():
        if name in seen:
            continue
        seen.add(name)
        _, owner, f = owners[0]
        hint = _hints(owner)[f.name]
        defaults = {label: _default_text(g) for label, _, g in owners}
        if len(set(defaults.values())) > 1:
            default = ", ".join(f"{label} {value}" for label, value in defaults.items())
        else:
            default = _default_text(f)
        text = f"{field_docs(owner).get(f.name, '')} (default {default})".strip()
        kwargs: dict = {"default": argparse.SUPPRESS, "help": text, "dest": flag_key(f)}
        if _base_type(hint)[0] is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            parse = _parser_for(hint, f.metadata)
            if parse is None:
                raise TypeError(f"{owner.__name__}.{f.name}: no flag parser for {hint!r}")
            kwargs["type"] = parse
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            else:
                kwargs["metavar"] = f.metadata.get("metavar", METAVARS.get(_base_type(hint)[0], "VALUE"))
        parser.add_argument(name, **kwargs)


def given(args: argparse.Namespace) -> dict:
    """The flags the user typed (generated flags default to absent), as ``{field: value}``."""
    return {k: v for k, v in vars(args).items() if k not in ("func", "command")}


def build(cls: type, values: dict, base=None):
    """An instance of dataclass ``cls`` from ``base`` (or the defaults), with ``values`` (keyed by
    ``flag_key``) set where they name a field of ``cls`` or of a nested config; other keys are ignored."""
    hints = _hints(cls)
    changes = {}
    for f in dataclasses.fields(cls):
        current = getattr(base, f.name) if base is not None else None
        if dataclasses.is_dataclass(hints[f.name]):
            changes[f.name] = build(hints[f.name], values, current)
        elif flag_key(f) in values:
            changes[f.name] = values[flag_key(f)]
    if base is not None:
        return dataclasses.replace(base, **changes)
    return cls(**changes)


def flags_of(*classes: type) -> set[str]:
    """The flag keys (``given``'s keys) that configs ``classes`` accept."""
    return {flag_key(f) for cls in classes for _, f in iter_fields(cls)}


def reject_inapplicable(values: dict, allowed: set[str], why: str) -> None:
    """A ``UserError`` naming the first typed flag outside ``allowed`` (``why``: when they apply)."""
    extra = sorted(set(values) - allowed)
    if extra:
        names = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise UserError(f"{names} {'does' if len(extra) == 1 else 'do'} not apply {why}")


def settings_of(config, prefix: str = "") -> list[tuple[str, object]]:
    """``[(dotted path, value)]`` of every leaf setting of dataclass ``config`` (``set_path``'s paths)."""
    out = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out += settings_of(value, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, value))
    return out


def set_path(config, path: str, text: str, prefix: str = ""):
    """``config`` with the (possibly nested) field at dotted ``path`` set from ``text``.

    ``set_path(preset, "cma.generations", "40")``; the text is parsed by the field's type
    (JSON for dicts and lists, ``none`` for None). Unknown paths are a ``UserError`` listing the
    valid names.
    """
    head, _, rest = path.partition(".")
    names = {f.name: f for f in dataclasses.fields(config)}
    if head not in names:
        raise UserError(f"no setting {prefix + path!r}; settings here: {', '.join(sorted(names))}")
    hint = _hints(type(config))[head]
    current = getattr(config, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise UserError(f"{head} is a value, not a group: use {head}=VALUE")
        return dataclasses.replace(config, **{head: set_path(current, rest, text, f"{prefix}{head}.")})
    if dataclasses.is_dataclass(current):
        raise UserError(f"{head} is a group of settings: set one of {', '.join(f.name for f in dataclasses.fields(current))}")
    base, optional = _base_type(hint)
    if optional and text.lower() in ("none", "null"):
        return dataclasses.replace(config, **{head: None})
    try:
        if base is bool:
            if text.lower() not in ("true", "false", "1", "0", "on", "off"):
                raise ValueError(text)
            value = text.lower() in ("true", "1", "on")
        elif base in (int, float, str):
            value = base(text)
        else:
            value = json.loads(text)
            if typing.get_origin(base) is tuple:
                value = tuple(value)
    except (ValueError, json.JSONDecodeError):
        raise UserError(f"{prefix}{path}={text!r}: not a valid {getattr(base, '__name__', base)}") from None
    return dataclasses.replace(config, **{head: value})


def _flag(config, name: str) -> str:
    """The flag of field ``name`` of ``config`` (``--max-steps`` for a field renamed by metadata)."""
    field = next(f for f in dataclasses.fields(config) if f.name == name)
    return flag_name(field)


def require_at_least(config, minimum: float, *names: str) -> None:
    """A ``UserError`` naming the first field of ``names`` below ``minimum`` (None passes: "not set")."""
    for name in names:
        value = getattr(config, name)
        if value is not None and not value >= minimum:
            raise UserError(f"{_flag(config, name)} must be at least {minimum}, got {value}")


def require_positive(config, *names: str) -> None:
    """A ``UserError`` naming the first field of ``names`` that is not a finite number > 0."""
    for name in names:
        value = getattr(config, name)
        if not (value > 0 and value != float("inf")):
            raise UserError(f"{_flag(config, name)} must be a positive number, got {value}")


def require_fraction(config, *names: str, closed: bool = False) -> None:
    """A ``UserError`` naming the first field of ``names`` outside the open interval (0, 1), or with ``closed``
    outside [0, 1]."""
    for name in names:
        value = getattr(config, name)
        if closed and not 0 <= value <= 1:
            raise UserError(f"{_flag(config, name)} must lie in [0, 1], got {value}")
        if not closed and not 0 < value < 1:
            raise UserError(f"{_flag(config, name)} must lie strictly between 0 and 1, got {value}")
