# Sourced by the scripts: make sure .venv exists and holds dosirak with the given extras.
# Idempotent: a stamp file records what was installed, so a second run installs nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
# torch: the CPU wheel of this exact version; any other would pull a multi-GB CUDA build.
TORCH="torch==2.13.0"
ensure_venv() {
    local extras=$1
    if [ ! -x .venv/bin/python ]; then
        "$PY" -m venv .venv
        .venv/bin/python -m pip install -q --upgrade pip
    fi
    local stamp=".venv/.dosirak-installed-${extras//,/-}"
    local digest
    digest=$(cat pyproject.toml scripts/_venv.sh | sha256sum | cut -c1-16)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
        local pinned=()
        if extras_need_torch "$extras"; then
            # First on its own, so that no extra's looser "torch>=" picks another build.
            .venv/bin/python -m pip install -q "$TORCH" 2>&1 | grep -v "^WARNING: Location" || true
            pinned=("$TORCH")
        fi
        .venv/bin/python -m pip install -q -e ".[$extras]" "${pinned[@]}" 2>&1 \
            | grep -v "^WARNING: Location" || true
        .venv/bin/python -c "import dosirak" || { echo "install failed" >&2; exit 1; }
        echo "$digest" > "$stamp"
    fi
}
# Whether any of the comma-separated extras requires torch, as pyproject.toml says (the demo's
# scikit-learn needs none of its ~1 GB).
extras_need_torch() {
    .venv/bin/python - "$1" <<'EOF'
import re
import sys
import tomllib

with open("pyproject.toml", "rb") as file:
    extras = tomllib.load(file)["project"]["optional-dependencies"]
wanted = sys.argv[1].split(",")
names = [re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower()
         for extra in wanted for requirement in extras.get(extra, [])]
sys.exit(0 if "torch" in names else 1)
EOF
}
