#!/usr/bin/env bash
# The demo, on a fresh machine: set up, fetch the emoji data set, pack it into lmdb/, then train two
# models side by side, one core each: the fast DCGAN recipe (configs/fast-cpu.yaml) at 32 px, whose
# samples it scores, and StyleGAN's demo recipe (configs/stylegan-demo.yaml, 16 px); their figures go
# to results/. Side by side because Jittor compiles each run's kernels on one core: on a fresh clone
# that takes minutes, during which the other core trains. Two cores: about 15 minutes from a fresh clone.
#   DEMO_MINUTES=6.5 DEMO_STYLEGAN_MINUTES=6 bash scripts/demo.sh   # training minutes (the defaults)
# Running it again continues both runs where they stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh" requirements.txt
MINUTES="${DEMO_MINUTES:-6.5}"
STYLEGAN_MINUTES="${DEMO_STYLEGAN_MINUTES:-6}"
STYLEGAN_LOG=checkpoint/demo-stylegan.log

say() {  # a demo line with the time since the demo started
  printf 'demo [%d:%02d]: %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"
}

train_or_resume() {  # NAME ARGS...: start run NAME, or continue it when it already has checkpoints
  local name="$1"; shift
  if [ -f "checkpoint/$name/latest" ]; then
    OMP_NUM_THREADS=1 python train.py lmdb --name "$name" --resume "$@"
  else
    OMP_NUM_THREADS=1 python train.py lmdb --name "$name" "$@"
  fi
}

stop_stylegan() {  # on Ctrl-C or an error: the background run stops with a checkpoint
  if [ -n "${STYLEGAN_PID:-}" ] && kill -0 "$STYLEGAN_PID" 2>/dev/null; then
    kill -INT -- -"$STYLEGAN_PID" 2>/dev/null || true
    wait "$STYLEGAN_PID" 2>/dev/null || true
  fi
}

bash scripts/get_emoji.sh
if [ -d lmdb ]; then
  say "lmdb/ exists; delete it to pack the images again"
else
  python prepare_data.py --out lmdb --sizes 8 16 32 64 --n_worker 2 dataset/emoji
fi
python -c "from jgan import runtime; runtime.init()"   # Jittor's core, compiled once before both runs need it

mkdir -p checkpoint
say "training StyleGAN (configs/stylegan-demo.yaml, up to 16 px) for $STYLEGAN_MINUTES minutes on one core; log: $STYLEGAN_LOG"
trap stop_stylegan EXIT
set -m   # a job of its own, which (unlike a plain background job) a Ctrl-C, relayed by stop_stylegan, stops
train_or_resume demo-stylegan --config configs/stylegan-demo.yaml --minutes "$STYLEGAN_MINUTES" \
  --sample-every 250 --no-progress > "$STYLEGAN_LOG" 2>&1 &
STYLEGAN_PID=$!
set +m

say "training DCGAN (configs/fast-cpu.yaml) at 32 px for $MINUTES minutes on the other core"
train_or_resume demo-dcgan --config configs/fast-cpu.yaml --size 32 --minutes "$MINUTES" --sample-every 500
python generate.py -g checkpoint/demo-dcgan --walk
say "SWD x1e3 of those samples against the emoji (2,048 vs 2,048; real vs real is about 7, noise 194):"
python scripts/evaluate.py lmdb -g checkpoint/demo-dcgan --n 2048

say "waiting for StyleGAN"
wait "$STYLEGAN_PID" || { echo "demo: the StyleGAN run failed; see $STYLEGAN_LOG" >&2; exit 1; }
STYLEGAN_PID=
tail -n 1 "$STYLEGAN_LOG"
python generate.py -g checkpoint/demo-stylegan --mixing --noise --interpolate
say "done; figures are in results/, sample grids in sample/, checkpoints in checkpoint/"
