"""``wm report``: one HTML page of a run in a folder of its own (``OUT/index.html`` beside ``OUT/media/``),
linked relatively so the folder can be moved or served: scores with their sources, per-episode scores,
learning curves with rounds marked, reconstructions and dreams, comparisons benchmarks made on the
run's data, playable videos, config and versions.
"""

from __future__ import annotations

import html
import json
import shutil
import time
from pathlib import Path

import numpy as np

from worldmodels.report.media import filmstrip, world_model_strips
from worldmodels.report.plots import histogram, line_plot
from worldmodels.runs.episodes import stored_steps
from worldmodels.runs.rundir import RunDir, atomic_write_bytes

# Published CarRacing scores (mean +- std over 100 random tracks), for context only.
LITERATURE = [
    ("World Models, full model (V+M+C)", 906, 21, "Ha & Schmidhuber 2018"),
    ("World Models, V only", 632, 251, "Ha & Schmidhuber 2018"),
    ("World Models PyTorch reimplementation", 860, 120, "Tallec, Blier & Kalainathan 2018"),
    ("A3C (continuous)", 591, 45, "Jang, Min & Lee 2017"),
    ("DQN", 343, 18, "Prieur 2017"),
]
LITERATURE_SETTING = "CarRacing-v0, full 1,000-step episodes, 100 tracks"
SCORE_COLUMNS = ["agent", "mean", "std", "min", "max", "episodes", "mean length", "max steps", "source"]


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def evaluations(run: RunDir) -> list[dict]:
    """Every agent's scores, ``RUN/eval/AGENT.json`` (files without per-episode returns, such as
    ``foresight.json`` and the ``results.json`` copy of the latest, are not agents' scores)."""
    out = []
    for path in sorted(run.eval.glob("*.json")):
        r = json.loads(path.read_text())
        if path.name != "results.json" and isinstance(r, dict) and {"agent", "returns"} <= r.keys():
            out.append({**r, "file": f"eval/{path.name}"})
    return out


def score_rows(run: RunDir, env: str) -> list[dict]:
    """Measured rows (one per evaluated agent), then, on CarRacing runs only, the published ones."""
    rows = []
    for r in evaluations(run):
        lengths = r.get("lengths") or []
        rows.append({"agent": r["agent"], "mean": r["mean"], "std": r["std"], "min": r["min"], "max": r["max"],
                     "episodes": r["episodes"], "mean length": float(np.mean(lengths)) if lengths else "",
                     "max steps": r.get("max_steps") or "env's limit", "class": "measured",
                     "source": f"measured here: {r['file']}, {env}, seed {r.get('seed', '?')}"})
    if env.startswith("CarRacing"):
        rows += [{"agent": name, "mean": float(m), "std": float(s), "episodes": 100, "mean length": 1000.0,
                  "max steps": 1000, "class": "literature", "source": f"published, {ref}: {LITERATURE_SETTING}"}
                 for name, m, s, ref in LITERATURE]
    return rows


