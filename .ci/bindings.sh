#!/usr/bin/env bash
# Builds and tests the language bindings over librstar's C ABI (issue 30), each solving the README
# question with the tiny model: the C ABI misuse test under ASan+UBSan+LSan, the C++ header
# (g++ -std=c++17 -Wall -Werror, plain and sanitized), the Python package (pip install + pytest),
# the Go package (go test) and the Swift module map (clang -fmodules; no Swift toolchain here).
# Expects `cargo build` done (the dev profile is optimized); installs the library with
# scripts/install.sh into a temporary prefix and links everything through its rstar.pc.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
t0=$SECONDS
need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2"; }; }
need g++ g++
need pkg-config pkg-config
need go golang-go
need clang clang

. .ci/tiny.sh # the tiny model: $RSTAR_TINY_MODEL, else models/tiny
find_tiny

work=$(mktemp -d /tmp/rstar-bindings.XXXXXX)
trap 'rm -rf "$work"' EXIT
RSTAR_PROFILE=debug scripts/install.sh "$work/prefix"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
export LD_LIBRARY_PATH="$work/prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cflags=$(pkg-config --cflags rstar)
libs=$(pkg-config --libs rstar)
san=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1)
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
step() { echo "== bindings: $1 ($((SECONDS - t0)) s so far)"; }

step "C ABI misuse under ASan+UBSan+LSan"
cc -std=c11 -Wall -Wextra -Werror "${san[@]}" tests/c/misuse_test.c $cflags $libs -lpthread \
    -o "$work/misuse"
"$work/misuse" "$tiny/policy" "$tiny/ppm" "$work" | tail -n 3

step "C++ (g++ -std=c++17 -Wall -Wextra -Werror), plain and sanitized"
g++ -std=c++17 -Wall -Wextra -Werror -O1 bindings/cpp/test.cpp -Ibindings/cpp $cflags $libs \
    -lpthread -o "$work/cpp"
(cd "$work" && ./cpp "$tiny/policy" "$tiny/ppm" "$tiny/search.toml")
g++ -std=c++17 -Wall -Wextra -Werror "${san[@]}" bindings/cpp/test.cpp -Ibindings/cpp $cflags \
    $libs -lpthread -o "$work/cpp-san"
(cd "$work" && ./cpp-san "$tiny/policy" "$tiny/ppm" "$tiny/search.toml")

step "Python (pip install ./bindings/python, pytest)"
python3 -m venv "$work/py"
"$work/py/bin/pip" install -q --disable-pip-version-check pytest
RSTAR_LIB="$work/prefix/lib/librstar.so" "$work/py/bin/pip" install -q --disable-pip-version-check \
    ./bindings/python
# From the temp dir, so that `import rstar` is the installed package (with its bundled library).
(cd "$work" && env -u LD_LIBRARY_PATH "$work/py/bin/python" -m pytest -q -p no:cacheprovider \
    "$root/bindings/python/tests")

step "Go (cgo through pkg-config, go test)"
(cd bindings/go && GOFLAGS=-mod=mod GOCACHE="$work/gocache" go vet ./... && \
    GOFLAGS=-mod=mod GOCACHE="$work/gocache" go test -count=1 ./...)

step "Swift: the CRStar module map imports with clang -fmodules"
clang -fmodules -fmodules-cache-path="$work/modules" \
    -fmodule-map-file=bindings/swift/Sources/CRStar/module.modulemap \
    -Ibindings/swift/Sources/CRStar $cflags bindings/swift/ci/check_module.c $libs -o "$work/swiftmod"
"$work/swiftmod"
echo "== bindings: all passed in $((SECONDS - t0)) s (Swift layer written, not compiled here)"
