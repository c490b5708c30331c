#!/usr/bin/env bash
# Regenerate the sample files. The .nni files are decoder test vectors: once
# released they must keep decoding to the stored PNGs (tests/test_samples.py);
# regenerate them only together with a format version change, after moving
# the old ones to tests/vectors/ (vN-<name>) so that they stay tested.
set -euo pipefail
cd "$(dirname "$0")"
nncodec encode kodim23-384x256.png -o kodim23-1kb.nni --budget 1kb
nncodec decode kodim23-1kb.nni -o kodim23-1kb.decoded.png
nncodec decode kodim23-1kb.nni -o kodim23-1kb.x2.png --scale 2
nncodec encode kodim03-grey-192x128.png -o kodim03-grey-400b.nni --budget 400
nncodec decode kodim03-grey-400b.nni -o kodim03-grey-400b.decoded.png
nncodec encode kodim03-grey-192x128.png -o kodim03-grey-1kb.nni --budget 1kb
nncodec decode kodim03-grey-1kb.nni -o kodim03-grey-1kb.decoded.png
