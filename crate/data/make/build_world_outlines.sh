#!/usr/bin/env bash
# Rebuilds the committed drawing data in crate/data/ (not needed to build or test: the outputs
# are committed). Needs node + npm (npm registry), and for the font python3 with `fonttools`
# (pip install fonttools) and Debian's fonts-dejavu-core.
#
#   bash crate/data/make/build_world_outlines.sh
#
#  1. world_110m.bin  — Natural Earth 1:110m country outlines from the npm package world-atlas@2.0.2,
#     cut at the antimeridian and quantized (see build_world_outlines.mjs for the format).
#  2. DejaVuSans-subset.ttf — DejaVu Sans (Bitstream Vera licence; DejaVu changes public domain)
#     cut down to Latin, Latin-1, Latin Extended-A, Greek and common punctuation, without hinting
#     or layout tables, so PNGs rendered by probelab::render have legible text with no system font.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
data="$root/crate/data"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent world-atlas@2.0.2 >/dev/null && tar xzf world-atlas-2.0.2.tgz)
node "$here/build_world_outlines.mjs" "$tmp/package" "$data/world_110m.bin"
cp "$tmp/package/LICENSE" "$data/WORLD_ATLAS_LICENSE.txt"

font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
if [ -f "$font" ] && command -v pyftsubset >/dev/null; then
  pyftsubset "$font" \
    --unicodes="U+0020-007E,U+00A0-017F,U+0370-03FF,U+2010-2027,U+2030-203A,U+2070-209F,U+2190-2193,U+2212,U+2248,U+2260,U+2264,U+2265,U+FFFD" \
    --no-hinting --layout-features='' --drop-tables+=GSUB,GPOS,GDEF,kern,FFTM --name-IDs='*' \
    --output-file="$data/DejaVuSans-subset.ttf"
  cp /usr/share/doc/fonts-dejavu-core/copyright "$data/DEJAVU_LICENSE.txt"
  echo "font -> $data/DejaVuSans-subset.ttf ($(wc -c <"$data/DejaVuSans-subset.ttf") bytes)"
else
  echo "skipped the font: needs $font (apt-get install fonts-dejavu-core) and pyftsubset (pip install fonttools)" >&2
fi
