#!/usr/bin/env bash
# AddressSanitizer pass over lowlat._core's verifier/readers/framing ("Hostile input").
#
# Builds the committed tree (git archive HEAD) in a scratch directory with lowlat._core compiled with
# -fsanitize=address, then runs the hostile-input, fuzz and codec tests against it with libasan preloaded and
# PYTHONMALLOC=malloc (so every bytes object is its own malloc block with ASan redzones: a read one byte past a
# message is reported, not just reads into the PROT_NONE guard pages the tests use).
#
#   bash benchmarks/fuzz/asan_fb.sh                    # ~2-5 min
#   LOWLAT_FUZZ_EXAMPLES=20000 bash benchmarks/fuzz/asan_fb.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
W="$(mktemp -d)/lowlat-asan"
mkdir -p "$W"
git archive HEAD | tar -x -C "$W"
cd "$W"
echo "== building lowlat._core with AddressSanitizer in $W"
LOWLAT_CFLAGS="-O1 -g -fsanitize=address -fno-omit-frame-pointer" LDFLAGS="-fsanitize=address" \
    LOWLAT_EXTS=_core python setup.py -q build_ext --inplace > build.log 2>&1 || { tail -30 build.log; exit 1; }
LOWLAT_EXTS=_book,_ring python setup.py -q build_ext --inplace >> build.log 2>&1 || { tail -30 build.log; exit 1; }
ASAN_LIB="$(gcc -print-file-name=libasan.so)"
echo "== pytest under ASan ($ASAN_LIB)"
LD_PRELOAD="$ASAN_LIB" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0 \
    PYTHONMALLOC=malloc LOWLAT_FUZZ_EXAMPLES="${LOWLAT_FUZZ_EXAMPLES:-3000}" \
    python -m pytest -q -p no:cacheprovider -p no:randomly \
        tests/property/test_fb_hostile.py tests/property/test_fuzz_fb.py tests/property/test_validate_ref.py \
        tests/property/test_fb_compat.py tests/unit/test_fb_order.py tests/unit/test_fb_messages.py \
        tests/unit/test_fb_framing.py tests/unit/test_validator_rules.py
echo "== ASan pass clean"
rm -rf "$(dirname "$W")"
