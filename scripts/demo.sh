#!/usr/bin/env bash
# The demo, on a fresh machine: set up, fetch the emoji data set, pack it into lmdb/, train WGANP
# and StyleGAN for a bounded time each, and write their figures to results/.
#   DEMO_MINUTES=5 bash scripts/demo.sh     # training minutes per model (default 5)
# Running it again continues both runs where they stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh" requirements.txt
MINUTES="${DEMO_MINUTES:-5}"

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
  echo "demo: lmdb/ exists; delete it to pack the images again"
else
  python prepare_data.py --out lmdb --sizes 8 16 32 64 --n_worker 2 dataset/emoji
fi

echo "demo: training WGANP at 64 px for $MINUTES minutes"
train_or_resume demo-wganp --arch wganp --minutes "$MINUTES" \
  --set model.ngf=32 --set model.ndf=32 --batch 32 --sample-every 50 --ckpt-every 200
python generate.py -g checkpoint/demo-wganp --walk

echo "demo: training StyleGAN (CPU preset, phases of 2,500 images so it grows 8 -> 32 px) for $MINUTES minutes"
train_or_resume demo-stylegan --arch stylegan --minutes "$MINUTES" --phase 2500 --max-size 32 --sample-every 50
python generate.py -g checkpoint/demo-stylegan --mixing --noise --interpolate
echo "demo: figures are in results/, sample grids in sample/, checkpoints in checkpoint/"
