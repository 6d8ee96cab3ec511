#!/usr/bin/env bash
# Creates tools/cluster/.venv with the pinned requirements.txt; does nothing when the venv was
# made from this very requirements.txt (its sha256 is kept inside the venv).
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$DIR/.venv"
STAMP="$VENV/.requirements.sha256"
want="$(sha256sum "$DIR/requirements.txt" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then exit 0; fi
echo "[probelab] creating $VENV (Ray, NumPy, safetensors, pytest; about 400 MB)" >&2
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$DIR/requirements.txt"
echo "$want" > "$STAMP"
