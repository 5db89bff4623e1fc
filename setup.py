"""Build hook: the detectors' hot modules compiled with mypyc (ships with mypy) for `pip install .`.

The compiled modules are the same source, typed, so results are byte-identical (benchmarks/anomaly.md).
Pure Python instead, with the same results, when:
- the install is editable (`pip install -e`): a compiled module next to its source would hide every edit;
- PIPEMON_PURE=1 is set;
- mypyc or a C compiler is missing, or compiling fails: the extensions are optional, a failure is a warning.
"""
from __future__ import annotations

import os
import sys

from setuptools import setup

HOT = [  # the per-run path of `pipemon detect` and of the live engine's detectors
    "src/pipemon/engine/detect/metric.py",
    "src/pipemon/engine/detect/coupling.py",
    "src/pipemon/engine/detect/calendar.py",
    "src/pipemon/engine/detect/suite.py",
    "src/pipemon/engine/detect/feed.py",  # the backtest's loop (`pipemon detect`)
    "src/pipemon/engine/detect/cadence.py",
    "src/pipemon/engine/detect/failures.py",
    "src/pipemon/engine/detect/schema.py",
    "src/pipemon/engine/detect/explain.py",
    "src/pipemon/engine/schedule.py",
]


def compiled() -> list:
    if os.environ.get("PIPEMON_PURE") or "editable_wheel" in sys.argv:
        return []
    if not {"bdist_wheel", "build", "build_ext", "install"} & set(sys.argv):
        return []  # metadata only (egg_info, dist_info): no need to type-check and translate the modules
    try:
        from mypyc.build import mypycify
    except ImportError as e:
        print(f"pipemon: mypyc not available ({e}): pure Python detectors", file=sys.stderr)
        return []
    try:
        exts = mypycify(["--ignore-missing-imports", *HOT], opt_level="3")
    except BaseException as e:  # a type error mypyc will not compile: keep the install working
        print(f"pipemon: mypyc failed ({e!r}): pure Python detectors", file=sys.stderr)
        return []
    for ext in exts:
        ext.optional = True  # no compiler: a warning, and the .py modules are used
    return exts


setup(ext_modules=compiled())
