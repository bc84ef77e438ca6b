#!/usr/bin/env bash
# One command to check a change on a GPU machine (issue 14): the CUDA test subset, then every GPU
# benchmark, then one Markdown table of the figures against their goals. Sized for one GPU, 16
# cores and no internet, in under 10 minutes (each step has its own time limit; they sum to 575 s).
#
#   benchmarks/gpu_check.sh          # CUDA when torch sees a GPU, else the CPU fallback
#   benchmarks/gpu_check.sh --cpu    # the CPU fallback: tiny sizes, checks the script end to end
#   benchmarks/gpu_machine.sh benchmarks/gpu_check.sh   # on a bare GPU machine without the package (see there)
#
# A step that fails or runs over its limit shows as such in the table and the script goes on.
# Logs and JSON: benchmarks/out/gpu_check/. PYTHON overrides the interpreter (default .venv/bin/python, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
command -v "$PY" >/dev/null || PY=python3
export SDL_VIDEODRIVER=dummy
LOG=benchmarks/out/gpu_check
rm -rf "$LOG" && mkdir -p "$LOG"

if [ "${1:-}" != "--cpu" ] && "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  MODE=cuda
  TESTS=(-m cuda tests)
  TRAIN=(--devices cuda --episodes 64 --frames 8192 --batch-size 256 --channels-last --repeats 3)
  DREAM=(--device cuda --population 64 --rollouts 16 --steps 1000 --env-steps 300 --repeats 2)
  PLAN=(--devices cuda --repeats 10)
  COLLECT=(--episodes 8 --max-steps 300 --workers 1 4 16)
else
  MODE=cpu
  TESTS=(tests/test_models.py tests/test_scale.py -k "contiguous or on_its_device or gpu_alone")
  TRAIN=(--devices cpu --episodes 4 --frames 128 --batch-size 32 --memory-batches 2 --memory-batch-size 8
         --seq-len 16 --hidden-size 64 --channels-last --repeats 1)
  DREAM=(--device cpu --population 4 --rollouts 2 --steps 20 --env-steps 50 --repeats 1)
  PLAN=(--devices cpu --candidates 100 --iterations 2 --elites 10 --repeats 1 --no-reference)
  COLLECT=(--episodes 1 --max-steps 50 --workers 1 2)
fi
echo "gpu_check: $MODE mode; logs in $LOG"

# step NAME LIMIT_S COMMAND...: run it with a time limit, log its output, record and return its exit status.
step() {
  local name=$1 limit=$2 start=$SECONDS code
  shift 2
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" >"$LOG/$name.log" 2>&1
  code=$?
  echo "$code $((SECONDS - start))" >"$LOG/$name.status"
  tail -n 3 "$LOG/$name.log"
  return "$code"
}

step tests 120 "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
step train 75 "$PY" benchmarks/train.py "${TRAIN[@]}" && cp benchmarks/out/train.json "$LOG/train.json"
step train_on_device 45 "$PY" benchmarks/train.py "${TRAIN[@]}" --frames-on-device --skip-memory \
  && cp benchmarks/out/train.json "$LOG/train_on_device.json"
step dream 90 "$PY" benchmarks/dream.py "${DREAM[@]}" && cp benchmarks/out/dream.json "$LOG/dream.json"
step planning 45 "$PY" benchmarks/planning.py "${PLAN[@]}" && cp benchmarks/out/planning.json "$LOG/planning.json"
step collect 100 "$PY" benchmarks/collect.py "${COLLECT[@]}" && cp benchmarks/out/collect.json "$LOG/collect.json"
[ "$MODE" = cuda ] && step projection 100 "$PY" benchmarks/projection.py --preset paper gpu --device cuda --budget 3 \
  && cp benchmarks/out/projection-paper.json benchmarks/out/projection-gpu.json "$LOG/"

"$PY" - "$LOG" "$MODE" <<'EOF'
"""One table from the steps' JSON and logs: figure, goal (issue 14, on an H100/H200-class GPU), met."""
import json
import sys
from pathlib import Path

