#!/usr/bin/env bash
# Creates tools/cluster/.venv with the pinned requirements.txt; with --hf also
# requirements-hf.txt (torch, transformers, nnsight: the Hugging Face engines). Does nothing
# when the venv was made from these very files (their sha256 is kept inside the venv).
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$DIR/.venv"
STAMP="$VENV/.requirements.sha256"
files=("$DIR/requirements.txt")
if [ "${1:-}" = "--hf" ]; then files+=("$DIR/requirements-hf.txt"); fi
want="$(cat "${files[@]}" | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then exit 0; fi
if [ ${#files[@]} -gt 1 ]; then
  echo "[probelab] creating $VENV (Ray, NumPy, safetensors, pytest, and torch, transformers, nnsight: about 6 GB)" >&2
else
  echo "[probelab] creating $VENV (Ray, NumPy, safetensors, pytest; about 400 MB)" >&2
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
for f in "${files[@]}"; do
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$f"
done
echo "$want" > "$STAMP"
