# Shared by the project's scripts: paths and the set-up steps, each skipped when already done.
# shellcheck shell=bash
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WASM_BINDGEN_VERSION=0.2.130
MODEL_FILE="$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
# Build outputs live outside the clone when PROBELAB_CACHE is set (CI keeps it between runs).
CACHE="${PROBELAB_CACHE:-$ROOT/target}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/native}"
WASM_TARGET_DIR="$CACHE/wasm"

log() { printf '\033[1m[probelab]\033[0m %s\n' "$*" >&2; }

# Runs one named stage and records its wall time; stage_report prints them all.
STAGE_TIMES=()
stage() {
  local name="$1" t0=$SECONDS
  shift
  "$@"
  STAGE_TIMES+=("$(printf '%-22s %5d s' "$name" $((SECONDS - t0)))")
  log "stage '$name' took $((SECONDS - t0)) s"
}
stage_report() {
  log "stage times:"
  printf '  %s\n' "${STAGE_TIMES[@]}" >&2
}

need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  need_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

have_rustup_wasm() {
  command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown
}

setup_model() { "$ROOT/models/fetch.sh"; }

setup_wasm_toolchain() {
  if ! have_rustup_wasm; then
    # No rustup wasm32 target (it cannot be downloaded on some machines): Debian's rustc
    # with its std source, built for wasm32 with -Zbuild-std.
    apt_install rustc-web cargo-web rust-web-src lld-16
  fi
  if ! command -v wasm-bindgen >/dev/null 2>&1 || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
    log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (compiles from crates.io, several minutes)"
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked 2>/dev/null \
      || cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
  fi
}

build_native() {
  log "building the native binary"
  (cd "$ROOT" && cargo build --release -p probelab)
}

# Builds the crate for wasm32 and writes the JS bindings to www/pkg.
build_wasm() {
  setup_wasm_toolchain
  log "building the wasm module"
  local flags='--cfg getrandom_backend="wasm_js" -C target-feature=+simd128'
  if have_rustup_wasm; then
    (cd "$ROOT" && CARGO_TARGET_DIR="$WASM_TARGET_DIR" RUSTFLAGS="$flags" \
      cargo build --release --lib -p probelab --no-default-features --features gpu --target wasm32-unknown-unknown)
  else
    (cd "$ROOT" && PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$WASM_TARGET_DIR" \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-16 RUSTFLAGS="$flags" \
      /usr/bin/cargo build --release --lib -p probelab --no-default-features --features gpu \
      --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort)
  fi
  wasm-bindgen --target web --out-dir "$ROOT/www/pkg" \
    "$WASM_TARGET_DIR/wasm32-unknown-unknown/release/probelab.wasm"
}

setup_node() {
  if [ ! -d "$ROOT/tests/e2e/node_modules/playwright-core" ] || [ ! -d "$ROOT/tests/e2e/node_modules/axe-core" ]; then
    log "installing Playwright (playwright-core; the browser is Debian's Chromium) and axe-core"
    (cd "$ROOT/tests/e2e" && npm ci --no-audit --no-fund --silent 2>/dev/null || npm install --no-audit --no-fund --silent)
  fi
  apt_install chromium
}

setup_vulkan() { apt_install mesa-vulkan-drivers libvulkan1; }

# tools/cluster's Python: Ray and the test's readers in tools/cluster/.venv (pinned).
setup_cluster() {
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3 python3-venv
  fi
  # PROBELAB_HF=1 adds torch, transformers and nnsight (about 5 GB) for the HF engines' test.
  "$ROOT/tools/cluster/setup.sh" ${PROBELAB_HF:+--hf}
}

# A local Ray cluster of 2 CPU workers extracts 400 names in shards (tools/cluster/test_cluster.py);
# the HF engines' test (test_hf_engine.py) is skipped, saying so, unless PROBELAB_HF=1 set it up.
cluster_tests() {
  PROBELAB_BIN="$CARGO_TARGET_DIR/release/probelab" \
    "$ROOT/tools/cluster/.venv/bin/python" -m pytest -q -rs -p no:cacheprovider \
    "$ROOT/tools/cluster/test_cluster.py" "$ROOT/tools/cluster/test_hf_engine.py"
}
