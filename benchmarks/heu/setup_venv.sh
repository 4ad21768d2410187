#!/usr/bin/env bash
# A virtual environment holding SecretFlow HEU (PyPI package `sf-heu`) for benchmarks/paillier_race.py.
# It lives OUTSIDE the repository and is never the project's own .venv. Idempotent.
#
#   bash benchmarks/heu/setup_venv.sh              # -> /work/heu-venv
#   bash benchmarks/heu/setup_venv.sh /some/venv
set -euo pipefail

venv=${1:-/work/heu-venv}
python=${PYTHON:-python3}

case "$(cd "$(dirname "$venv")" 2>/dev/null && pwd)/$(basename "$venv")/" in
  "$(cd "$(dirname "$0")/../.." && pwd)"/*)
    echo "refusing to put the HEU venv inside the repository: $venv" >&2
    exit 2
    ;;
esac

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
if "$venv/bin/python" -c "from heu import phe; phe.setup(phe.SchemaType.ZPaillier, 1024)" 2>/dev/null; then
  echo "HEU venv ready: $venv"
  exit 0
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet sf-heu numpy
"$venv/bin/python" -c "from heu import phe; phe.setup(phe.SchemaType.ZPaillier, 1024); print('HEU', __import__('importlib.metadata').metadata.version('sf-heu'))"
echo "HEU venv ready: $venv"
