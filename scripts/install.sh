#!/usr/bin/env bash
# Installs librstar for C/C++/Go/Swift/Python users: PREFIX/lib/librstar.{so,a},
# PREFIX/include/rstar.h and PREFIX/lib/pkgconfig/rstar.pc.
#   scripts/install.sh PREFIX            builds the release library first (cargo build --release --lib)
#   RSTAR_PROFILE=debug scripts/install.sh PREFIX   installs target/debug's library (built if missing)
# Then: PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs rstar
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 PREFIX" >&2; exit 2; }
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
prefix="$(cd "$1" && pwd)"
profile="${RSTAR_PROFILE:-release}"
case "$profile" in
    release) (cd "$root" && cargo build --release --lib) ;;
    debug) [ -f "$root/target/debug/librstar.so" ] || (cd "$root" && cargo build --lib) ;;
    *) echo "RSTAR_PROFILE must be release or debug" >&2; exit 2 ;;
esac
lib="${CARGO_TARGET_DIR:-$root/target}/$profile"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 755 "$lib/librstar.so" "$prefix/lib/librstar.so"
install -m 644 "$lib/librstar.a" "$prefix/lib/librstar.a"
install -m 644 "$root/include/rstar.h" "$prefix/include/rstar.h"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" "$root/rstar.pc.in" \
    > "$prefix/lib/pkgconfig/rstar.pc"
echo "installed librstar $version ($profile) under $prefix"
