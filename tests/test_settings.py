"""Settings declared once: a config dataclass's fields and docstrings are the command line's flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from worldmodels.cli import build_parser
from worldmodels.collect.collector import CollectConfig
from worldmodels.core.errors import UserError
from worldmodels.core.settings import (
    add_flags,
    build,
    field_docs,
    flags_of,
    given,
    iter_fields,
    reject_inapplicable,
)
from worldmodels.curiosity.explore import ExploreConfig
from worldmodels.dream.cma import CMAConfig
from worldmodels.dream.sb3 import SB3Config
from worldmodels.evaluation.evaluate import EvalConfig
from worldmodels.planning.foresight import ForesightConfig
from worldmodels.planning.optimizers import CEMConfig
from worldmodels.training.memory import MemoryTrainConfig
from worldmodels.training.vision import VisionTrainConfig


@dataclass
class Inner:
    temperature: float = 1.0
    """Randomness of the dream."""
    max_steps: int = field(default=100, metadata={"flag": "dream_steps"})
    """Dream length, in steps."""


@dataclass
class Outer:
    generations: int = 10
    """CMA-ES generations."""
    inner: Inner = field(default_factory=Inner)
    """How dreams run."""
    mode: str = field(default="a", metadata={"choices": ["a", "b"]})
    """Which mode."""
    crop: tuple[int, int] | None = None
    """Two numbers."""
    fast: bool = False
    """Go fast."""


def parse(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    add_flags(parser, Outer)
    return given(parser.parse_args(list(argv)))


def test_fields_become_flags_with_their_docstring_and_default_as_help():
    parser = argparse.ArgumentParser()
    add_flags(parser, Outer)
    text = parser.format_help()
    assert "--generations N" in text and "CMA-ES generations. (default 10)" in text
    assert "--dream-steps N" in text and "Dream length, in steps. (default 100)" in text  # nested, renamed
    assert "--mode {a,b}" in text and "--fast, --no-fast" in text


def test_only_typed_flags_override_the_dataclass_defaults():
    assert parse() == {}
    values = parse("--dream-steps", "7", "--crop", "1,2", "--fast")
    assert values == {"dream_steps": 7, "crop": (1, 2), "fast": True}
    config = build(Outer, values)
    assert config == Outer(inner=Inner(max_steps=7), crop=(1, 2), fast=True)
    assert build(Outer, {"generations": 3}, base=config) == Outer(3, Inner(max_steps=7), crop=(1, 2), fast=True)


def test_a_flag_shared_by_two_configs_sets_both_and_lists_both_defaults():
    @dataclass
    class A:
        epochs: int = 10
        """Passes."""

    @dataclass
    class B:
        epochs: int = 20
        """Passes."""

    parser = argparse.ArgumentParser()
    add_flags(parser, A, B, labels=("vision", "memory"))
    assert "(default vision 10, memory 20)" in " ".join(parser.format_help().split())
    values = given(parser.parse_args(["--epochs", "3"]))
    assert build(A, values).epochs == build(B, values).epochs == 3


def test_flags_that_do_not_apply_are_refused():
    reject_inapplicable({"generations": 3}, flags_of(Outer), "here")
    with pytest.raises(UserError, match="--timesteps does not apply to --algo cma"):
        reject_inapplicable({"timesteps": 5, "generations": 3}, flags_of(Outer), "to --algo cma")


def test_every_wm_flag_has_help_with_its_default():
    parser = build_parser()
    stages = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in stages.items():
        for action in sub._actions:
            assert action.help, f"wm {name} {action.option_strings} has no help"


def test_every_config_field_has_a_docstring():
    for cls in (CollectConfig, VisionTrainConfig, MemoryTrainConfig, CMAConfig, SB3Config, EvalConfig, ExploreConfig,
                ForesightConfig, CEMConfig):
        for owner, f in iter_fields(cls):
            assert field_docs(owner).get(f.name), f"{owner.__name__}.{f.name} has no docstring"