log, mode = Path(sys.argv[1]), sys.argv[2]
rows = []


def status(name: str) -> str:
    code, seconds = (log / f"{name}.status").read_text().split()
    return f"ok, {seconds} s" if code == "0" else f"timed out after {seconds} s" if code == "124" else f"failed (exit {code})"


def load(name: str) -> dict | None:
    path = log / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def row(what: str, figure: str, goal: str = "", met: bool | None = None) -> None:
    mark = "-" if met is None or mode != "cuda" else "yes" if met else "**no**"
    rows.append(f"| {what} | {figure} | {goal} | {mark} |")


lines = (log / "tests.log").read_text().strip().splitlines()
row("tests (" + ("-m cuda" if mode == "cuda" else "CPU-side GPU-bug tests") + ")",
    f"{lines[-1].strip('= ') if lines else '-'} ({status('tests')})", "all pass",
    (log / "tests.status").read_text().split()[0] == "0")
for name in ("train", "train_on_device"):
    result = load(name)
    if result is None:
        row(f"training ({name})", status(name))
        continue
    for r in result["results"]:
        batch = f"batch {r['batch_size']}" if r["unit"] == "frames" else f"{r['batch_size']} x {r['seq_len']} steps"
        figure = f"{r['real']:,.0f} {r['unit']}/s data path, {r['bound']:,.0f} pre-made, ratio {r['ratio']:.2f}"
        if r["unit"] == "frames":
            row(f"{r['model']} training, {r['device']}, {batch}", figure, ">= 50,000 frames/s, ratio >= 0.9",
                r["real"] >= 50_000 and r["ratio"] >= 0.9)
        else:
            row(f"{r['model']} training, {r['device']}, {batch}", figure, "ratio >= 0.9", r["ratio"] >= 0.9)
result = load("dream")
if result is None:
    row("dream", status("dream"))
else:
    real, dream, bare = result["rows"]
    row(f"dream, {result['device']}, batch {dream['batch']}",
        f"{dream['steps_per_second']:,.0f} steps/s = {result['dream_vs_bare_model']:.2f} x bare model step "
        f"({bare['steps_per_second']:,.0f}), {result['dream_vs_real']:,.0f} x real env ({real['steps_per_second']:.0f})",
        ">= 0.8 x bare model", result["dream_vs_bare_model"] >= 0.8)
    steps = dream["steps"] // dream["batch"]
    row(f"one CMA-ES generation, {dream['batch']} dreams x {steps} steps", f"{result['generation_seconds']:.2f} s",
        "< 1 s at 64 x 16 x 1,000", result["generation_seconds"] < 1 and dream["batch"] == 1024 and steps == 1000)
result = load("planning")
if result is None:
    row("CEM decision", status("planning"))
else:
    size = f"H={result['horizon']} N={result['candidates']} I={result['iterations']} K={result['elites']}"
    for r in result["rows"]:
        row(f"one CEM decision, {r['device']}, {r['planner']}, {size}", f"{r['ms']:.1f} ms",
            "< 20 ms" if r["planner"].startswith("worldmodels") else "",
            r["ms"] < 20 if r["planner"].startswith("worldmodels") else None)
result = load("collect")
if result is None:
    row("collection", status("collect"))
else:
    for r in result["rows"][1:]:
        row(f"collection {result['env']}, {r['workers']} workers", f"efficiency {r['ratio']:.2f} "
            f"({r['steps_per_second']:.0f} steps/s)", ">= 0.85 at 16 workers" if r["workers"] == 16 else "",
            r["ratio"] >= 0.85 if r["workers"] == 16 else None)

print(f"\n## gpu_check ({mode}{'' if mode == 'cuda' else ': tiny sizes, goals not checked'})\n")
print("| check | figure | goal | met |\n|---|---|---|---|")
print("\n".join(rows))
EOF
