"""Visual foresight (Finn & Levine 2017): plan, in the world model, to reach a goal image.

CEM searches action sequences whose predicted future matches the goal: the cost is the
squared distance between predicted and goal VAE means (``latent``, default) or between the
decoded predicted frames and the goal frame (``pixel``), on the final planned step (``final``)
or summed over the horizon (``sum``, the default: a final-step cost is indifferent to the path, so
MPC dithers near the goal). MPC in the real env: re-plan each step, execute the
first action. ``wm foresight`` writes a video (current frame | goal | predicted frames of the
chosen plan, captioned with the step and the distances to the goal), the distances to the goal per
step (``RUN/eval/foresight.json``, TensorBoard's ``RUN/tb/foresight``): latent, and ground truth
where the env has ``distance()`` (PointMass: start and goal positions come from its reset options).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from worldmodels.agents.cem import CEMAgent
from worldmodels.collect.driver import Callback, DecisionTimer, Step, drive
from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.core.settings import require_at_least
from worldmodels.dream.imagine import imagine
from worldmodels.envs.spaces import ActionSpec
from worldmodels.evaluation.video import write_mp4
from worldmodels.models.memory import Memory, State
from worldmodels.planning.goals import check_goal
from worldmodels.planning.optimizers import CEMConfig, Objective
from worldmodels.runs.artifacts import load_world_model
from worldmodels.runs.rundir import RunDir, atomic_write_json
from worldmodels.runs.tensorboard import stage_writer

COSTS = ("latent", "pixel")


COST_ON = ("final", "sum")


VIDEO_HEADER = [(0, "real frame"), (64, "goal"), (128, "predicted frames of the plan")]
"""The foresight video's panels, named at their x in frame pixels (``write_mp4``'s ``header``)."""


@dataclass
class ForesightConfig:
    """What ``wm foresight`` does besides the planner's own settings (``CEMConfig``)."""

    cost: str = field(default="latent", metadata={"choices": list(COSTS)})
    """latent: squared distance of VAE means; pixel: of decoded frames (slower)."""
    cost_on: str = field(default="sum", metadata={"choices": list(COST_ON)})
    """sum over the horizon (heads straight for the goal) or the final planned step only."""
    max_steps: int = 20
    """Real-env steps taken toward the goal."""
    seed: int = 0
    """Env reset and planner seed."""
    reset_options: dict | None = field(default=None, metadata={"metavar": "JSON"})
    """Env reset options, e.g. PointMass '{"position": [0.2, 0.2], "goal": [0.7, 0.6]}' (its goal is what the
    ground-truth distance measures)."""
    video: bool = True
    """Write RUN/eval/foresight.mp4: current frame | goal | predicted frames of the chosen plan."""
    device: str = "auto"
    """auto (cuda, then mps, then cpu), cpu, cuda, cuda:N."""

    def __post_init__(self) -> None:
        require_at_least(self, 1, "max_steps")


def predicted_latents(memory: Memory, state: State, z: Tensor, actions: Tensor, temperature: float = 0.0) -> Tensor:
    """[N, H, Z] latents the memory model predicts after each step of ``actions`` [N, H, A].

    From ``state`` (batch 1) and ``z`` [1, Z], copied to N; ``temperature`` 0 follows the mean.
    """
    return imagine(memory, state, z, actions, temperature=temperature).latents


