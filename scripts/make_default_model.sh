#!/usr/bin/env bash
# Builds librstar's default model from scratch with librstar's own pipeline (issue 8 item 8):
#
#   1. gen-problems: a bootstrap set with code-augmented solutions (mostly levels 1-2), a harder
#      evolution set (levels 2-4, answers only) and a held-out evaluation set (levels 1-4);
#   2. init-model:   a byte-level BPE tokenizer trained on the bootstrap text + a random Qwen2
#                    decoder (shape in scripts/default_model/init.env);
#   3. train sft:    the bootstrap policy (round 0) on the programmatic solutions;
#   4. evolve:       round 0 (the bootstrap policy's greedy accuracy on the held-out set), then
#                    rounds of MCTS + extraction + SFT (with a replay draw of the bootstrap
#                    set) + PPM + evaluation
#                    (scripts/default_model/evolve.json). Round 1 is terminal-guided and trains
#                    the first PPM from its Q-values (the PPM's initialisation is the round-1
#                    policy, as in rStar); later rounds are PPM-augmented;
#   5. copy:         the last trained policy and PPM, the search settings and the per-round
#                    table, and the held-out problems, into
#                    models/tiny/{policy,ppm,search.toml,rounds.{json,md,png},heldout.jsonl}.
#
# Every step is skipped when its output exists (evolve resumes stage by stage), so rerunning
# after an interruption continues. Usage:
#
#   scripts/make_default_model.sh [--quick] [--rounds N]
#
# --quick: a smoke run of the whole pipeline in a few minutes (tiny counts, 1 round, its own
# work dir; writes models/tiny only with RSTAR_RECIPE_OUT set). Environment:
#   RSTAR_RECIPE_WORK  work directory (default: default-model-work[-quick], git-ignored)
#   RSTAR_RECIPE_OUT   output directory (default: models/tiny; quick: none)
#   RSTAR              rstar binary (default: build and use target/release/rstar)
set -euo pipefail
cd "$(dirname "$0")/.."
HERE=scripts/default_model

QUICK=0
ROUNDS=2
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS="$2"; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

# shellcheck source=default_model/init.env
. "$HERE/init.env"
if [ "$QUICK" = 1 ]; then
    WORK=${RSTAR_RECIPE_WORK:-default-model-work-quick}
    OUT=${RSTAR_RECIPE_OUT:-}
    EVOLVE_CONFIG=$HERE/evolve-quick.json
    ROUNDS=1
    BOOT_L1=60; BOOT_L2=40; BOOT_L3=10; BOOT_L4=10; EVO_L2=8; EVO_L3=8; EVO_L4=8; EVAL_PER_LEVEL=3
    SFT_EPOCHS=1; SFT_MAX_STEPS=20
else
    WORK=${RSTAR_RECIPE_WORK:-default-model-work}
    OUT=${RSTAR_RECIPE_OUT:-models/tiny}
    EVOLVE_CONFIG=$HERE/evolve.json
fi

if [ -z "${RSTAR:-}" ]; then
    cargo build --release --bin rstar
    RSTAR="${CARGO_TARGET_DIR:-target}/release/rstar"
fi
mkdir -p "$WORK"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 ))s] $*" >&2; }
# step NAME OUTPUT CMD...: runs CMD unless OUTPUT exists.
step() {
    local name=$1 out=$2
    shift 2
    if [ -e "$out" ]; then
        say "$name: $out exists, skipped"
    else
        say "$name ..."
        local t=$(date +%s)
        "$@"
        say "$name done in $(( $(date +%s) - t ))s"
    fi
}

# 1. Problems. Seeds differ per file, so the sets are drawn independently.
gen() { # FILE LEVEL COUNT SEED [--solutions]
    "$RSTAR" gen-problems --level "$2" --count "$3" --seed "$4" --out "$1.tmp" ${5:-} && mv "$1.tmp" "$1"
}
gen_sets() {
    gen "$WORK/boot-l1.jsonl" 1 "$BOOT_L1" 101 --solutions
    gen "$WORK/boot-l2.jsonl" 2 "$BOOT_L2" 102 --solutions
    gen "$WORK/boot-l3.jsonl" 3 "$BOOT_L3" 103 --solutions
    gen "$WORK/boot-l4.jsonl" 4 "$BOOT_L4" 104 --solutions
    cat "$WORK"/boot-l[1-4].jsonl > "$WORK/boot.jsonl.tmp"
    gen "$WORK/evo-l2.jsonl" 2 "$EVO_L2" 202
    gen "$WORK/evo-l3.jsonl" 3 "$EVO_L3" 203
    gen "$WORK/evo-l4.jsonl" 4 "$EVO_L4" 204
    cat "$WORK/evo-l2.jsonl" "$WORK/evo-l3.jsonl" "$WORK/evo-l4.jsonl" > "$WORK/evolve.jsonl"
    # Held-out: drawn with twice the count, then every question of the training sets is dropped
    # (small level-1 ranges repeat) and EVAL_PER_LEVEL are kept per level.
    for l in 1 2 3 4; do gen "$WORK/eval-l$l.jsonl" "$l" "$((2 * EVAL_PER_LEVEL))" "$((300 + l))"; done
    python3 - "$WORK" "$EVAL_PER_LEVEL" <<'PY'
import json, sys
work, keep = sys.argv[1], int(sys.argv[2])
seen = set()
for f in ("boot-l1", "boot-l2", "boot-l3", "boot-l4", "evo-l2", "evo-l3", "evo-l4"):
    seen |= {json.loads(l)["question"] for l in open(f"{work}/{f}.jsonl")}
with open(f"{work}/eval.jsonl", "w") as out:
    for l in (1, 2, 3, 4):
        rows = [r for r in open(f"{work}/eval-l{l}.jsonl") if json.loads(r)["question"] not in seen]
        out.writelines(rows[:keep])
PY
    mv "$WORK/boot.jsonl.tmp" "$WORK/boot.jsonl"
}
step "problems" "$WORK/boot.jsonl" gen_sets

