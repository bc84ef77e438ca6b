"""Any stable-baselines3 algorithm trained on the batched dream: ``wm dream --algo ppo|sac|...``.
"""

from __future__ import annotations

from dataclasses import dataclass

from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.dream.env import dream_vec_env, intrinsic_bonus
from worldmodels.dream.imagine import BatchedDream, DreamConfig, initial_latents
from worldmodels.runs.artifacts import load_world_model
from worldmodels.runs.rundir import RunDir, atomic_write_json


@dataclass
class SB3Config:
    algo: str = "ppo"
    timesteps: int = 100_000  # dream steps in total, over all parallel dreams
    envs: int = 16  # parallel dreams
    temperature: float = 1.0
    done_threshold: float = 0.5
    max_steps: int = 1000
    intrinsic: str | None = None  # curiosity bonus in the dream: surprise | icm | disagreement | infogain
    beta: float = 1.0  # weight of the (normalised) intrinsic reward
    seed: int = 0
    device: str = "auto"


def algo_class(name: str):
    import stable_baselines3

    cls = getattr(stable_baselines3, name.upper(), None)
    if cls is None:
        names = [n.lower() for n in stable_baselines3.__all__ if n.isupper()]
        raise UserError(f"unknown stable-baselines3 algorithm {name!r}; choose one of cma, {', '.join(names)}")
    return cls


def rollout_kwargs(cls, config: SB3Config) -> dict:
    """On-policy algorithms: rollouts of at most ``timesteps`` steps (PPO's default 2048 x envs would overshoot)."""
    import inspect

    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    if not issubclass(cls, OnPolicyAlgorithm):
        return {}
    params = inspect.signature(cls).parameters
    n_steps = max(2, min(params["n_steps"].default, config.timesteps // config.envs))
    kwargs = {"n_steps": n_steps}
    if "batch_size" in params:
        kwargs["batch_size"] = min(params["batch_size"].default, n_steps * config.envs)
    return kwargs


def sb3_path(run: RunDir, algo: str):
    return run.controller / f"sb3_{algo.lower()}.zip"


def train_sb3(run: RunDir, config: SB3Config, progress: bool = True) -> dict:
    """Train ``config.algo`` on ``config.envs`` batched dreams; resumes from a saved model."""
    cls = algo_class(config.algo)
    device = pick_device(config.device)
    vision, memory = load_world_model(run, device)
    dream = BatchedDream(memory, initial_latents(run.latents), run.action_spec(),
                         DreamConfig(config.temperature, config.done_threshold, config.max_steps), device, vision,
                         bonus=intrinsic_bonus(run, memory, device, config.intrinsic, config.beta))
    env = dream_vec_env(dream, config.envs)
    env.seed(config.seed)
    path = sb3_path(run, config.algo)
    policy_device = "cpu" if device.type == "cpu" else device
    try:
        if path.exists():
            model = cls.load(str(path), env=env, device=policy_device)
            print(f"dream: resuming {config.algo.upper()} at {model.num_timesteps} timesteps")
        else:
            model = cls("MlpPolicy", env, seed=config.seed, device=policy_device, verbose=0,
                        tensorboard_log=str(run.tb), **rollout_kwargs(cls, config))
    except (ValueError, AssertionError) as e:
        raise UserError(f"{config.algo.upper()} cannot train on this action space: {e}") from None
    remaining = config.timesteps - model.num_timesteps
    if remaining <= 0:
        print(f"dream: {config.algo.upper()} already trained for {model.num_timesteps} timesteps; nothing to do")
    else:
        model.learn(remaining, reset_num_timesteps=False, progress_bar=progress and _has_rich(),
                    tb_log_name=f"sb3_{config.algo.lower()}")
        run.controller.mkdir(parents=True, exist_ok=True)
        model.save(str(path))
    info = {"algo": config.algo.lower(), "timesteps": int(model.num_timesteps), "path": str(path)}
    atomic_write_json(run.controller / f"sb3_{config.algo.lower()}.json", info)
    return info


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def load_sb3(run: RunDir, algo: str | None, device="cpu"):
    """The SB3 model saved by ``wm dream --algo ALGO`` (the only one when ``algo`` is None)."""
    if algo is None:
        found = sorted(run.controller.glob("sb3_*.zip"))
        if len(found) != 1:
            raise UserError(f"{'no' if not found else 'several'} SB3 models in {run.controller}; "
                            "train one with `wm dream --algo ppo` or name it with --algo")
        algo = found[0].stem.removeprefix("sb3_")
    path = sb3_path(run, algo)
    if not path.exists():
        raise UserError(f"no {algo.upper()} model at {path}: run `wm dream --run {run.root} --algo {algo}` first")
    return algo_class(algo).load(str(path), device=device)