def to_frames(images: Tensor) -> np.ndarray:
    """Decoded images float [B, 3, 64, 64] in [0, 1] -> uint8 frames [B, 64, 64, 3]."""
    return (images.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().cpu().numpy()


class GoalCost:
    """Cost [N] of predicted latents [N, H, Z] against a goal frame uint8 [64, 64, 3].

    ``latent``: ||z_pred - z_goal||^2 of VAE means (latent units squared);
    ``pixel``: squared error of decoded frames in [0, 1], summed over pixels and channels.
    ``cost_on`` ``final`` uses the last step only, ``sum`` adds every step.
    """

    def __init__(self, vision, goal: np.ndarray, cost: str = "latent", cost_on: str = "sum") -> None:
        if cost not in COSTS or cost_on not in COST_ON:
            raise UserError(f"cost must be one of {COSTS} and cost_on one of {COST_ON}, got {cost!r}, {cost_on!r}")
        self.vision, self.cost, self.cost_on = vision, cost, cost_on
        device = vision_device(vision)
        goal_t = torch.as_tensor(goal, device=device)[None]
        with torch.no_grad():
            self.z_goal = vision.encode(goal_t)[0]  # [1, Z]
        self.goal_image = goal_t.permute(0, 3, 1, 2).float() / 255  # [1, 3, 64, 64]

    @torch.no_grad()
    def __call__(self, latents: Tensor) -> Tensor:
        if self.cost_on == "final":
            latents = latents[:, -1:]
        if self.cost == "latent":
            per_step = (latents - self.z_goal).square().sum(-1)
        else:
            images = self.vision.decode(latents.flatten(0, 1))
            per_step = (images - self.goal_image).square().sum((1, 2, 3)).view(latents.shape[:2])
        return per_step.sum(1)

    @torch.no_grad()
    def latent_distance(self, frame: np.ndarray) -> float:
        """||mu(frame) - z_goal||^2 of a real frame uint8 [64, 64, 3]."""
        z = self.vision.encode(torch.as_tensor(frame, device=self.z_goal.device)[None])[0]
        return float((z - self.z_goal).square().sum())


def vision_device(vision) -> torch.device:
    """The device of a vision model's weights (cpu for weightless ones)."""
    parameters = getattr(vision, "parameters", None)
    first = next(iter(parameters()), None) if parameters is not None else None
    return first.device if first is not None else torch.device("cpu")


def goal_objective(memory: Memory, cost: GoalCost, temperature: float = 0.0) -> Callable[[State, Tensor], Objective]:
    """For ``CEMAgent(objective=...)``: from (state, z), the negated goal cost of each candidate."""

    def factory(state: State, z: Tensor) -> Objective:
        return lambda actions: -cost(predicted_latents(memory, state, z, actions, temperature))

    return factory


def ground_truth_distance(env) -> float | None:
    """The env's own ``distance()`` to its goal (e.g. PointMass), or None where it has none."""
    distance = getattr(env.unwrapped, "distance", None)
    return float(distance()) if callable(distance) else None


def visual_foresight(vision, memory: Memory, action: ActionSpec, env, goal: np.ndarray, planner: CEMConfig,
                     config: ForesightConfig, device: torch.device | str = "cpu", progress: bool = False) -> dict:
    """MPC toward ``goal`` (uint8 [64, 64, 3]) in the pixel env ``env`` for up to ``config.max_steps`` steps.

    ``env`` is reset with ``config.seed`` and ``config.reset_options``. Returns the latent and
    ground-truth distances (initial, final, and ``latent_distances`` / ``distances`` [T+1] per frame
    from the reset; ground truth None without ``distance()``), the steps taken, the seconds per
    decision and, with ``config.video``, the video ``frames`` [T+1, 64, (H+2)*64, 3] and their
    ``captions`` [T+1]. ``progress``: a bar over the steps.
    """
    goal = check_goal(goal, "goal image")
    goal_cost = GoalCost(vision, goal, config.cost, config.cost_on)
    agent = CEMAgent(vision, memory, action, planner, device, objective=goal_objective(memory, goal_cost))
    distances, timer, video = GoalDistances(env, goal_cost), DecisionTimer(), ForesightVideo(agent, goal)
    with tqdm(total=config.max_steps, desc="foresight", unit="step", disable=not progress) as bar:
        outcome = drive(env, agent, config.seed, [distances, timer, *([video] if config.video else []),
                                                  DistanceBar(bar, distances)],
                        config.reset_options, config.max_steps)
    result = {"initial_latent_distance": distances.latent[0], "initial_distance": distances.truth[0],
              "final_latent_distance": distances.latent[-1], "final_distance": distances.truth[-1],
              "latent_distances": distances.latent, "distances": distances.truth, "steps": outcome.steps,
              "seconds_per_decision": timer.per_decision}
    if config.video:
        result["frames"], result["captions"] = video.frames(), distances.captions()
    return result


class GoalDistances(Callback):
    """The latent (``latent``) and the ground-truth (``truth``, Nones without ``distance()``) distance to the goal
    of every frame, the reset frame first: [T+1] each (see ``GoalCost.latent_distance``, ``ground_truth_distance``)."""

    def __init__(self, env, cost: GoalCost) -> None:
        self.env, self.cost = env, cost

    def on_reset(self, obs: np.ndarray, info: dict) -> None:
        self.latent, self.truth = [], []
        self.record(obs)

    def on_step(self, step: Step) -> None:
        self.record(step.next_obs)

    def record(self, obs: np.ndarray) -> None:
        self.latent.append(self.cost.latent_distance(obs))
        self.truth.append(ground_truth_distance(self.env))

    def captions(self) -> list[str]:
        """One caption per frame: ``step t  latent distance to goal D`` (and the ground-truth distance)."""
        return [f"step {t}  latent distance to goal {d:.3f}" + ("" if g is None else f"  distance {g:.3f}")
                for t, (d, g) in enumerate(zip(self.latent, self.truth))]


class DistanceBar(Callback):
    """Advances a tqdm ``bar`` each step, showing the latest latent distance of ``distances`` (called after it)."""

    def __init__(self, bar: tqdm, distances: GoalDistances) -> None:
        self.bar, self.distances = bar, distances

    def on_step(self, step: Step) -> None:
        self.bar.update()
        self.bar.set_postfix(latent_distance=f"{self.distances.latent[-1]:.3f}")


class ForesightVideo(Callback):
    """``frames()`` [T+1, 64, (H+2)*64, 3] uint8: per decision, the frame | the goal | the frames predicted
    for the plan just chosen; last, the final frame | the goal (then black)."""

    def __init__(self, agent: CEMAgent, goal: np.ndarray) -> None:
        self.agent, self.goal = agent, goal

    def on_reset(self, obs: np.ndarray, info: dict) -> None:
        self._frames: list[np.ndarray] = []

    def on_step(self, step: Step) -> None:
        plan = self.agent.executed_plan(step.action[None], step.next_state.plans)
        self._frames.append(video_frame(step.obs, self.goal, self.agent, step.state.memory, plan))
        self._last = step.next_obs

    def frames(self) -> np.ndarray:
        final = np.concatenate([self._last, self.goal, np.zeros_like(self._frames[-1][:, 128:])], axis=1)
        return np.stack([*self._frames, final])


@torch.no_grad()
def video_frame(obs: np.ndarray, goal: np.ndarray, agent, memory_state: State, plan: Tensor) -> np.ndarray:
    """[64, (H+2)*64, 3]: the frame ``obs``, the goal, and the frames predicted for ``plan`` [1, H, A] from
    ``memory_state`` (the state the plan was made in)."""
    latents = predicted_latents(agent.memory, memory_state, agent.latents(obs[None]), plan)[0]
    return np.concatenate([obs, goal, *to_frames(agent.vision.decode(latents))], axis=1)


def run_foresight(run: RunDir, goal: np.ndarray, planner: CEMConfig, config: ForesightConfig,
                  progress: bool = True) -> dict:
    """Visual foresight with the run's models in its real env; writes ``RUN/eval/foresight.json``, TensorBoard's
    ``RUN/tb/foresight`` (replaced) and, with ``config.video``, ``RUN/eval/foresight.mp4`` (captioned). Returns
    the summary that was written."""
    run.read_meta()
    device = pick_device(config.device)
    vision, memory = load_world_model(run, device)
    env = run.make_env()
    try:
        result = visual_foresight(vision, memory, run.action_spec(), env, goal, planner, config, device, progress)
    finally:
        env.close()
    path = run.eval / "foresight.mp4"
    if config.video:
        write_mp4(path, result.pop("frames"), fps=4, scale=2, captions=result.pop("captions"), header=VIDEO_HEADER)
    log_foresight(run, {**asdict(config), "planner": asdict(planner)}, result)
    summary = {"env": run.env_spec()[0], **asdict(config), "planner": asdict(planner), **result,
               "video": str(path) if config.video else None}
    atomic_write_json(run.eval / "foresight.json", summary)
    return summary


def log_foresight(run: RunDir, settings: dict, result: dict) -> None:
    """``RUN/tb/foresight``, replaced: the settings, then ``foresight/latent_distance`` (and ground truth's
    ``foresight/distance``) to the goal against the step, 0 being the reset frame."""
    shutil.rmtree(run.tb / "foresight", ignore_errors=True)
    writer = stage_writer(run, "foresight", settings)
    for t, (latent, truth) in enumerate(zip(result["latent_distances"], result["distances"])):
        writer.add_scalar("foresight/latent_distance", latent, t)
        if truth is not None:
            writer.add_scalar("foresight/distance", truth, t)
    writer.close()
