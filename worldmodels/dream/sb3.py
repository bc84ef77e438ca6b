"""Any stable-baselines3 algorithm trained on the batched dream: ``wm dream --algo ppo|sac|...``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor
from tqdm.auto import tqdm

from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.core.settings import require_at_least
from worldmodels.curiosity.rewards import KINDS
from worldmodels.dream.env import dream_vec_env, intrinsic_bonus
from worldmodels.dream.imagine import BatchedDream, DreamConfig, Shaping, dream_starts
from worldmodels.runs.artifacts import algo_class, load_sb3, load_world_model, read_sb3_meta, save_sb3
from worldmodels.runs.rundir import RunDir
from worldmodels.runs.tensorboard import stage_writer


@dataclass
class SB3Config:
    """A stable-baselines3 algorithm trained on batched dreams."""

    algo: str = "ppo"
    """stable-baselines3 algorithm: ppo, a2c, sac, td3, ..."""
    timesteps: int = 100_000
    """dream steps in total, over all parallel dreams"""
    envs: int = 16
    """parallel dreams (the VecEnv's size)"""
    dream: DreamConfig = field(default_factory=DreamConfig)
    """how the dreams run: temperature, done threshold, length in steps"""
    intrinsic: str | None = field(default=None, metadata={"choices": list(KINDS)})
    """curiosity bonus in the dream: surprise | icm | disagreement | infogain (None: dream reward only)"""
    beta: float = 1.0
    """weight of the intrinsic reward, which is normalised to unit running std"""
    seed: int = 0
    """seeds the algorithm and the dreams"""
    device: str = "auto"
    """torch device of the dreams (and of the policy unless cpu): auto (cuda, then mps, then cpu), cpu, cuda, cuda:N"""
    policy_kwargs: dict | None = field(default=None, metadata={"metavar": "JSON"})
    """keyword arguments of the policy, e.g. '{"net_arch": [64, 64]}' (default: the algorithm's)"""
    algo_kwargs: dict | None = field(default=None, metadata={"metavar": "JSON"})
    """keyword arguments of the algorithm, e.g. '{"learning_rate": 0.001, "gamma": 0.98}'"""

    def __post_init__(self) -> None:
        require_at_least(self, 1, "timesteps", "envs")
        require_at_least(self, 0, "beta")


def rollout_kwargs(cls, config: SB3Config) -> dict:
    """On-policy algorithms: rollouts of at most ``timesteps`` steps (PPO's default 2048 x envs would overshoot)."""
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    if not issubclass(cls, OnPolicyAlgorithm):
        return {}
    params = inspect.signature(cls).parameters
    n_steps = max(2, min(params["n_steps"].default, config.timesteps // config.envs))
    kwargs = {"n_steps": n_steps}
    if "batch_size" in params:
        kwargs["batch_size"] = min(params["batch_size"].default, n_steps * config.envs)
    return kwargs


def policy_name(cls) -> str:
    """The algorithm's MLP policy: ``MlpPolicy``, or RecurrentPPO's ``MlpLstmPolicy``."""
    return next(name for name in cls.policy_aliases if name.startswith("Mlp"))


class Progress(BaseCallback):
    """A tqdm bar of dream steps with the mean dream return of recent episodes (SB3's own bar needs rich)."""

    def __init__(self, total: int, desc: str):
        super().__init__()
        self.total, self.desc = total, desc

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, desc=self.desc, unit="step")

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        if self.model.ep_info_buffer:
            self.bar.set_postfix(ep_rew_mean=f"{np.mean([e['r'] for e in self.model.ep_info_buffer]):.2f}",
                                 refresh=False)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def train_sb3(run: RunDir, config: SB3Config, progress: bool = True) -> dict:
    """Train ``config.algo`` on ``config.envs`` batched dreams; resumes from a saved model."""
    cls = algo_class(config.algo)
    device = pick_device(config.device)
    vision, memory = load_world_model(run, device)
    dream = BatchedDream(memory, dream_starts(run.latents, config.dream), run.action_spec(), config.dream, device, vision,
                         Shaping(bonus=intrinsic_bonus(run, memory, device, config.intrinsic, config.beta)))
    env = VecMonitor(dream_vec_env(dream, config.envs))  # episode returns: SB3's rollout/ep_rew_mean
    env.seed(config.seed)
    policy_device = "cpu" if device.type == "cpu" else device
    logging = {"verbose": 0}  # TensorBoard: set_logger below
    saved = read_sb3_meta(run, config.algo)
    kwargs = recipe(cls, config) if saved is None else saved["kwargs"]
    try:
        if saved is not None:
            check_same_kwargs(saved["kwargs"], config)
            model = load_sb3(run, config.algo, policy_device, env=env, stale_ok=True, **logging)
            print(f"dream: resuming {config.algo.upper()} at {model.num_timesteps} timesteps")
        else:
            model = cls(policy_name(cls), env, device=policy_device, **logging, **kwargs)
    except (ValueError, AssertionError) as e:
        raise UserError(f"{config.algo.upper()} cannot train on this action space: {e}") from None
    except TypeError as e:  # a keyword the algorithm or its policy does not take
        raise UserError(f"{config.algo.upper()}: {e} (see --algo-kwargs, --policy-kwargs)") from None
    remaining = config.timesteps - model.num_timesteps
    if remaining <= 0:
        print(f"dream: {config.algo.upper()} already trained for {model.num_timesteps} timesteps; nothing to do")
        return saved
    name = f"dream_sb3_{config.algo.lower()}"  # SB3's own tags (rollout/ep_rew_mean, train/...) in RUN/tb/NAME
    stage_writer(run, name, config).close()
    model.set_logger(configure(str(run.tb / name), ["tensorboard"]))
    model.learn(remaining, reset_num_timesteps=False,
                callback=Progress(remaining, f"dream {config.algo.lower()}") if progress else None)
    return save_sb3(run, model, config.algo, policy_name(cls), kwargs)


def recipe(cls, config: SB3Config) -> dict:
    """The constructor keywords of a new model (JSON, saved with it so that it can be rebuilt)."""
    return {"seed": config.seed, "policy_kwargs": config.policy_kwargs,
            **rollout_kwargs(cls, config), **(config.algo_kwargs or {})}


def check_same_kwargs(saved: dict, config: SB3Config) -> None:
    """A resumed model keeps its settings: other --policy-kwargs / --algo-kwargs are a ``UserError``."""
    asked = {"policy_kwargs": config.policy_kwargs, **(config.algo_kwargs or {})}
    changed = sorted(k for k, v in asked.items() if v is not None and saved.get(k) != v)
    if changed:
        raise UserError(f"the saved {config.algo.upper()} model has other {', '.join(changed)} "
                        f"({', '.join(f'{k}={saved.get(k)!r}' for k in changed)}); pass --no-resume to start over")
