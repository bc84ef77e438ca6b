"""Loaders for the agents registry: ``load(run, device, **options) -> Agent``."""

from __future__ import annotations

from agents.random import BrownianAgent, RandomAgent


def random(run, device="cpu", **options):
    return RandomAgent(run.action_spec())


def brownian(run, device="cpu", **options):
    return BrownianAgent(run.action_spec())
