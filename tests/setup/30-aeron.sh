#!/usr/bin/env bash
# Aeron 1.11.3 media driver (C, `aeronmd`) and C++ client library (`libaeron_client.a`), built from source.
#
# Why this route: no registry this machine reaches ships an Aeron release.  The PyPI sdist `aeron-python==1.0.0`
# vendors the complete, unmodified Aeron 1.11.3 source tree (Apache-2.0) under external/aeron; we download that
# sdist with pip (never install it), check its sha256, and build only the C driver and the C++ client with cmake.
# Result: $LOWLAT_CACHE/aeron-1.11.3/{bin/aeronmd, lib/libaeron_client.a, lib/libaeron_driver.so, include/...}
# and `export AERON_HOME=...` in $LOWLAT_CACHE/env.sh, so `pip install -e .` builds lowlat._aeron.
# Idempotent: a finished install is marked with .complete and reused.
set -euo pipefail

LOWLAT_CACHE="${LOWLAT_CACHE:-$HOME/.cache/lowlat}"
VER=1.11.3
SDIST=aeron_python-1.0.0.tar.gz
SHA256=236beb5ac4766fdec38334950dcafad15c014e76587c7be7a8ebe4376460dfcd
PREFIX="$LOWLAT_CACHE/aeron-$VER"
DL="$LOWLAT_CACHE/downloads"
mkdir -p "$LOWLAT_CACHE" "$DL"

if [ ! -f "$PREFIX/.complete" ]; then
    if [ ! -f "$DL/$SDIST" ] || ! echo "$SHA256  $DL/$SDIST" | sha256sum -c --quiet - 2>/dev/null; then
        rm -f "$DL/$SDIST"
        tmp="$(mktemp -d)"
        # its setup.py imports distutils.version.LooseVersion at metadata time -> old setuptools in the
        # isolated build env; --no-binary keeps pip from looking for a wheel (there is none).
        echo 'setuptools<58' > "$tmp/constraints.txt"
        PIP_CONSTRAINT="$tmp/constraints.txt" python -m pip download -q --no-deps --no-binary :all: \
            -d "$tmp" "aeron-python==1.0.0"
        mv "$tmp/$SDIST" "$DL/$SDIST"
        rm -rf "$tmp"
    fi
    echo "$SHA256  $DL/$SDIST" | sha256sum -c --quiet - || { echo "sha256 mismatch for $SDIST" >&2; exit 1; }

    work="$(mktemp -d)"
    tar -xzf "$DL/$SDIST" -C "$work"
    src="$work/external/aeron"   # the sdist has no top-level directory
    [ "$(head -c 6 "$src/version.txt")" = "$VER" ] || { echo "unexpected Aeron version in $SDIST" >&2; exit 1; }
    # PIC: the static client is linked into a Python extension module.
    cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_AERON_DRIVER=ON \
        -DAERON_TESTS=OFF -DAERON_BUILD_SAMPLES=OFF -DAERON_BUILD_DOCUMENTATION=OFF -DAERON_INSTALL_TARGETS=ON \
        -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DCMAKE_INSTALL_PREFIX="$PREFIX" \
        -DCMAKE_INSTALL_RPATH="$PREFIX/lib" >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; exit 1; }
    cmake --build "$work/build" -j2 >"$work/build.log" 2>&1 || { tail -50 "$work/build.log"; exit 1; }
    rm -rf "$PREFIX"
    cmake --install "$work/build" >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
    cp "$src/LICENSE" "$PREFIX/LICENSE"
    # (aeronmd has no --help: any argument starts a driver, so only check that it links)
    ldd "$PREFIX/bin/aeronmd" | grep -q "not found" && { echo "aeronmd has unresolved libraries" >&2; exit 1; }
    touch "$PREFIX/.complete"
    rm -rf "$work"
fi

for line in "export AERON_HOME=\"$PREFIX\"" "export LOWLAT_AERONMD=\"$PREFIX/bin/aeronmd\""; do
    grep -qxF "$line" "$LOWLAT_CACHE/env.sh" 2>/dev/null || echo "$line" >> "$LOWLAT_CACHE/env.sh"
done
echo "aeron $VER: $PREFIX"
