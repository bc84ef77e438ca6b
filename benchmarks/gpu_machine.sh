#!/usr/bin/env bash
# Run a command on a bare GPU machine that has Python 3.12 with torch but not this package, and no internet:
#
#   benchmarks/gpu_machine.sh benchmarks/gpu_check.sh
#   benchmarks/gpu_machine.sh python3 -m worldmodels.cli run VizdoomTakeCover-v1 --preset doom-gpu --device cuda
#
# From the repository root, with the wheels it lacks in .whl/ (git-ignored; fetch them where pip reaches the
# internet: gymnasium, Box2D, pygame-ce, stable-baselines3, cma, farama-notifications, and vizdoom or minigrid
# for those envs). It installs them into a temporary folder on PYTHONPATH, links envs/ and agents/ into
# worldmodels/ (what `pip install -e .` maps; the links are git-ignored), and, when imageio-ffmpeg is neither
# there nor in .whl/ (its wheel is 68 MB), puts in its place a module whose calls raise, so video writing says it
# has no ffmpeg and the tests that need it skip. Then it runs the command with SDL_VIDEODRIVER=dummy and
# unbuffered Python output.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=$(mktemp -d)
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" .whl/*.whl
fi
for package in envs agents; do
  [ -e "worldmodels/$package" ] || ln -s "../$package" "worldmodels/$package"
done
if ! PYTHONPATH=$SITE python3 -c 'import imageio_ffmpeg' 2>/dev/null; then
  cat >"$SITE/imageio_ffmpeg.py" <<'EOF'
"""Stand-in for imageio-ffmpeg on a machine without it (benchmarks/gpu_machine.sh): no ffmpeg, no videos."""


def get_ffmpeg_exe():
    raise RuntimeError("no ffmpeg: imageio-ffmpeg is not installed on this machine")


def write_frames(*args, **kwargs):
    raise RuntimeError("no ffmpeg: imageio-ffmpeg is not installed on this machine")
EOF
fi
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH} SDL_VIDEODRIVER=dummy PYTHONUNBUFFERED=1 PYTHON=python3
exec "$@"
