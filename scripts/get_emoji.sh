#!/usr/bin/env bash
# Download the 3,786 Google (Noto) emoji, 64x64 PNG with alpha, into dataset/emoji/.
#
#     bash scripts/get_emoji.sh && python prepare_data.py --out lmdb dataset/
#
# The images come from the npm package emoji-datasource-google (iamcal/emoji-data); the Google
# emoji images are under the Apache License 2.0 (https://github.com/googlefonts/noto-emoji).
# Running it again when dataset/emoji/ is complete does nothing.
set -euo pipefail

PACKAGE="emoji-datasource-google@16.0.0"
EXPECTED=3786
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$REPO/dataset/emoji"

count_pngs() {
    find "$1" -maxdepth 1 -type f -name '*.png' 2>/dev/null | wc -l
}

if [ "$(count_pngs "$DEST")" -eq "$EXPECTED" ]; then
    echo "get_emoji.sh: $DEST already holds the $EXPECTED emoji; nothing to do"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "get_emoji.sh: npm is not installed; install Node.js and npm (apt-get install npm) and run again" >&2
    exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "get_emoji.sh: downloading $PACKAGE"
(cd "$WORK" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$WORK"/emoji-datasource-google-*.tgz -C "$WORK" package/img/google/64

FOUND="$(count_pngs "$WORK/package/img/google/64")"
if [ "$FOUND" -ne "$EXPECTED" ]; then
    echo "get_emoji.sh: $PACKAGE holds $FOUND emoji instead of $EXPECTED; check the package version" >&2
    exit 1
fi

mkdir -p "$REPO/dataset"
rm -rf "$DEST"
mv "$WORK/package/img/google/64" "$DEST"
echo "get_emoji.sh: wrote $EXPECTED emoji (Apache-2.0, Google Noto Emoji) to $DEST"
