"""Build step of the rstar Python package: bundles librstar into the package.

`pip install ./bindings/python` copies `$RSTAR_LIB` (a built librstar.so) into the package, or,
without it, runs `cargo build --release --lib` in the repository two levels up and copies
target/release/librstar.so. The Python code itself is pure ctypes over the C ABI.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NAMES = ("librstar.so", "librstar.dylib")


def find_or_build_library() -> Path:
    env = os.environ.get("RSTAR_LIB")
    if env:
        lib = Path(env)
        if not lib.is_file():
            sys.exit(f"RSTAR_LIB={env} is not a file")
        return lib
    if not (REPO / "Cargo.toml").is_file():
        sys.exit("set RSTAR_LIB to a built librstar.so (no Rust source tree around this package)")
    subprocess.check_call(["cargo", "build", "--release", "--lib"], cwd=REPO)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"
    for name in NAMES:
        if (target / name).is_file():
            return target / name
    sys.exit(f"cargo built no librstar in {target}")


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        lib = find_or_build_library()
        dest = Path(self.build_lib) / "rstar"
        dest.mkdir(parents=True, exist_ok=True)
        name = "librstar.dylib" if lib.suffix == ".dylib" else "librstar.so"
        shutil.copy2(lib, dest / name)


class BinaryDistribution(Distribution):
    """A platform wheel: the package carries a native library."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
