#!/usr/bin/env bash
# The prepared GPU check (issue 14): run as is on a machine with a CUDA GPU, in under 5 minutes.
#
#   benchmarks/gpu_check.sh [WORKDIR]        (default: a new folder under /tmp)
#
# Steps, each timed, each printing one summary line (full logs in WORKDIR/logs/):
#   1. a synthetic store (planted features), then SAE training (topk) on CUDA in one process;
#   2. the same training under torchrun with NCCL, one rank per GPU (needs 2+ GPUs: NCCL
#      refuses two ranks on one GPU; skipped with a note otherwise);
#   3. harvest of MiniLM (encoder.layer.3.output) on CPU in float32 (the reference) and on
#      CUDA with the model in float32, float16 and bfloat16; every GPU store is compared row
#      by row with the CPU one (same batch stream, so the same rows in the same order):
#      median and worst cosine, relative error of the norms;
#   4. with 2+ GPUs, the same harvest under torchrun (NCCL), compared up to row order;
#   5. the evidence passes (features, neurons, geometry over the float16 store and an SAE
#      trained on it; fidelity and ablate splicing that SAE into MiniLM) on CUDA; with 2+
#      GPUs the five passes again under torchrun (NCCL), compared with the one-process result.
# Throughputs are tokens (rows) per second as each command reports them.
#
# Without a CUDA GPU it refuses at once: one line on stderr, exit 3, nothing written.
# Environment: PYTHON (default .venv/bin/python, else python3), TOKENS (harvest rows,
# default 100000), SAE_TOKENS (training rows, default 4000000).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2>/dev/null || echo 0)
if [ "$NGPU" -lt 1 ]; then
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing was run" >&2
    exit 3
fi

TOKENS=${TOKENS:-100000}
SAE_TOKENS=${SAE_TOKENS:-4000000}
WORK=${1:-$(mktemp -d /tmp/polysemy-gpu-check.XXXXXX)}
mkdir -p "$WORK/logs"
SITE=encoder.layer.3.output
START=$SECONDS

step() { # step NAME CMD...: run, log, print the last JSON line's chosen fields and the time
    local name=$1
    shift
    local t0=$SECONDS
    if "$@" >"$WORK/logs/$name.out" 2>"$WORK/logs/$name.err"; then
        echo "[$name] ok in $((SECONDS - t0)) s: $(grep '^{' "$WORK/logs/$name.out" | tail -1 | "$PY" -c '
import json, sys
line = sys.stdin.read().strip()
d = json.loads(line) if line else {}
keys = ("tokens_per_second", "tokens_per_s", "rows", "world_size", "fvu", "l0", "dead_fraction",
        "embedding_cosine", "recovered_vs_zero", "n")
print(", ".join(f"{k} {d[k]}" for k in keys if k in d) or "(no summary)")')"
    else
        echo "[$name] FAILED after $((SECONDS - t0)) s; last lines of $WORK/logs/$name.err:"
        tail -5 "$WORK/logs/$name.err"
        FAILED=1
    fi
}
FAILED=0

"$PY" - <<EOF
import torch, platform
p = torch.cuda.get_device_properties(0)
print(f"gpu_check: {torch.cuda.device_count()} x {p.name} ({p.total_memory / 2**30:.0f} GiB), "
      f"torch {torch.__version__}, CUDA {torch.version.cuda}, python {platform.python_version()}")
print("work folder: $WORK")
EOF

# 1-2. SAE training on CUDA.
step synth "$PY" -m polysemy synth --n-features 4096 --d-in 256 --active 16 \
    --tokens 1000000 --json --out "$WORK/synth"
SAE_FLAGS=(--acts "$WORK/synth" --arch topk --d-sae 4096 --k 16 --tokens "$SAE_TOKENS" --batch-size 4096 --json)
step sae-cuda "$PY" -m polysemy sae train "${SAE_FLAGS[@]}" --device cuda --out "$WORK/sae-cuda"
if [ "$NGPU" -ge 2 ]; then
    step sae-torchrun-nccl "$PY" -m torch.distributed.run --nproc-per-node "$NGPU" \
        -m polysemy sae train "${SAE_FLAGS[@]}" --device cuda --out "$WORK/sae-ddp"
else
    echo "[sae-torchrun-nccl] skipped: 1 GPU (NCCL needs one GPU per rank)"
fi

# 3. Harvest: CPU float32 reference, then CUDA in three model dtypes.
H_FLAGS=(harvest --corpus pydocs --site "$SITE" --tokens "$TOKENS" --dtype float32 --json)
step harvest-cpu-fp32 "$PY" -m polysemy "${H_FLAGS[@]}" --device cpu --out "$WORK/h-cpu"
for dt in float32 float16 bfloat16; do
    step "harvest-cuda-$dt" "$PY" -m polysemy "${H_FLAGS[@]}" --device cuda \
        --model-dtype "$dt" --out "$WORK/h-cuda-$dt"
