#!/usr/bin/env bash
# Download the pretrained SIGGRAPH 2017 colorization generators (latest_net_G.pth).
#
# Run from the repository root; destinations are relative to the current directory:
#   ./checkpoints/siggraph_retrained/latest_net_G.pth   <- $BASE_URL/pytorch.pth
#       weights retrained in PyTorch; use the default --mask_cent 0.5.
#   ./checkpoints/siggraph_caffemodel/latest_net_G.pth  <- $BASE_URL/caffemodel.pth
#       weights converted from the original Caffe model (recommended); they need --mask_cent 0.
#
# Usage: bash pretrained_models/download_siggraph_model.sh [--force]
#   --force   download again even if a destination file already exists (it is replaced only
#             once the new download is complete).
#
# Environment:
#   SIGGRAPH_MODEL_BASE_URL  base URL, default
#                            http://colorization.eecs.berkeley.edu/siggraph/models
#   DOWNLOAD_TIMEOUT         connect timeout in seconds (default 15); a transfer that stalls for
#                            60 s is aborted as well.
#
# Each file is downloaded (curl if present, else wget) into a temporary file next to its
# destination and renamed only on success, so a failed or interrupted download leaves no partial
# file (and no directory this script created). On failure the script prints one line on stderr
# and exits non-zero; files downloaded before the failure are kept.

set -u

prog=download_siggraph_model.sh
base_url="${SIGGRAPH_MODEL_BASE_URL:-http://colorization.eecs.berkeley.edu/siggraph/models}"
base_url="${base_url%/}"
timeout="${DOWNLOAD_TIMEOUT:-15}"
stall_s=60
force=0

die() {
    echo "$prog: $*" >&2
    exit 1
}

for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help)
            sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        *)
            echo "$prog: unknown argument '$arg' (usage: $prog [--force])" >&2
            exit 2
            ;;
    esac
done

if ! [[ "$timeout" =~ ^[0-9]+([.][0-9]+)?$ ]] || [[ "$timeout" =~ ^0+([.]0+)?$ ]]; then
    echo "$prog: DOWNLOAD_TIMEOUT must be a positive number of seconds, got '$timeout'" >&2
    exit 2
fi

if command -v curl >/dev/null 2>&1; then
    downloader=curl
elif command -v wget >/dev/null 2>&1; then
    downloader=wget
else
    die "neither curl nor wget is installed; nothing was written"
fi

# Cleanup state: the temporary file being written and the directories this script created
# for it (deepest last), removed again if the download does not complete.
tmp_file=""
new_dirs=()

cleanup() {
    if [[ -n "$tmp_file" ]]; then
        rm -f -- "$tmp_file"
        tmp_file=""
    fi
    local i
    for ((i = ${#new_dirs[@]} - 1; i >= 0; i--)); do
        rmdir -- "${new_dirs[i]}" 2>/dev/null || break
    done
    new_dirs=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# fetch URL DEST
fetch() {
    local url="$1" dest="$2"
    local dir rc d
    dir="$(dirname -- "$dest")"

    if [[ -e "$dest" && "$force" -eq 0 ]]; then
        echo "$dest already exists, skipping (use --force to download it again)"
        return 0
    fi

    # remember which directories are new, so that a failure can remove them again
    new_dirs=()
    d="$dir"
    while [[ ! -e "$d" && "$d" != "." && "$d" != "/" ]]; do
        new_dirs=("$d" "${new_dirs[@]+"${new_dirs[@]}"}")
        d="$(dirname -- "$d")"
    done
    mkdir -p -- "$dir" 2>/dev/null || die "could not create directory $dir; nothing was written"
    tmp_file="$(mktemp "$dir/.$(basename -- "$dest").part.XXXXXX" 2>/dev/null)" || {
        tmp_file=""
        cleanup
        die "could not create a temporary file in $dir; nothing was written"
    }

    echo "downloading $url -> $dest"
    rc=0
    if [[ "$downloader" == curl ]]; then
        local progress=(--silent)
        [[ -t 2 ]] && progress=(--progress-bar)
        curl --fail --location "${progress[@]}" --connect-timeout "$timeout" \
            --speed-limit 1 --speed-time "$stall_s" --output "$tmp_file" -- "$url" || rc=$?
    else
        wget --quiet --tries=1 --timeout="$timeout" --read-timeout="$stall_s" \
            --output-document="$tmp_file" -- "$url" || rc=$?
    fi
    local why=""
    if [[ "$rc" -ne 0 ]]; then
        why="offline or server down; $downloader exit status $rc"
    elif [[ ! -s "$tmp_file" ]]; then
        why="the server sent an empty file"
    fi
    if [[ -n "$why" ]]; then
        cleanup
        echo "$prog: could not download $url ($why); nothing was written" >&2
        exit 1
    fi

    # mktemp creates the file with mode 0600; give it the permissions a normal file would get
    chmod "$(printf '%o' $((0666 & ~0$(umask))))" -- "$tmp_file" 2>/dev/null
    mv -f -- "$tmp_file" "$dest" || { cleanup; die "could not move the download to $dest"; }
    tmp_file=""
    new_dirs=()
    echo "saved $dest"
}

fetch "$base_url/pytorch.pth" "./checkpoints/siggraph_retrained/latest_net_G.pth"
fetch "$base_url/caffemodel.pth" "./checkpoints/siggraph_caffemodel/latest_net_G.pth"
echo "done. Use checkpoints/siggraph_caffemodel with --mask_cent 0 (recommended), or"
echo "checkpoints/siggraph_retrained with the default --mask_cent 0.5."
