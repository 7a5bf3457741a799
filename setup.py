"""Build lowlat's compiled modules.  All Cython directives live here (see STYLE.md section 5).

Environment switches:
  LOWLAT_DEBUG=1     bounds/initialized checks, invariant checks (LOWLAT_DEBUG macro), -O0 -g; otherwise the
                     modules carry no debug info (-g0, linked with --strip-debug): Python's own CFLAGS have -g,
                     which made _core 3 MB of DWARF in a release wheel
  LOWLAT_ANNOTATE=1  write Cython's annotated HTML next to each .pyx
  LOWLAT_CFLAGS      extra C flags for the release build (default -O2)
  LOWLAT_EXTS        comma-separated subset of modules to build (e.g. "_ring"), for fast in-place work
  AERON_HOME         an Aeron install (include/ + lib/) -> also build the optional lowlat._aeron binding
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("LOWLAT_DEBUG", "0") != "0"
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}
CFLAGS = ["-O0", "-g"] if DEBUG else os.environ.get("LOWLAT_CFLAGS", "-O2").split() + ["-g0"]
LDFLAGS = [] if DEBUG else ["-Wl,--strip-debug"]
MACROS = [("LOWLAT_DEBUG", "1" if DEBUG else "0"), ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]

# module -> extra Extension kwargs
MODULES = {"_idle": {}, "_core": {}, "_book": {}, "_ring": {}, "_batch": {}, "_histogram": {}, "_encode": {}, "_nats_proto": {}, "_vstage": {}, "_readside": {}, "_mstage": {}, "_shmbus": {}, "_timer": {}, "_l2batch": {}}

aeron_home = os.environ.get("AERON_HOME")
if aeron_home:
    MODULES["_aeron"] = dict(
        language="c++",
        include_dirs=[os.path.join(aeron_home, "include")],
        library_dirs=[os.path.join(aeron_home, "lib")],
        runtime_library_dirs=[os.path.join(aeron_home, "lib")],
        libraries=["aeron_client", "pthread"],
        # libaeron_client.a is a Release build with -DDISABLE_BOUNDS_CHECKS (30-aeron.sh): compile the inline
        # header code the same way, except in the LOWLAT_DEBUG build, where Aeron's buffer bounds checks stay on.
        extra_compile_args=["-std=c++11"] + ([] if DEBUG else ["-DDISABLE_BOUNDS_CHECKS"]),
    )

wanted = [m.strip() for m in os.environ.get("LOWLAT_EXTS", "").split(",") if m.strip()]


def _depends(mod):
    # A module's own pieces (lowlat/<mod>_*.pxi, included in the uvloop manner), its .pxd and the shared headers
    # and .pxd/.pxi files it may use: an edit to any of them rebuilds the extension.
    own = glob.glob(f"lowlat/{mod}_*.pxi") + glob.glob(f"lowlat/{mod}_*.h")
    shared = glob.glob("lowlat/*.pxd") + glob.glob("lowlat/_fbs_*.pxi") + glob.glob("lowlat/_idle.h")
    return sorted(set(own + shared) - {f"lowlat/{mod}.pyx"})


def _ext(mod, extra):
    src = f"lowlat/{mod}.pyx"
    kw = dict(extra)
    kw.setdefault("depends", _depends(mod))
    inc = ["lowlat", numpy.get_include()] + kw.pop("include_dirs", [])
    cflags = CFLAGS + kw.pop("extra_compile_args", [])
    return Extension(f"lowlat.{mod}", [src], include_dirs=inc, define_macros=MACROS,
                     extra_compile_args=cflags, extra_link_args=LDFLAGS, **kw)


EXTS = [_ext(m, kw) for m, kw in MODULES.items()
        if (not wanted or m in wanted) and os.path.exists(f"lowlat/{m}.pyx")]

setup(
    ext_modules=cythonize(EXTS, compiler_directives=DIRECTIVES,
                          annotate=DEBUG or bool(os.environ.get("LOWLAT_ANNOTATE"))),
)