done
if [ "$NGPU" -ge 2 ]; then
    step harvest-torchrun-nccl "$PY" -m torch.distributed.run --nproc-per-node "$NGPU" \
        -m polysemy "${H_FLAGS[@]}" --device cuda --model-dtype float16 --out "$WORK/h-ddp"
else
    echo "[harvest-torchrun-nccl] skipped: 1 GPU (NCCL needs one GPU per rank)"
fi
"$PY" - "$WORK" <<'EOF' || FAILED=1
import sys
from pathlib import Path
import torch
from polysemy.activations.store import ActivationStore
work = Path(sys.argv[1])
if not (work / "h-cpu" / "manifest.json").is_file():
    sys.exit("[agreement] no CPU reference store")
ref = ActivationStore(work / "h-cpu")
x = ref.read(0, ref.rows)
def agree(name, store, order=None):
    y = store.read(0, store.rows)
    if order is not None:
        y = y[order]
    cos = torch.nn.functional.cosine_similarity(x, y, dim=1)
    rel = ((y.norm(dim=1) - x.norm(dim=1)).abs() / x.norm(dim=1)).max()
    print(f"[agreement] {name} vs cpu float32, {store.rows} rows: cosine median "
          f"{cos.median():.6f}, worst {cos.min():.6f}; worst relative norm error {rel:.2e}")
for dt in ("float32", "float16", "bfloat16"):
    path = work / f"h-cuda-{dt}"
    if (path / "manifest.json").is_file():
        s = ActivationStore(path)
        same = torch.equal(s.doc, ref.doc) and torch.equal(s.pos, ref.pos)
        print(f"[agreement] cuda {dt}: traces {'identical' if same else 'DIFFER'}")
        agree(f"cuda {dt}", s)
ddp = work / "h-ddp"
if (ddp / "manifest.json").is_file():
    s = ActivationStore(ddp)
    key = lambda t: torch.argsort(t.doc * 1_000_000 + t.pos.long())
    a, b = key(ref), key(s)
    same = torch.equal(ref.doc[a], s.doc[b]) and torch.equal(ref.pos[a], s.pos[b])
    print(f"[agreement] torchrun float16: traces up to row order {'identical' if same else 'DIFFER'}")
    x = x[a]
    agree("torchrun float16 (sorted by doc, pos)", s, b)
EOF

# 5. Evidence passes on CUDA over the float16 store, with an SAE trained on it.
if [ -f "$WORK/h-cuda-float16/manifest.json" ]; then
    step sae-minilm "$PY" -m polysemy sae train --acts "$WORK/h-cuda-float16" --arch topk \
        --d-sae 3072 --k 32 --tokens 400000 --batch-size 4096 --device cuda --json \
        --out "$WORK/sae-minilm"
    # Flags of each pass: the store passes read the store, fidelity and ablate run MiniLM.
    pass_flags() {
        case "$1" in
            fidelity) echo "--site $SITE --examples 500" ;;
            ablate) echo "--site $SITE --examples 200 --targets feature:0,feature:1,neuron:0 --random 19" ;;
            *) echo "--acts $WORK/h-cuda-float16" ;;
        esac
    }
    for kind in features neurons geometry fidelity ablate; do
        # shellcheck disable=SC2046  # the flags split into words on purpose
        step "analyze-$kind" "$PY" -m polysemy analyze "$kind" --sae "$WORK/sae-minilm" \
            $(pass_flags "$kind") --device cuda --json --out "$WORK/analyses/$kind"
    done
    if [ "$NGPU" -ge 2 ]; then
        for kind in features neurons geometry fidelity ablate; do
            # shellcheck disable=SC2046
            step "analyze-$kind-torchrun-nccl" "$PY" -m torch.distributed.run \
                --nproc-per-node "$NGPU" -m polysemy analyze "$kind" --sae "$WORK/sae-minilm" \
                $(pass_flags "$kind") --device cuda --json --out "$WORK/analyses/$kind-ddp"
        done
        "$PY" - "$WORK/analyses" <<'EOF' || FAILED=1
import sys
from pathlib import Path
from safetensors.torch import load_file
for kind in ("features", "neurons", "geometry", "fidelity", "ablate"):
    worst = 0.0
    for f in sorted(Path(sys.argv[1], kind).glob("*.safetensors")):
        a, b = load_file(str(f)), load_file(str(Path(sys.argv[1], f"{kind}-ddp", f.name)))
        worst = max([worst] + [float((a[k].double() - b[k].double()).abs().max()) for k in a])
    print(f"[agreement] {kind} pass, torchrun vs one process: worst difference {worst:.2e}")
EOF
    else
        echo "[analyze-*-torchrun-nccl] skipped: 1 GPU (NCCL needs one GPU per rank)"
    fi
fi

echo "gpu_check: done in $((SECONDS - START)) s; $([ "$FAILED" = 0 ] && echo 'every step passed' || echo 'SOME STEPS FAILED')"
exit "$FAILED"