def table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cls = f' class="{row["class"]}"' if "class" in row else ""
        cells = "".join(f"<td>{_cell(row.get(c, ''))}</td>" for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _cell(v) -> str:
    return f"{v:.1f}" if isinstance(v, float) else html.escape(str(v))


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{html.escape(summary)}</summary>{body}</details>"


def _pre(obj) -> str:
    return f"<pre>{html.escape(json.dumps(obj, indent=1))}</pre>"


def per_episode(evals: list[dict]) -> list[str]:
    """One collapsible table per agent: episode, seed, return, length."""
    out = []
    for r in evals:
        seeds, lengths = r.get("seeds") or [], r.get("lengths") or []
        rows = [{"episode": i, "seed": seeds[i] if i < len(seeds) else "", "return": float(ret),
                 "length": lengths[i] if i < len(lengths) else ""} for i, ret in enumerate(r["returns"])]
        out.append(_details(f"{r['agent']}: {len(rows)} episodes ({r['file']})",
                            table(rows, ["episode", "seed", "return", "length"])))
    return out


def round_marks(run: RunDir) -> dict[str, dict[float, str]]:
    """Where rounds began, per curve ("memory", "vision", "cma"): ``wm run``'s pipeline rounds (from
    ``pipeline.json``'s settings) and ``wm explore``'s rounds (from ``explore/history.json``)."""
    marks: dict[str, dict[float, str]] = {"vision": {}, "memory": {}, "cma": {}}
    settings = (_json(run.root / "pipeline.json") or {}).get("settings") or {}
    for r in range(1, settings.get("rounds", 1)):
        marks["memory"][settings["memory"]["epochs"] + (r - 1) * settings["round_memory_epochs"] + 0.5] = f"round {r + 1}"
        marks["cma"][settings["cma"]["generations"] + (r - 1) * settings["round_generations"] + 0.5] = f"round {r + 1}"
    explore = _json(run.root / "explore" / "history.json") or {}
    config = explore.get("config") or {}
    for r in range(1, len(explore.get("rounds", []))):
        for stage in ("vision", "memory"):
            epochs = config[f"{stage}_epochs"] + (r - 1) * config[f"round_{stage}_epochs"]
            marks[stage][epochs + 0.5] = f"explore {r + 1}"
    return marks


def plots(run: RunDir, out: Path, evals: list[dict]) -> list[Path]:
    """PNG plots of whatever the run has: training losses, CMA-ES fitness, exploration, score distribution."""
    made, marks = [], round_marks(run)
    for stage in ("vision", "memory"):
        summary = _json(getattr(run, stage) / "summary.json")
        if summary and summary.get("history"):
            h = summary["history"]
            epochs = [e["epoch"] for e in h]
            made.append(line_plot(out / f"{stage}_loss.png",
                                  {"train": (epochs, [e["train_loss"] for e in h]),
                                   "validation": (epochs, [e["val"]["loss"] for e in h])},
                                  f"{stage} model loss", "epoch", "loss", marks[stage]))
    history = _json(run.controller / "history.json")
    if history and history.get("generations"):
        g = history["generations"]
        series = {"dream best": ([x["generation"] for x in g], [x["best"] for x in g]),
                  "dream mean": ([x["generation"] for x in g], [x["mean"] for x in g])}
        for candidate in dict.fromkeys(x.get("candidate", "mean") for x in history.get("real", [])):
            checks = [x for x in history["real"] if x.get("candidate", "mean") == candidate]
            label = "real env (CMA-ES mean)" if candidate == "mean" else f"real env ({candidate} candidate)"
            series[label] = ([x["generation"] for x in checks], [x["mean"] for x in checks])
        made.append(line_plot(out / "cma_fitness.png", series, "CMA-ES: dream fitness and real-env checks",
                              "generation", "return", marks["cma"]))
    rounds = (_json(run.root / "explore" / "history.json") or {}).get("rounds", [])
    if rounds:
        x = [r["round"] for r in rounds]
        series = {"return mean": (x, [r["return_mean"] for r in rounds])}
        if rounds[0].get("coverage_round") is not None:
            series["states covered (round)"] = (x, [r["coverage_round"] for r in rounds])
        made.append(line_plot(out / "explore.png", series, "wm explore: per round", "round", "value"))
    if evals:
        made.append(histogram(out / "scores.png", {r["agent"]: r["returns"] for r in evals},
                              "final real-env returns", "return"))
    return made


def foresight_section(run: RunDir) -> list[str]:
    """``wm foresight``'s summary: distances to the goal, seconds per decision, planner settings."""
    s = _json(run.eval / "foresight.json")
    if not s:
        return []
    keys = ["steps", "cost", "cost_on", "seed", "initial_latent_distance", "final_latent_distance",
            "initial_distance", "final_distance", "seconds_per_decision"]
    rows = [{"setting": k, "value": s[k] if s.get(k) is not None else "-"} for k in keys if k in s]
    return ["<h2>Visual foresight</h2>", "<p>Planning toward a goal image with CEM in the world model "
            "(<code>eval/foresight.json</code>); its video is below.</p>", table(rows, ["setting", "value"]),
            _details("planner", _pre(s.get("planner")))]


def tasks_section(run: RunDir) -> list[str]:
    """``wm task``'s zero-shot results, one row per ``RUN/tasks/NAME/eval/task.json``."""
    rows = []
    for path in sorted(run.root.glob("tasks/*/eval/task.json")):
        s = json.loads(path.read_text())
        rows.append({"task": s["name"], "reward": s["task"], "episodes": len(s["returns"]),
                     "success rate": f"{s['success_rate']:.2f}", "task return": f"{s['mean']:.2f} +- {s['std']:.2f}",
                     "dream fitness": f"{s['dream_fitness_best']:.2f}", "new real steps": s["real_env_steps_used"]})
    if not rows:
        return []
    return ["<h2>Zero-shot tasks</h2><p>Controllers trained only in the dream on a task reward the run was "
            "never given (<code>wm task</code>: relabelled episodes, the reward head retrained), scored on the "
            "task in the real env (<code>tasks/NAME/eval/task.json</code>).</p>",
            table(rows, ["task", "reward", "episodes", "success rate", "task return", "dream fitness",
                         "new real steps"])]


def comparisons_section(run: RunDir, out: Path, media: Path) -> list[str]:
    """Tables that benchmarks wrote about this run's data: ``RUN/compare/NAME.json`` holds ``title``,
    ``description``, ``columns``, ``rows`` (dicts keyed by column) and ``images`` (files in ``RUN/compare``),
    e.g. ``benchmarks/memories.py``'s memory models trained on the same episodes and VAE."""
    parts = []
    for path in sorted((run.root / "compare").glob("*.json")):
        c = json.loads(path.read_text())
        parts += [f"<h2>{html.escape(c['title'])}</h2>", f"<p>{html.escape(c.get('description', ''))}</p>",
                  table(c["rows"], c["columns"])]
        for name in c.get("images", []):
            image = path.parent / Path(name).name
            if image.exists():
                shutil.copyfile(image, media / image.name)
                parts.append(_img(media / image.name, out, image.stem))
    return parts


def config_section(run: RunDir, meta: dict, pipeline: dict) -> list[str]:
    """Collapsible JSON: the env and collections (with seeds), versions, and every stage's config."""
    parts = [_details("environment (run.json)", _pre(meta.get("env"))),
             _details("collections: agent, seed, episodes", _pre(meta.get("collections"))),
             _details("versions", _pre(meta.get("versions")))]
    if pipeline.get("settings"):
        parts.append(_details(f"wm run preset {pipeline.get('preset', '')}", _pre(pipeline["settings"])))
    for name in ("vision", "memory", "controller", "explore"):
        config = _json(run.root / name / "config.json")
        if config:
            parts.append(_details(f"{name}/config.json", _pre(config)))
    return ["<h2>Configuration, seeds and versions</h2>", *parts]


def _img(path: Path, root: Path, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{html.escape(path.relative_to(root).as_posix())}">'


def videos_section(run: RunDir, out: Path, media: Path) -> list[str]:
    """Every video of ``RUN/eval`` copied beside the page, embedded, with a labelled filmstrip."""
    videos = sorted(run.eval.glob("*.mp4"))
    if not videos:
        return []
    parts = ["<h2>Videos</h2><p>Eval videos: the real frame | the VAE's reconstruction, captioned with agent, "
             "step and return so far. Foresight: the current frame | the goal | predicted frames of the plan. "
             "dream_AGENT_i (<code>wm dream --record</code>): the agent's real episode | its dream beside it, "
             "from the same first frame.</p>"]
    for video in videos:
        copy = media / video.name
        shutil.copyfile(video, copy)
        src = html.escape(copy.relative_to(out).as_posix())
        parts.append(f'<h3>{html.escape(video.name)}</h3><video controls muted preload="metadata" '
                     f'src="{src}"></video>')
        strip = filmstrip(video, media / f"{video.stem}_strip.png")
        if strip:
            parts.append(_img(strip, out, f"{video.stem} filmstrip"))
    return parts


def write_report(run: RunDir, out: str | Path | None = None) -> Path:
    """Write the report into the folder ``out`` (default ``RUN/report``): ``index.html`` and ``media/``,
    nothing elsewhere. Returns the page's path."""
    meta = run.read_meta()
    out = Path(out) if out else run.root / "report"
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    env = meta["env"]["spec"]
    evals = evaluations(run)
    rows = score_rows(run, env)
    pipeline = _json(run.root / "pipeline.json") or {}
    cost = [{"stage": k, "seconds": float(v)} for k, v in pipeline.get("seconds", {}).items()]
    note = ("Measured rows are this run's evaluations. Rows in grey italics are published CarRacing results "
            f"({LITERATURE_SETTING}), not measured here: compare with care when this run's episodes are shorter."
            if env.startswith("CarRacing") else "Measured rows are this run's evaluations.")
    sections = [
        f"<h1>worldmodels run: {html.escape(run.root.name)}</h1>",
        f"<p>env <code>{html.escape(env)}</code>, kwargs <code>{html.escape(json.dumps(meta['env']['kwargs']))}</code>"
        f", preset {html.escape(str(pipeline.get('preset', '-')))}, {stored_steps(run.episodes)} real env steps collected, "
        f"report written {time.strftime('%Y-%m-%d %H:%M')}</p>",
        "<h2>Scores in the real environment</h2>", f"<p>{note}</p>",
        table(rows, SCORE_COLUMNS) if rows else "<p>No evaluations yet.</p>",
    ]
    if evals:
        sections += ["<h2>Per-episode scores</h2>", *per_episode(evals)]
    sections += foresight_section(run)
    sections += tasks_section(run)
    if cost:
        sections += ["<h2>Cost</h2>", table(cost, ["stage", "seconds"])]
    images = plots(run, media, evals)
    if images:
        sections += ["<h2>Learning curves</h2><p>Dashed lines: where a round began.</p>",
                     *[_img(p, out, p.stem) for p in images]]
    strips = world_model_strips(run, media)
    if strips:
        sections.append("<h2>The world model</h2><p>First stored episode: real frames over the VAE's "
                        "reconstruction; then real frames over the dream, the memory model's open-loop mean "
                        "prediction from the first frame fed the episode's actions.</p>")
        sections += [_img(p, out, name) for name, p in strips.items()]
    sections += comparisons_section(run, out, media)
    sections += videos_section(run, out, media)
    sections += config_section(run, meta, pipeline)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>worldmodels report: {html.escape(run.root.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child,th:first-child,td:last-child{{text-align:left}}
tr.literature{{color:#777;font-style:italic;background:#f6f6f6}}
img,video{{max-width:100%;display:block;margin:1em 0}}pre{{background:#f6f6f6;padding:6px;overflow:auto}}
</style></head>
<body>{''.join(sections)}</body></html>
"""
    atomic_write_bytes(out / "index.html", page.encode())
    return out / "index.html"
