#!/usr/bin/env bash
# A virtual environment holding SecretFlow HEU (PyPI package `sf-heu`) for benchmarks/paillier_race.py.
# It lives OUTSIDE the repository and is never the project's own .venv. Idempotent.
#
#   bash benchmarks/heu/setup_venv.sh              # -> /work/heu-venv
#   bash benchmarks/heu/setup_venv.sh /some/venv
set -euo pipefail

venv=${1:-/work/heu-venv}
python=${PYTHON:-python3}

source "$(dirname "$0")/../_peer_venv.sh"
peer_venv HEU "$venv" "$python"

if "$venv/bin/python" -c "from heu import phe; phe.setup(phe.SchemaType.ZPaillier, 1024)" 2>/dev/null; then
  echo "HEU venv ready: $venv"
  exit 0
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet sf-heu numpy
"$venv/bin/python" -c "from heu import phe; phe.setup(phe.SchemaType.ZPaillier, 1024); print('HEU', __import__('importlib.metadata').metadata.version('sf-heu'))"
echo "HEU venv ready: $venv"
