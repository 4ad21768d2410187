# Sourced by each peer's setup_venv.sh: make "$venv" (outside the repository, never the project's
# .venv) with "$python" if it does not exist yet. Usage: peer_venv <name> <venv> <python>
peer_venv() {
  local name=$1 venv=$2 python=$3
  case "$(cd "$(dirname "$venv")" 2>/dev/null && pwd)/$(basename "$venv")/" in
    "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"/*)
      echo "refusing to put the $name venv inside the repository: $venv" >&2
      exit 2
      ;;
  esac
  if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
  fi
}
