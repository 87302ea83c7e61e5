#!/usr/bin/env bash
# An ARM64 (aarch64) Python 3.11 with the project's pinned packages, run on an x86-64 machine under qemu-user,
# to check on one machine what a Graviton server, a Raspberry Pi or an Apple-silicon Mac computes
# (tools/same_bits.py, tests/test_same_bits.py). `make aarch64` runs it; as root, on Debian or Ubuntu:
#
#   tools/aarch64_python.sh [DIR [REQUIREMENTS]]      (DIR: default .aarch64, REQUIREMENTS: default requirements.txt)
#
# Builds DIR/root (a Debian arm64 userland, unpacked with dpkg -x; the machine's own packages and
# its python3.11 are not touched: apt runs with a private state under DIR/apt) and DIR/venv (aarch64
# wheels of every pinned package that has one, downloaded on the host side and installed offline).
# Then any command runs as ARM64, for example:
#
#   qemu-aarch64 -cpu neoverse-n1 -L .aarch64/root .aarch64/venv/bin/python -m stages.train
#
# CPU models that matter (qemu-aarch64 -cpu help): neoverse-n1 (Graviton 2, NEON), a64fx (SVE-512),
# cortex-a72 (Raspberry Pi 4), max (every extension qemu has, SME included, as Apple M4-class chips;
# max,sme=off without it). Measured: importing TensorFlow takes ~25 s under emulation; the set-up
# ~5 minutes and 2.5 GB. Packages without an aarch64 wheel are left out, with a line saying so (DVC
# itself is not needed to run a stage: python -m stages.X). Adapted from the workplace's shared tool.
set -euo pipefail
DIR=${1:-.aarch64}
REQ=${2:-requirements.txt}
mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)
[ -f "$REQ" ] || { echo "aarch64_python: no $REQ here" >&2; exit 2; }

command -v qemu-aarch64 >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends qemu-user >/dev/null; }

# 1. an arm64 Debian userland: apt with a private state, the machine's own sources, download only
A=$DIR/apt; mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/etc"; : > "$A/status"
cp /etc/apt/sources.list.d/*.sources "$A/etc/" 2>/dev/null || true
[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$A/etc/host.list"
cat > "$A/apt.conf" <<EOF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Dir::State "$A";
Dir::State::Lists "$A/lists";
Dir::State::status "$A/status";
Dir::Cache "$A/cache";
Dir::Etc::SourceList "/dev/null";
Dir::Etc::SourceParts "$A/etc";
Dir::Etc::Preferences "$A/etc/prefs";
Dir::Etc::PreferencesParts "$A/etc";
EOF
export APT_CONFIG=$A/apt.conf
if [ ! -x "$DIR/root/usr/bin/python3.11" ]; then
  apt-get update -qq
  apt-get install -y -qq --download-only python3.11 python3.11-venv libstdc++6 libgcc-s1 >/dev/null
  mkdir -p "$DIR/root"
  for deb in "$A"/cache/archives/*.deb; do dpkg -x "$deb" "$DIR/root"; done
fi
unset APT_CONFIG
RUN=(qemu-aarch64 -L "$DIR/root")

# 2. a venv of the arm64 python (its ensurepip would exec the arm binary directly: bootstrap pip by hand)
if [ ! -x "$DIR/venv/bin/pip" ]; then
  "${RUN[@]}" "$DIR/root/usr/bin/python3.11" -m venv --without-pip "$DIR/venv"
  pipwhl=$(ls "$DIR"/root/usr/share/python-wheels/pip-*.whl | head -1)
  "${RUN[@]}" "$DIR/venv/bin/python" "$pipwhl/pip" install -q --no-index "$pipwhl"
fi

# 3. aarch64 wheels of the pinned packages, fetched by the host's pip, installed offline under emulation
W=$DIR/wheels; mkdir -p "$W"
PLAT=(--platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_27_aarch64
      --platform manylinux_2_28_aarch64 --only-binary=:all: --python-version 3.11 --abi cp311 --implementation cp)
HOSTPIP=(python3 -m pip download -q --disable-pip-version-check --no-deps -d "$W" "${PLAT[@]}")
ok=(); skipped=()
while read -r pin; do
  [ -z "$pin" ] && continue
  if "${HOSTPIP[@]}" "$pin" >/dev/null 2>&1; then
    ok+=("$pin")
  else skipped+=("$pin"); fi
done < <(grep -vE '^\s*(#|$|-)' "$REQ" | sed 's/\s*#.*//')
# keep only wheels that run on aarch64 (pure-Python ones included)
"${RUN[@]}" "$DIR/venv/bin/python" -m pip install -q --disable-pip-version-check --no-index --find-links "$W" --no-deps \
  $(ls "$W"/*.whl | grep -E 'none-any|aarch64') >/dev/null
[ ${#skipped[@]} -eq 0 ] || echo "aarch64_python: no aarch64 wheel for: ${skipped[*]} (left out)"
echo "aarch64_python: ready; run commands as: qemu-aarch64 -cpu neoverse-n1 -L $DIR/root $DIR/venv/bin/python ..."
