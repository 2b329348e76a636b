# Sourced by the scripts: make sure .venv exists and holds dosirak with the given extras.
# Idempotent: a stamp file records what was installed, so a second run installs nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
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
        # torch: the CPU wheel of this exact version; any other would pull a multi-GB CUDA build.
        .venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
        .venv/bin/python -m pip install -q -e ".[$extras]" "torch==2.13.0" 2>&1 \
            | grep -v "^WARNING: Location" || true
        .venv/bin/python -c "import dosirak" || { echo "install failed" >&2; exit 1; }
        echo "$digest" > "$stamp"
    fi
}
