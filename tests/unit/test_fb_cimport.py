"""Another compiled module (like lowlat._book) can cimport the verified readers from lowlat/_core.pxd and call
them inside its own nogil loop (pyzmq's tests/test_cython.py idea: compile a tiny extension in a temp dir)."""

import os
import subprocess
import sys
import textwrap

import pytest

import lowlat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(lowlat.__file__)))

PYX = textwrap.dedent("""
    from lowlat._core cimport (FbOrder, FbCommand, fb_read_order, fb_read_command, fb_build_order,
                               fb_order_size, FB_COMMAND_CANCEL)

    def read_all(bufs):
        cdef FbOrder o
        cdef int rc
        cdef const char* p
        cdef Py_ssize_t n
        out = []
        for b in bufs:
            p = b
            n = len(b)
            with nogil:
                rc = fb_read_order(p, n, &o)
            out.append((rc, o.id, o.quantity, o.symbol[:o.symbol_len] if rc == 0 else b""))
        return out

    def command(bytes b):
        cdef FbCommand c
        cdef int rc
        cdef const char* p = b
        cdef Py_ssize_t n = len(b)
        with nogil:
            rc = fb_read_command(p, n, &c)
        if rc:
            return rc
        if c.type == FB_COMMAND_CANCEL:
            return ("cancel", c.cancel.order_id, c.cancel.symbol[:c.cancel.symbol_len])
        return ("other", c.type)

    def build(unsigned long long oid, bytes sym):
        cdef Py_ssize_t n = fb_order_size(len(sym), -1)
        out = bytearray(n)
        cdef char* p = out
        cdef const char* s = sym
        cdef Py_ssize_t sn = len(sym)
        with nogil:
            fb_build_order(p, oid, s, sn, 1.5, 10, 0, 0, 0, 0, 0, 0, NULL, 0, 0)
        return bytes(out)
""")

SETUP = textwrap.dedent("""
    import sys
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    root = sys.argv.pop(1)
    setup(ext_modules=cythonize([Extension("cimport_probe", ["cimport_probe.pyx"],
                                           include_dirs=[root + "/lowlat"])],
                                include_path=[root], compiler_directives={"language_level": 3}),
          script_args=["build_ext", "--inplace", "-q"])
""")


@pytest.mark.slow
def test_cimport_core_readers_from_another_extension(tmp_path):
    (tmp_path / "cimport_probe.pyx").write_text(PYX)
    (tmp_path / "build_probe.py").write_text(SETUP)
    r = subprocess.run(check=False, args=[sys.executable, "build_probe.py", ROOT], cwd=tmp_path, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    sys.path.insert(0, str(tmp_path))
    try:
        import cimport_probe
    finally:
        sys.path.remove(str(tmp_path))
    good = lowlat.encode_order(42, "BTC-USD", 100.5, 7, 0, 1)
    res = cimport_probe.read_all([good, good[:20], b""])
    assert res[0] == (0, 42, 7, b"BTC-USD")
    assert res[1][0] < 0 and res[2][0] < 0
    assert cimport_probe.command(lowlat.encode_command(lowlat.Cancel(order_id=5, symbol="X"))) == \
        ("cancel", 5, b"X")
    built = cimport_probe.build(9, b"ETH")
    assert lowlat.read_order(built) == (9, "ETH", 1.5, 10, 0, 0)
