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
# shellcheck source=pretrained_models/download_lib.sh
source "$(dirname -- "$0")/download_lib.sh" "$@"

fetch "$base_url/pytorch.pth" "./checkpoints/siggraph_retrained/latest_net_G.pth"
fetch "$base_url/caffemodel.pth" "./checkpoints/siggraph_caffemodel/latest_net_G.pth"
echo "done. Use checkpoints/siggraph_caffemodel with --mask_cent 0 (recommended), or"
echo "checkpoints/siggraph_retrained with the default --mask_cent 0.5."
