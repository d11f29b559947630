#!/usr/bin/env bash
# Download the 3,786 emoji of one style, 64x64 PNG with alpha:
#
#     bash scripts/get_emoji.sh            # Google (Noto) style into dataset/emoji/
#     bash scripts/get_emoji.sh twitter    # Twitter (Twemoji) style into dataset/emoji-twitter/
#     python prepare_data.py --out lmdb dataset/emoji
#
# The images come from the npm packages emoji-datasource-google and emoji-datasource-twitter
# (iamcal/emoji-data). The Google emoji images are under the Apache License 2.0
# (https://github.com/googlefonts/noto-emoji); Twemoji is © Twitter, Inc. and other contributors,
# under CC-BY 4.0 (https://github.com/twitter/twemoji). prepare_data.py composites them on white.
# Running it again when the folder is complete does nothing.
set -euo pipefail

STYLE="${1:-google}"
case "$STYLE" in
    google)  DEST_NAME="emoji";         LICENCE="Apache-2.0, Google Noto Emoji" ;;
    twitter) DEST_NAME="emoji-twitter"; LICENCE="CC-BY 4.0, Twemoji by Twitter, Inc. and other contributors" ;;
    *) echo "get_emoji.sh: unknown style '$STYLE'; choose google or twitter" >&2; exit 2 ;;
esac
PACKAGE="emoji-datasource-$STYLE@16.0.0"
EXPECTED=3786
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$REPO/dataset/$DEST_NAME"

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
tar -xzf "$WORK"/emoji-datasource-"$STYLE"-*.tgz -C "$WORK" "package/img/$STYLE/64"

FOUND="$(count_pngs "$WORK/package/img/$STYLE/64")"
if [ "$FOUND" -ne "$EXPECTED" ]; then
    echo "get_emoji.sh: $PACKAGE holds $FOUND emoji instead of $EXPECTED; check the package version" >&2
    exit 1
fi

mkdir -p "$REPO/dataset"
rm -rf "$DEST"
mv "$WORK/package/img/$STYLE/64" "$DEST"
echo "get_emoji.sh: wrote $EXPECTED emoji ($LICENCE) to $DEST"
