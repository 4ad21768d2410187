#!/usr/bin/env bash
# A virtual environment holding Flower (`flwr`) for the homo_lr accuracy anchor. It lives
# OUTSIDE the repository and is never the project's own .venv. Idempotent.
#
#   bash benchmarks/flower/setup_venv.sh              # -> /work/flwr-venv
#   bash benchmarks/flower/setup_venv.sh /some/venv
set -euo pipefail

venv=${1:-/work/flwr-venv}
python=${PYTHON:-python3}

source "$(dirname "$0")/../_peer_venv.sh"
peer_venv Flower "$venv" "$python"

if "$venv/bin/python" -c "import flwr, sklearn" 2>/dev/null; then
  echo "Flower venv ready: $venv"
  exit 0
fi
"$venv/bin/python" -m pip install --quiet flwr numpy scikit-learn
echo "Flower venv ready: $venv"
