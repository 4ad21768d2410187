#!/usr/bin/env bash
# Create (or complete) a virtual environment holding FATE 2.2 (PyPI package `pyfate`) for
# benchmarks/fate/run_fate_hetero_lr.py. It lives OUTSIDE the repository and is never the
# project's own .venv. Idempotent: a second run only checks the pins and returns.
#
#   bash benchmarks/fate/setup_venv.sh              # -> /work/fate-venv
#   bash benchmarks/fate/setup_venv.sh /some/venv   # -> /some/venv
#
# Pins: pyfate 2.2.0 itself; torch 2.13.0 asked for by version, because pyfate wants an
# unpinned torch and an unpinned torch pulls a multi-GB CUDA build (on this kind of machine
# pip takes a CPU wheel of 2.13.0 from the local wheel folder); pandas 2.2.x, because
# pandas 3 breaks FATE 2.2's dataframe code; numpy below 2 as pyfate requires.
set -euo pipefail

venv=${1:-/work/fate-venv}
python=${PYTHON:-python3}

source "$(dirname "$0")/../_peer_venv.sh"
peer_venv FATE "$venv" "$python"

pins=(pyfate==2.2.0 torch==2.13.0 "pandas==2.2.3" "numpy<2" scikit-learn==1.4.1.post1)


if "$venv/bin/python" - <<'PY' 2>/dev/null; then
from importlib.metadata import version
assert version("pyfate") == "2.2.0"
assert version("pandas").startswith("2.2.")
assert version("torch").startswith("2.13.0")
import fate.ml.glm  # noqa: F401
import fate_utils  # noqa: F401
PY
  echo "FATE venv ready: $venv"
  exit 0
fi

"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "${pins[@]}"
"$venv/bin/python" -c "import fate.ml.glm, fate_utils; print('FATE', __import__('importlib.metadata').metadata.version('pyfate'))"
echo "FATE venv ready: $venv"
