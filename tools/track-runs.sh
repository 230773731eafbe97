#!/bin/sh
# Run the randomised tracked pre-copy test N times (default 20): a writer on
# a mounted ext4 during the live pre-copy, then remount,ro and the final
# dirty pass; each run checks used blocks byte for byte, `reroot verify`,
# e2fsck -fn and tree hashes. CI runs 3. Needs root.
#   tools/track-runs.sh [N] [SEED]
set -eu
export REROOT_TRACK_RUNS="${1:-20}"
[ -n "${2:-}" ] && export REROOT_TRACK_SEED="$2"
exec cargo test --test integration track::precopy_under_churn -- --nocapture
