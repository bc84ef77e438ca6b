#!/usr/bin/env bash
# The GPU preset on CarRacing, timed, on one GPU machine (issue 13): `wm run CarRacing-v3 --preset gpu`
# under a time limit, then the CUDA test cases with what time is left. Prints the pipeline's stage
# seconds, real-env steps and scores; copies pipeline.json, the controller's history and the logs to
# OUT (default benchmarks/out/gpu_preset).
#
#   benchmarks/gpu_preset.sh                      # the preset as it is, on cuda when torch sees one
#   LIMIT=300 benchmarks/gpu_preset.sh --device cpu --workers 2 --set collect.episodes=4 ...   # scaled down
#
# Extra arguments go to `wm run`. PYTHON overrides the interpreter (default .venv/bin/python, else python3);
# RUN the run directory (default /tmp/gpu_preset_s$SEED), SEED the pipeline seed (default 0).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
SEED=${SEED:-0}
RUN=${RUN:-/tmp/gpu_preset_s$SEED}
OUT=${OUT:-benchmarks/out/gpu_preset}
export SDL_VIDEODRIVER=dummy TQDM_MININTERVAL=20 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda:", torch.cuda.is_available() and torch.cuda.get_device_name())'
nproc

start=$SECONDS
timeout "${LIMIT:-480}" "$PY" -c 'import sys; from worldmodels.cli import main; sys.exit(main(sys.argv[1:]))' \
  run CarRacing-v3 --preset gpu --run "$RUN" --seed "$SEED" "$@" 2>&1 | tr '\r' '\n' | tee "$OUT/preset.log" | grep -v '^ *$'
echo "wm run: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s"
cp "$RUN/pipeline.json" "$OUT/" 2>/dev/null
cp "$RUN/controller/history.json" "$OUT/history.json" 2>/dev/null
"$PY" - "$RUN" <<'EOF'
"""The run's figures in one block: seconds per stage, real-env steps, each agent's score."""
import json
import sys
from pathlib import Path

path = Path(sys.argv[1]) / "pipeline.json"
if path.exists():
    s = json.loads(path.read_text())
    print("seconds:", {k: round(v, 1) for k, v in s["seconds"].items()}, "total", round(sum(s["seconds"].values()), 1))
    print("real env steps:", s["real_env_steps"])
    for agent, r in s["scores"].items():
        print(f"{agent}: {r['mean']:.1f} +- {r['std']:.1f} over {r['episodes']} episodes (min {r['min']:.1f}, max {r['max']:.1f})")
else:
    print("no pipeline.json: the run did not finish")
EOF
if [ -n "${TESTS_LIMIT:-}" ]; then
  timeout "$TESTS_LIMIT" "$PY" -m pytest -q -p no:cacheprovider -m cuda tests 2>&1 | tee "$OUT/cuda_tests.log" | tail -n 25
fi
