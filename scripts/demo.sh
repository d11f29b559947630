#!/usr/bin/env bash
# The demo, on a fresh machine: set up, fetch the emoji data set, pack it into lmdb/, draw the figures
# of the pretrained models (pretrained/: the StyleGAN's samples, style mixing and noise), train the
# fast DCGAN recipe (configs/fast-cpu.yaml) at 32 px, score its samples and write its figures to
# results/. StyleGAN's own demo recipe trains too when given minutes: a few minutes of it draw only
# colour blobs, so by default the demo spends them on DCGAN and shows the pretrained StyleGAN.
#   DEMO_MINUTES=6 DEMO_STYLEGAN_MINUTES=0 bash scripts/demo.sh   # training minutes (the defaults)
# Running it again continues the runs where they stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh" requirements.txt
MINUTES="${DEMO_MINUTES:-6}"
STYLEGAN_MINUTES="${DEMO_STYLEGAN_MINUTES:-0}"

say() {  # a demo line with the time since the demo started
  printf 'demo [%d:%02d]: %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"
}

train_or_resume() {  # NAME ARGS...: start run NAME, or continue it when it already has checkpoints
  local name="$1"; shift
  if [ -f "checkpoint/$name/latest" ]; then
    python train.py lmdb --name "$name" --resume "$@"
  else
    python train.py lmdb --name "$name" "$@"
  fi
}

bash scripts/get_emoji.sh
if [ -d lmdb ]; then
  say "lmdb/ exists; delete it to pack the images again"
else
  python prepare_data.py --out lmdb --sizes 8 16 32 64 --n_worker 2 dataset/emoji
fi

say "the pretrained models shipped in pretrained/, and their figures before any training:"
python generate.py --list --checkpoint-dir checkpoint
python - <<'PY' | while read -r name figures; do python generate.py -g "pretrained/$name" $figures </dev/null; done
from jgan import pretrained  # one line per model, StyleGAN first: its name and the figures its arch draws
for item in sorted(pretrained.read_manifest()["models"], key=lambda item: item["arch"] != "stylegan"):
    print(item["name"], "--mixing --noise --interpolate" if item["arch"] == "stylegan" else "--walk --interpolate")
PY

say "training DCGAN (configs/fast-cpu.yaml) at 32 px for $MINUTES minutes"
train_or_resume demo-dcgan --config configs/fast-cpu.yaml --size 32 --minutes "$MINUTES" --sample-every 500
python generate.py -g checkpoint/demo-dcgan --walk
say "SWD x1e3 of those samples against the emoji (2,048 vs 2,048; real vs real is about 7, noise 194):"
python scripts/evaluate.py lmdb -g checkpoint/demo-dcgan --n 2048

if [ "$STYLEGAN_MINUTES" != 0 ]; then
  say "training StyleGAN (configs/stylegan-demo.yaml, up to 16 px) for $STYLEGAN_MINUTES minutes"
  train_or_resume demo-stylegan --config configs/stylegan-demo.yaml --minutes "$STYLEGAN_MINUTES" --sample-every 250
  python generate.py -g checkpoint/demo-stylegan --mixing --noise --interpolate
fi
say "done; figures are in results/, sample grids in sample/, checkpoints in checkpoint/"
