"""One drive inside a run's dream, with no transport: the state a ``wm play`` page shows and steers.

A ``Session`` starts from a stored real start frame (a random episode or a chosen one), encoded
by the vision model; each ``step`` advances the memory model with one action at temperature tau
and decodes the new latent. Beside the dream, the real env can be stepped with the same actions
from the same start (its seed is the stored episode's), with the distance between the two latents.
The actions come from the person (``controls`` maps keys and sliders from the action space) or
from any registered agent, which sees the dream's ``[z, h]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from worldmodels.agents import load_agent
from worldmodels.collect.driver import episode_seed
from worldmodels.core.errors import UserError
from worldmodels.core.settings import require_at_least
from worldmodels.dream.imagine import DreamConfig, imagine, terminated
from worldmodels.envs.spaces import ActionSpec
from worldmodels.evaluation.video import write_mp4
from worldmodels.models.vision import frames_to_uint8
from worldmodels.runs.artifacts import load_world_model
from worldmodels.runs.episodes import list_episodes
from worldmodels.runs.rundir import RunDir

CAR = ActionSpec("box", 3, (-1.0, 0.0, 0.0), (1.0, 1.0, 1.0))
"""CarRacing's actions: steer, gas, brake."""
ARROWS = {"UP": ["ArrowUp", "w"], "DOWN": ["ArrowDown", "s"], "LEFT": ["ArrowLeft", "a"],
          "RIGHT": ["ArrowRight", "d"], "FIRE": [" "]}
"""Keys for actions named in ALE's words (``env.unwrapped.get_action_meanings()``)."""
RECORD_SECONDS = 600
"""A recording stops by itself after this long (its frames are kept in memory)."""


@dataclass
class PlayConfig:
    """``wm play``: a page on which a person drives inside the run's dream."""

    dream: DreamConfig = field(default_factory=DreamConfig)
    """the dream's temperature (changeable on the page), done threshold and length"""
    host: str = "127.0.0.1"
    """address the page is served on (127.0.0.1: this machine only)"""
    port: int = 8765
    """TCP port of the page (0: any free port)"""
    fps: int = 30
    """dream steps, and frames, per second"""
    agent: str = "controller"
    """the agent the wheel is handed to first (any registered agent can be chosen on the page)"""
    real: bool = False
    """start with the real env stepped beside the dream (a toggle on the page)"""
    device: str = "cpu"
    """where the models run: cpu, cuda, cuda:N, or auto"""

    def __post_init__(self) -> None:
        require_at_least(self, 0, "port")
        require_at_least(self, 1, "fps")
        if self.port > 65535:
            raise UserError(f"--port must be at most 65535, got {self.port}")


def controls(action: ActionSpec, meanings: list[str] | None = None) -> dict:
    """How keys and sliders make actions, for the page (JSON).

    Box: ``rest`` (the action with nothing pressed), ``keys`` ``{key: [dimension, value]}`` (held
    keys add their value; the sum is clipped to the bounds), ``sliders`` (dimensions without keys
    set by a slider). CarRacing's steer/gas/brake are on the arrows and WASD, any other Box on
    sliders. Discrete: ``keys`` ``{key: action}`` (number keys, plus arrows where the env names its
    actions as ALE does) and ``idle``, the action taken with no key held (its NOOP; None: the dream
    waits for a key, turn by turn). ``help``: lines that describe the mapping.
    """
    if action.discrete:
        names = list(meanings or [])[:action.dim]
        keys = {str((i + 1) % 10): i for i in range(min(action.dim, 10))}
        for i, name in enumerate(names):
            for key in ARROWS.get(name.upper(), []):
                keys[key] = i
        idle = names.index("NOOP") if "NOOP" in names else None
        label = [f"{i} ({names[i]})" if i < len(names) else str(i) for i in range(action.dim)]
        lines = [f"{' / '.join(_key_name(k) for k, a in keys.items() if a == i)}: action {label[i]}"
                 for i in range(action.dim)]
        lines.append(f"no key: action {label[idle]}" if idle is not None
                     else "no key: the dream waits (one step per key press, repeated while held)")
        return {"kind": "discrete", "n": action.dim, "keys": keys, "idle": idle, "sliders": [], "help": lines}
    low, high = np.array(action.low), np.array(action.high)
    rest = np.clip(0.0, low, high).tolist()
    if action == CAR:
        keys = {"ArrowLeft": [0, -1.0], "a": [0, -1.0], "ArrowRight": [0, 1.0], "d": [0, 1.0],
                "ArrowUp": [1, 1.0], "w": [1, 1.0], "ArrowDown": [2, 0.8], "s": [2, 0.8]}
        lines = ["← / A, → / D: steer", "↑ / W: gas", "↓ / S: brake (0.8)"]
        return {"kind": "box", "low": low.tolist(), "high": high.tolist(), "rest": rest, "keys": keys,
                "sliders": [], "help": lines}
    lines = [f"slider {d}: action[{d}] from {low[d]:g} to {high[d]:g}" for d in range(action.dim)]
    return {"kind": "box", "low": low.tolist(), "high": high.tolist(), "rest": rest, "keys": {},
            "sliders": list(range(action.dim)), "help": lines}


