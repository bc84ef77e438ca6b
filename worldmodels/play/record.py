"""``wm dream --record N``: videos of an agent's dreams beside its real-env episodes.

Episode i is a seeded real-env episode of the agent; beside it, the agent drives a dream that starts
from the same first frame (encoded by the vision model) and runs until the memory model predicts
the end (``DreamConfig``: temperature, done threshold, length). The videos (real | dream, each
captioned with its return so far) go to ``RUN/eval/dream_AGENT_i.mp4``, where ``wm report`` embeds them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from worldmodels.agents import load_agent
from worldmodels.collect.driver import EpisodeRecorder, drive, episode_seed
from worldmodels.core.device import pick_device
from worldmodels.dream.imagine import DreamConfig, imagine, terminated
from worldmodels.evaluation.video import write_mp4
from worldmodels.models.vision import frames_to_uint8
from worldmodels.runs.artifacts import load_world_model
from worldmodels.runs.rundir import RunDir

RECORD_SEED = 30_000
"""Recorded episode i is seeded from (RECORD_SEED + seed, i): tracks neither collection nor ``wm eval`` uses."""


@torch.no_grad()
def dream_episode(agent, vision, memory, action, first_frame: np.ndarray, config: DreamConfig,
                  generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The agent's dream from ``first_frame`` [64, 64, 3]: decoded frames [T+1, 64, 64, 3] and rewards [T]."""
    device = generator.device
    z = vision.encode(torch.as_tensor(first_frame[None], device=device))[0]
    state, agent_state = memory.initial_state(1), agent.reset(1)
    latents, rewards = [z], []
    for _ in range(config.max_steps):
        act, agent_state = agent.act(torch.cat([z, memory.features(state)], dim=1), agent_state)
        model_action = action.to_model(torch.as_tensor(act, device=device))[:, None]
        imagined = imagine(memory, state, z, model_action, temperature=config.temperature, generator=generator)
        state, z = imagined.state, imagined.latents[:, 0]
        latents.append(z)
        rewards.append(float(imagined.rewards[0, 0]))
        if bool(terminated(imagined.continues[:, 0], config.done_threshold)[0]):
            break
    frames = np.concatenate([frames_to_uint8(vision.decode(torch.cat(latents[i:i + 256])))
                             for i in range(0, len(latents), 256)])
    return frames, np.asarray(rewards)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two clips [T, H, W, 3] beside each other, the shorter one held on its last frame, dimmed."""
    length = max(len(left), len(right))

    def held(clip: np.ndarray) -> np.ndarray:
        tail = np.repeat(clip[-1:] // 2, length - len(clip), axis=0)
        return np.concatenate([clip, tail])

    return np.concatenate([held(left), held(right)], axis=2)


def record_dreams(run: RunDir, agent_name: str, episodes: int, config: DreamConfig, seed: int = 0,
                  device: str = "cpu", max_steps: int | None = None,
                  agent_options: dict | None = None) -> list[Path]:
    """``episodes`` videos ``RUN/eval/dream_AGENT_i.mp4``: the agent's real episode i | its dream from the same start."""
    device = pick_device(device)
    vision, memory = load_world_model(run, device)
    action = run.action_spec()
    agent = load_agent(agent_name, run, str(device), **(agent_options or {}))
    env = run.make_env(**({} if max_steps is None else {"max_steps": max_steps}))
    generator = torch.Generator(device=device)
    paths = []
    for i in range(episodes):
        episode_seed_i = episode_seed(RECORD_SEED + seed, i)
        recorder = EpisodeRecorder()
        drive(env, agent, episode_seed_i, [recorder])
        real = recorder.episode()
        generator.manual_seed(episode_seed_i)
        dreamt, dream_rewards = dream_episode(agent, vision, memory, action, real["obs"][0], config, generator)
        real_returns = np.concatenate([[0.0], np.cumsum(real["reward"])])
        dream_returns = np.concatenate([[0.0], np.cumsum(dream_rewards)])
        captions = [f"real {real_returns[min(t, len(real_returns) - 1)]:.1f} | "
                    f"dream {dream_returns[min(t, len(dream_returns) - 1)]:.1f}  step {t}"
                    for t in range(max(len(real_returns), len(dream_returns)))]
        path = run.eval / f"dream_{agent_name}_{i}.mp4"
        write_mp4(path, side_by_side(real["obs"], dreamt), captions=captions)
        paths.append(path)
    env.close()
    return paths
