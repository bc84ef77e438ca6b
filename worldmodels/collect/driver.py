"""Running agents in real envs: one episode at a time, seeded by (run seed, episode index).
"""

from __future__ import annotations

import numpy as np


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode ``index`` of a run seeded ``seed``: independent of worker count."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def run_episode(env, agent, seed: int, keep_frames: bool = True) -> dict[str, np.ndarray]:
    """One episode of ``agent`` in ``env`` (a pixel env), reset with ``seed``.

    Returns the episode in the store's schema (``obs`` ``[T+1, 64, 64, 3]``, ``action``,
    ``reward``, ``terminated``, ``truncated``); ``obs`` holds only the first frame when
    ``keep_frames`` is false.
    """
    agent.seed(seed)
    obs, _ = env.reset(seed=seed)
    state = agent.reset(1)
    frames, actions, rewards, terminated, truncated = [obs], [], [], [], []
    done = False
    while not done:
        action, state = agent.act(obs[None], state)
        action = action[0]
        obs, reward, term, trunc, _ = env.step(action)
        if keep_frames:
            frames.append(obs)
        actions.append(action)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
        done = term or trunc
    return {
        "obs": np.stack(frames),
        "action": np.stack(actions),
        "reward": np.asarray(rewards, np.float32),
        "terminated": np.asarray(terminated, bool),
        "truncated": np.asarray(truncated, bool),
    }
