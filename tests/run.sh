#!/usr/bin/env bash
# The README's second command: install everything the tests need (brokers included) and run the whole
# suite, on the release build and then the property/fuzz tests on the LOWLAT_DEBUG=1 build.
# .ci/run calls exactly this.  Safe to re-run: setup steps cache under $LOWLAT_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export LOWLAT_CACHE="${LOWLAT_CACHE:-$HOME/.cache/lowlat}"
mkdir -p "$LOWLAT_CACHE"
: > "$LOWLAT_CACHE/env.sh"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# 1. system-level test needs: brokers, media drivers (each script appends exports to $LOWLAT_CACHE/env.sh)
for s in tests/setup/[0-9]*.sh; do
    echo "== $s"
    bash "$s"
done
# shellcheck disable=SC1091
. "$LOWLAT_CACHE/env.sh"

# 2. the package (in place, so tests import the checkout) with every test extra
echo "== pip install -e .[test]"
python -m pip install -q -e ".[test]"

# 3. the whole suite on the release build
echo "== pytest (release build)"
python -m pytest -q -rs -p no:cacheprovider "$@"

# 4. property/fuzz tests again on the LOWLAT_DEBUG=1 build (bounds + invariant checks), in a scratch copy
echo "== pytest (LOWLAT_DEBUG=1 build)"
DBG="$(mktemp -d)/lowlat-debug"
mkdir -p "$DBG"
cp -r setup.py pyproject.toml README.md LICENSE fbs lowlat tests examples "$DBG"/
find "$DBG/lowlat" \( -name '*.so' -o -name '*.c' -o -name '*.cpp' -o -name '*.html' \) -delete
(cd "$DBG" && LOWLAT_DEBUG=1 python setup.py -q build_ext --inplace > build.log 2>&1 || { cat build.log; exit 1; })
(cd "$DBG" && LOWLAT_EXPECT_DEBUG=1 python -m pytest -q -p no:cacheprovider -m "not integration" tests/property tests/unit)
rm -rf "$(dirname "$DBG")"