def _key_name(key: str) -> str:
    return {"ArrowUp": "↑", "ArrowDown": "↓", "ArrowLeft": "←", "ArrowRight": "→", " ": "Space"}.get(key, key.upper())


def start_seeds(run: RunDir) -> dict[int, int]:
    """Stored episode index -> the seed its real env was reset with (from run.json's collections)."""
    seeds = {}
    for collection in run.read_meta().get("collections", []):
        for index in collection.get("episodes", []):
            seeds[int(index)] = episode_seed(collection["seed"], index)
    return seeds


class Session:
    """The dream one person drives: its latent and memory state, readouts, the real env beside it and a recording."""

    def __init__(self, run: RunDir, config: PlayConfig, device: torch.device | str = "cpu", seed: int | None = None):
        self.run, self.config, self.device = run, config, torch.device(device)
        self.vision, self.memory = load_world_model(run, self.device)
        self.action_spec = run.action_spec()
        self.episodes = list_episodes(run.episodes)
        if not self.episodes:
            raise UserError(f"no stored episodes in {run.episodes}: the dream starts from a real frame")
        self.seeds = start_seeds(run)
        self.first_frames: dict[int, np.ndarray] = {}  # read once: a CarRacing episode takes ~0.1 s to load
        self.env = run.make_env()
        meanings = getattr(self.env.unwrapped, "get_action_meanings", None)
        self.controls = controls(self.action_spec, meanings() if meanings else None)
        self.rng = np.random.default_rng(seed)
        self.sampler = torch.Generator(device=self.device)
        self.sampler.manual_seed(int(self.rng.integers(2**31)))
        self.temperature = config.dream.temperature
        self.real_on = config.real
        self.paused = False
        self.action = self.idle_action()
        self.driver: str | None = None  # None: the person; else the name of the agent driving
        self.agent, self.agent_state, self.agent_name = None, None, None
        self.recording: list[np.ndarray] | None = None
        self.captions: list[str] = []
        self.saved: str | None = None  # the file name of the last recording written
        self.reset()

    def idle_action(self):
        """The action with no key held (None: a discrete space with no NOOP, whose dream waits)."""
        if self.action_spec.discrete:
            return self.controls["idle"]
        return np.asarray(self.controls["rest"], np.float32)

    def set_action(self, action) -> None:
        """The person's action: a list of floats (Box, clipped to its bounds), an index (Discrete) or None (idle)."""
        if action is None:
            self.action = self.idle_action()
        elif self.action_spec.discrete:
            index = int(action)
            if not 0 <= index < self.action_spec.dim:
                raise ValueError(f"action {index} outside 0..{self.action_spec.dim - 1}")
            self.action = index
        else:
            values = np.asarray(action, np.float32).reshape(self.action_spec.dim)
            self.action = np.clip(values, self.action_spec.low, self.action_spec.high).astype(np.float32)

    @torch.no_grad()
    def reset(self, episode: int | None = None) -> None:
        """Start again from stored episode ``episode``'s first frame (None: a random episode)."""
        if episode is None:
            episode = int(self.rng.choice(list(self.episodes)))
        if episode not in self.episodes:
            raise ValueError(f"no stored episode {episode} (there are {len(self.episodes)})")
        self.episode = episode
        if episode not in self.first_frames:
            with np.load(self.episodes[episode]) as data:
                self.first_frames[episode] = data["obs"][0]
        start = self.first_frames[episode]
        self.real_frame = None
        if self.real_on:
            self.real_frame, _ = self.env.reset(seed=self.seeds.get(episode))
            start = self.real_frame  # the same frame where the seed is known
        self.z = self.vision.encode(torch.as_tensor(start[None], device=self.device))[0]
        self.state = self.memory.initial_state(1)
        self.t, self.total, self.reward, self.p_done, self.ended, self.applied = 0, 0.0, 0.0, 0.0, None, None
        self.real_total, self.real_reward, self.real_ended = 0.0, 0.0, None
        self.dream_frame = frames_to_uint8(self.vision.decode(self.z))[0]
        self.distance = self.latent_distance()
        if self.agent is not None:
            self.agent_state = self.agent.reset(1)

    def set_real(self, on: bool) -> None:
        """Step the real env beside the dream (or stop); switching restarts both from the same episode start."""
        self.real_on = bool(on)
        self.reset(self.episode)

    def set_driver(self, name: str | None) -> None:
        """Hand the wheel to agent ``name`` (loaded once, then kept), or take it back (None)."""
        if name is not None and name != self.agent_name:
            self.agent = load_agent(name, self.run, str(self.device))
            self.agent_name = name
        if name is not None:
            self.agent_state = self.agent.reset(1)
        self.driver = name

    def observation(self) -> torch.Tensor:
        """``[1, Z+H]``: what an agent sees in the dream."""
        return torch.cat([self.z, self.memory.features(self.state)], dim=1)

    def next_action(self):
        """The action of the next step: the agent's when it drives, else the person's (None: wait)."""
        if self.driver is None:
            return self.action
        action, self.agent_state = self.agent.act(self.observation(), self.agent_state)
        return action[0]

    @torch.no_grad()
    def step(self) -> bool:
        """One dream step (and one real-env step beside it) with the next action; whether it stepped."""
        if self.paused or self.ended is not None:
            return False
        action = self.next_action()
        if action is None:
            return False
        self.applied = np.asarray(action).tolist()
        model_action = self.action_spec.to_model(torch.as_tensor(np.asarray(action)[None], device=self.device))
        imagined = imagine(self.memory, self.state, self.z, model_action[:, None], temperature=self.temperature,
                           generator=self.sampler if self.temperature > 0 else None)
        self.state, self.z = imagined.state, imagined.latents[:, 0]
        self.reward = float(imagined.rewards[0, 0])
        self.p_done = 1.0 - float(imagined.continues[0, 0])
        self.total += self.reward
        self.t += 1
        if bool(terminated(imagined.continues[:, 0], self.config.dream.done_threshold)[0]):
            self.ended = f"the dream ended: P(episode ends) {self.p_done:.2f} > {self.config.dream.done_threshold:g}"
        elif self.t >= self.config.dream.max_steps:
            self.ended = f"the dream reached its length limit ({self.config.dream.max_steps} steps)"
        self.dream_frame = frames_to_uint8(self.vision.decode(self.z))[0]
        if self.real_on and self.real_ended is None:
            self.real_frame, reward, term, trunc, _ = self.env.step(action)
            self.real_reward = float(reward)
            self.real_total += self.real_reward
            if term or trunc:
                self.real_ended = "terminated" if term else "truncated"
        self.distance = self.latent_distance()
        if self.recording is not None:
            self.record_frame()
        return True

    @torch.no_grad()
    def latent_distance(self) -> float | None:
        """Euclidean distance between the dream's latent and the real frame's encoding (None: no real env)."""
        if self.real_frame is None:
            return None
        real_z = self.vision.encode(torch.as_tensor(self.real_frame[None], device=self.device))[0]
        return float(torch.linalg.vector_norm(real_z - self.z))

    def panels(self) -> np.ndarray:
        """The frame shown: the dream ``[64, 64, 3]``, with the real frame on its right when stepped beside it."""
        if self.real_frame is None:
            return self.dream_frame
        return np.concatenate([self.dream_frame, self.real_frame], axis=1)

    def readouts(self) -> dict:
        """What the page prints beside the frame."""
        out = {"step": self.t, "reward": self.reward, "return": self.total, "p_done": self.p_done,
               "tau": self.temperature, "paused": self.paused, "ended": self.ended, "episode": self.episode,
               "driver": self.driver, "action": self.applied, "real": None, "saved": self.saved,
               "recording": None if self.recording is None else len(self.recording)}
        if self.real_frame is not None:
            out["real"] = {"reward": self.real_reward, "return": self.real_total, "ended": self.real_ended,
                           "distance": self.distance}
        return out

    def record(self, on: bool) -> str | None:
        """Start recording (``on``), or stop and write the session's mp4 to ``RUN/play``; returns its file name."""
        if on:
            self.recording, self.captions = [self.panels()], [self.caption()]
            return None
        if self.recording is None:
            return None
        frames, captions = self.recording, self.captions
        self.recording, self.captions = None, []
        width = max(f.shape[1] for f in frames)  # the real panel may come and go: pad to the widest
        frames = np.stack([np.pad(f, ((0, 0), (0, width - f.shape[1]), (0, 0))) for f in frames])
        name = time.strftime("play_%Y%m%d_%H%M%S.mp4")
        write_mp4(self.run.root / "play" / name, frames, fps=self.config.fps, captions=captions)
        self.saved = name
        return name

    def record_frame(self) -> None:
        self.recording.append(self.panels())
        self.captions.append(self.caption())
        if len(self.recording) >= RECORD_SECONDS * self.config.fps:
            self.record(False)

    def caption(self) -> str:
        real = f"  real {self.real_total:.1f}" if self.real_frame is not None else ""
        return f"{self.driver or 'you'}  step {self.t}  return {self.total:.1f}  P(end) {self.p_done:.2f}{real}"
