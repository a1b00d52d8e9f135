# Sourced by the .ci scripts: finds the tiny model (policy/, ppm/, search.toml) the binding and
# Ray tests run on: $RSTAR_TINY_MODEL, else models/tiny; sets $tiny to its absolute path and
# exports RSTAR_TINY_MODEL, or exits 1. Run from the repository root.
find_tiny() {
    tiny=${RSTAR_TINY_MODEL:-}
    local d
    for d in "$tiny" models/tiny; do
        [ -n "$d" ] && [ -f "$d/policy/config.json" ] && { tiny=$(cd "$d" && pwd); break; }
    done
    [ -f "$tiny/policy/config.json" ] || { echo "no tiny model (models/tiny or \$RSTAR_TINY_MODEL)"; exit 1; }
    export RSTAR_TINY_MODEL=$tiny
}
