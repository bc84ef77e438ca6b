"""``wm report``: one self-contained HTML page of a run (tables, PNG plots, video filmstrips).
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

import cv2
import numpy as np

from worldmodels.report.plots import histogram, line_plot
from worldmodels.runs.episodes import list_episodes
from worldmodels.runs.rundir import RunDir, atomic_write_bytes

# Published CarRacing scores (mean +- std over 100 random tracks; CarRacing-v0), for context only.
LITERATURE = [
    ("World Models, full model (V+M+C)", 906, 21, "Ha & Schmidhuber 2018"),
    ("World Models, V only", 632, 251, "Ha & Schmidhuber 2018"),
    ("World Models PyTorch reimplementation", 860, 120, "Tallec, Blier & Kalainathan 2018"),
    ("A3C (continuous)", 591, 45, "Jang, Min & Lee 2017"),
    ("DQN", 343, 18, "Prieur 2017"),
]


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _img(path: Path) -> str:
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def filmstrip(video: Path, out: Path, frames: int = 16) -> Path | None:
    """``frames`` evenly spaced frames of an mp4, side by side, as a PNG."""
    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    picked = []
    for index in np.linspace(0, max(total - 1, 0), frames).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        if ok:
            picked.append(cv2.resize(frame, (frame.shape[1] // 4, frame.shape[0] // 4), interpolation=cv2.INTER_AREA))
    cap.release()
    if not picked:
        return None
    cv2.imwrite(str(out), np.concatenate(picked, axis=1))
    return out


def score_rows(run: RunDir) -> list[dict]:
    """Measured scores, one row per evaluated agent (from ``RUN/eval/AGENT.json``)."""
    rows = []
    for path in sorted(run.eval.glob("*.json")):
        if path.name == "results.json":
            continue
        r = json.loads(path.read_text())
        rows.append({"agent": r["agent"], "mean": r["mean"], "std": r["std"], "min": r["min"], "max": r["max"],
                     "episodes": r["episodes"], "source": "measured"})
    return rows


def table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cls = f' class="{row["source"]}"' if "source" in row else ""
        cells = "".join(f"<td>{_cell(row.get(c, ''))}</td>" for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _cell(v) -> str:
    return f"{v:.1f}" if isinstance(v, float) else html.escape(str(v))


def plots(run: RunDir, out: Path) -> list[Path]:
    """PNG plots of whatever the run has: training losses, CMA-ES fitness, score distribution."""
    made = []
    for stage in ("vision", "memory"):
        summary = _json(getattr(run, stage) / "summary.json")
        if summary and summary["history"]:
            h = summary["history"]
            epochs = [e["epoch"] for e in h]
            made.append(line_plot(out / f"{stage}_loss.png",
                                  {"train": (epochs, [e["train_loss"] for e in h]),
                                   "validation": (epochs, [e["val"]["loss"] for e in h])},
                                  f"{stage} model loss", "epoch", "loss"))
    history = _json(run.controller / "history.json")
    if history and history["generations"]:
        g = history["generations"]
        series = {"dream best": ([x["generation"] for x in g], [x["best"] for x in g]),
                  "dream mean": ([x["generation"] for x in g], [x["mean"] for x in g])}
        if history["real"]:
            series["real env (mean solution)"] = ([x["generation"] for x in history["real"]],
                                                  [x["mean"] for x in history["real"]])
        made.append(line_plot(out / "cma_fitness.png", series, "CMA-ES: dream fitness and real-env checks",
                              "generation", "return"))
    scores = {}
    for path in sorted(run.eval.glob("*.json")):
        if path.name != "results.json":
            r = json.loads(path.read_text())
            scores[r["agent"]] = r["returns"]
    if scores:
        made.append(histogram(out / "scores.png", scores, "final real-env returns", "return"))
    return made


def env_steps(run: RunDir) -> int:
    total = 0
    for path in list_episodes(run.episodes).values():
        with np.load(path) as data:
            total += len(data["reward"])
    return total


def write_report(run: RunDir, out: Path | None = None) -> Path:
    """Write ``RUN/report.html`` (or ``out``): self-contained, images inlined as base64."""
    meta = run.read_meta()
    out = Path(out) if out else run.root / "report.html"
    assets = run.root / "report_assets"
    assets.mkdir(parents=True, exist_ok=True)
    env = meta["env"]["spec"]
    rows = score_rows(run)
    if env.startswith("CarRacing"):
        rows += [{"agent": f"{name} [{ref}]", "mean": float(m), "std": float(s), "min": "", "max": "",
                  "episodes": 100, "source": "literature"} for name, m, s, ref in LITERATURE]
    pipeline = _json(run.root / "pipeline.json") or {}
    cost = [{"stage": k, "seconds": float(v)} for k, v in pipeline.get("seconds", {}).items()]
    sections = [
        f"<h1>worldmodels run: {html.escape(run.root.name)}</h1>",
        f"<p>env <code>{html.escape(env)}</code>, kwargs <code>{html.escape(json.dumps(meta['env']['kwargs']))}</code>"
        f", preset {html.escape(str(pipeline.get('preset', '-')))}, {env_steps(run)} real env steps collected, "
        f"report written {time.strftime('%Y-%m-%d %H:%M')}</p>",
        "<h2>Scores in the real environment</h2>",
        "<p>Rows marked <em>literature</em> are published values (CarRacing-v0, 100 tracks), not measured here.</p>",
        table(rows, ["agent", "mean", "std", "min", "max", "episodes", "source"]) if rows else "<p>No evaluations yet.</p>",
    ]
    if cost:
        sections += ["<h2>Cost</h2>", table(cost, ["stage", "seconds"])]
    images = plots(run, assets)
    if images:
        sections += ["<h2>Training and evaluation</h2>", *[_img(p) for p in images]]
    videos = sorted(run.eval.glob("*.mp4"))
    if videos:
        sections.append("<h2>Episodes (real frame | VAE reconstruction)</h2>")
        for video in videos:
            strip = filmstrip(video, assets / f"{video.stem}_strip.png")
            link = f'<a href="{html.escape(str(video.relative_to(out.parent) if video.is_relative_to(out.parent) else video))}">{html.escape(video.name)}</a>'
            sections.append(f"<h3>{link}</h3>" + (_img(strip) if strip else ""))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>worldmodels report: {html.escape(run.root.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}tr.literature{{color:#777;font-style:italic;background:#f6f6f6}}
img{{max-width:100%;display:block;margin:1em 0}}</style></head>
<body>{''.join(sections)}</body></html>
"""
    atomic_write_bytes(out, page.encode())
    return out
