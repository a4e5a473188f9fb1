#!/usr/bin/env bash
# Download the cue-conflict stimuli of Geirhos et al. (ICLR 2019) from rgeirhos/texture-vs-shape
# (the dataset is CC BY 4.0, see its DATASET_LICENSE) and compute the human shape bias from the
# published human trials. Run from the repository root; destinations relative to the current folder:
#   ./dataset/cue-conflict/style-transfer-preprocessed-512/<shape>/<shape><n>-<texture><m>.png
#                                               the 1,280 stimuli (16 folders of 80)
#   ./dataset/cue-conflict/raw-data/style-transfer-512-nomask-experiment/*.csv   the trials
#   ./dataset/cue-conflict/human_shape_bias.json   the human observers' shape bias (written last)
# from one archive of the repository ($TEXTURE_VS_SHAPE_URL), of which only those two folders are
# unpacked; the archive is deleted afterwards.
#
# Usage: bash scripts/download_cue_conflict.sh [--force]
#   --force   download and unpack again even if the set is there (replaced only once complete).
#
# Environment:
#   TEXTURE_VS_SHAPE_URL  default https://codeload.github.com/rgeirhos/texture-vs-shape/tar.gz/refs/heads/master
#   CUE_CONFLICT_DIR      destination folder [./dataset/cue-conflict]
#   DOWNLOAD_TIMEOUT      connect timeout in seconds (default 15); a transfer that stalls for 60 s is aborted
#   PYTHON                [python] runs scripts/check_cue_conflict.py (the set's check, the human value)
#
# Offline or on any failure: one line on stderr, non-zero exit, and nothing left behind
# (pretrained_models/download_lib.sh), a set already there untouched.

set -u

prog=download_cue_conflict.sh
url="${TEXTURE_VS_SHAPE_URL:-https://codeload.github.com/rgeirhos/texture-vs-shape/tar.gz/refs/heads/master}"
dest="${CUE_CONFLICT_DIR:-./dataset/cue-conflict}"
timeout="${DOWNLOAD_TIMEOUT:-15}"
PYTHON="${PYTHON:-python}"
here="$(cd "$(dirname -- "$0")" && pwd)"
# shellcheck source=pretrained_models/download_lib.sh
source "$here/../pretrained_models/download_lib.sh" "$@"

done_file="$dest/human_shape_bias.json"
if [[ -e "$done_file" && "$force" -eq 0 ]]; then
    echo "$done_file already exists, skipping (use --force to download the set again)"
    exit 0
fi

# the folders this run creates (deepest last), removed again unless it completes
made=()
d="$dest"
while [[ ! -e "$d" && "$d" != "." && "$d" != "/" ]]; do
    made=("$d" "${made[@]+"${made[@]}"}")
    d="$(dirname -- "$d")"
done
archive="$dest/.texture-vs-shape.tar.gz"
staging=""
finish() {
    cleanup
    [[ -n "$staging" ]] && rm -rf -- "$staging"
    rm -f -- "$archive"
    local i
    for ((i = ${#made[@]} - 1; i >= 0; i--)); do
        rmdir -- "${made[i]}" 2>/dev/null || break
    done
    return 0
}
trap finish EXIT
fail() {
    echo "$prog: $*; nothing was written" >&2
    exit 1
}

force=1 fetch "$url" "$archive"  # a leftover archive is never trusted
staging="$(mktemp -d "$dest/.unpack.XXXXXX")" || fail "could not create a folder in $dest"
tar -xzf "$archive" -C "$staging" --wildcards '*/stimuli/style-transfer-preprocessed-512/*' \
    '*/raw-data/style-transfer-512-nomask-experiment/*' 2>/dev/null \
    || fail "$url is not an archive of rgeirhos/texture-vs-shape with stimuli/style-transfer-preprocessed-512 and raw-data/style-transfer-512-nomask-experiment"
top=("$staging"/*/)
top="${top[0]%/}"
summary="$("$PYTHON" "$here/check_cue_conflict.py" "$top/stimuli/style-transfer-preprocessed-512" \
    "$top/raw-data/style-transfer-512-nomask-experiment" "$top/human_shape_bias.json" 2>"$staging/error")" \
    || fail "$(tail -n 1 "$staging/error")"

# everything is checked: replace what was there, the human value last (it marks a complete set)
rm -f -- "$done_file"
rm -rf -- "$dest/style-transfer-preprocessed-512" "$dest/raw-data/style-transfer-512-nomask-experiment"
mkdir -p -- "$dest/raw-data"
mv -- "$top/stimuli/style-transfer-preprocessed-512" "$dest/" \
    && mv -- "$top/raw-data/style-transfer-512-nomask-experiment" "$dest/raw-data/" \
    && mv -- "$top/human_shape_bias.json" "$done_file" || fail "could not move the set into $dest"
made=()
echo "saved $dest/style-transfer-preprocessed-512 and $done_file: $summary"