# 2. The untrained model.
init() {
    "$RSTAR" init-model --data "$WORK/boot.jsonl" --out "$WORK/base.tmp" --seed 0 \
        --vocab-size "$VOCAB" --hidden-size "$HIDDEN" --layers "$LAYERS" --heads "$HEADS" \
        --kv-heads "$KV_HEADS" --intermediate-size "$INTERMEDIATE" \
        --max-position-embeddings "$MAX_POS"
    rm -rf "$WORK/base" && mv "$WORK/base.tmp" "$WORK/base"
}
step "init-model" "$WORK/base" init

# 3. Bootstrap SFT (round 0); resumable through its own checkpoint.
sft0() {
    local max=()
    [ -n "${SFT_MAX_STEPS:-}" ] && max=(--max-steps "$SFT_MAX_STEPS")
    "$RSTAR" train sft --model "$WORK/base" --data "$WORK/boot.jsonl" --out "$WORK/sft0.part" \
        --lr "$SFT_LR" --epochs "$SFT_EPOCHS" --batch-size "$SFT_BATCH" --seq-len "$SFT_SEQ_LEN" \
        --warmup-steps "$SFT_WARMUP" --schedule cosine --weight-decay 0.1 --seed 0 \
        --save-every 50 --resume "${max[@]}"
    rm -rf "$WORK/sft0.part/checkpoint"
    mv "$WORK/sft0.part" "$WORK/sft0"
}
step "bootstrap sft" "$WORK/sft0" sft0

# 4. Self-evolution (resumes stage by stage by itself).
say "evolve: $ROUNDS rounds, config $EVOLVE_CONFIG ..."
"$RSTAR" evolve --policy "$WORK/sft0" --data "$WORK/evolve.jsonl" --eval "$WORK/eval.jsonl" \
    --replay "$WORK/boot.jsonl" \
    --rounds "$ROUNDS" --workdir "$WORK/evolve" --config "$EVOLVE_CONFIG"
say "evolve done"

# 5. The default model.
if [ -z "$OUT" ]; then
    say "quick run: nothing copied (set RSTAR_RECIPE_OUT to copy); work in $WORK"
    exit 0
fi
python3 - "$WORK" "$OUT" "$HERE/search.toml" <<'EOF'
import json, os, shutil, sys
work, out, search = sys.argv[1:4]
rounds = json.load(open(os.path.join(work, "evolve", "rounds.json")))
last = rounds[-1]["round"]
done = json.load(open(os.path.join(work, "evolve", f"round-{last}", "eval.done")))
policy, ppm = done["policy"], done["ppm"]
os.makedirs(out, exist_ok=True)
keep = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "generation_config.json", "value_head.safetensors")
for src, name in ((policy, "policy"), (ppm, "ppm")):
    if src is None:
        continue
    dst = os.path.join(out, name)
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    for f in keep:
        if os.path.isfile(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), dst)
shutil.copy(search, os.path.join(out, "search.toml"))
# The held-out problems of the table (never trained on), for `rstar eval` and the tests.
shutil.copy(os.path.join(work, "eval.jsonl"), os.path.join(out, "heldout.jsonl"))
shutil.copy(os.path.join(work, "evolve", "rounds.png"), os.path.join(out, "rounds.png"))
json.dump({"rounds": rounds, "policy": policy, "ppm": ppm},
          open(os.path.join(out, "rounds.json"), "w"), indent=2)
pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"
lines = ["| round | synthesis | coverage (train) | SFT examples | PPM pairs | greedy pass@1 (held-out) | PPM-guided MCTS (held-out) |",
         "|---|---|---|---|---|---|---|"]
for r in rounds:
    if r["round"] == 0:
        lines.append(f"| 0 | bootstrap SFT | - | - | - | {pct(r['greedy_pass1'])} ({r['greedy_correct']}/{r['heldout']}) | - |")
        continue
    guided = "-" if r["ppm_correct"] is None else f"{pct(r['ppm_accuracy'])} ({r['ppm_correct']}/{r['heldout']})"
    lines.append(f"| {r['round']} | {r['mode']} | {pct(r['coverage'])} ({r['solved']}/{r['problems']}) "
                 f"| {r['sft_examples']} | {r['pairs']} | {pct(r['greedy_pass1'])} ({r['greedy_correct']}/{r['heldout']}) "
                 f"| {guided} |")
open(os.path.join(out, "rounds.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
du -sh "$OUT"/* >&2
say "default model written to $OUT"
