#!/usr/bin/env bash
# Download the pretrained AdaIN networks used by make_stylized_dataset.py (the files that
# bethgelab/stylize-datasets and Stylized-ImageNet use, published by naoto0804/pytorch-AdaIN):
#
# Run from the repository root; destinations are relative to the current directory:
#   ./pretrained_models/adain/vgg_normalised.pth  <- $BASE_URL/vgg_normalised.pth  (encoder, ~80 MB)
#   ./pretrained_models/adain/decoder.pth         <- $BASE_URL/decoder.pth         (decoder, ~14 MB)
#
# Usage: bash pretrained_models/download_adain_models.sh [--force]
#   --force   download again even if a destination file already exists (it is replaced only
#             once the new download is complete).
#
# Environment:
#   ADAIN_MODEL_BASE_URL  base URL, default
#                         https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0
#   DOWNLOAD_TIMEOUT      connect timeout in seconds (default 15); a transfer that stalls for
#                         60 s is aborted as well.
#
# A failed or interrupted download leaves no partial file (pretrained_models/download_lib.sh);
# the script then prints one line on stderr and exits non-zero.

set -u

prog=download_adain_models.sh
base_url="${ADAIN_MODEL_BASE_URL:-https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0}"
base_url="${base_url%/}"
timeout="${DOWNLOAD_TIMEOUT:-15}"
# shellcheck source=pretrained_models/download_lib.sh
source "$(dirname -- "$0")/download_lib.sh" "$@"

fetch "$base_url/vgg_normalised.pth" "./pretrained_models/adain/vgg_normalised.pth"
fetch "$base_url/decoder.pth" "./pretrained_models/adain/decoder.pth"
echo "done. make_stylized_dataset.py reads them from ./pretrained_models/adain/ by default."
