#!/bin/sh
# The read-only window against the used size: `reroot demo --data SIZE
# --churn RATE --json` for each SIZE, RUNS times, interleaved; prints one
# line per run (window, of which grow, bytes copied inside the window,
# pre-copy rounds, tracking). Not a timed test: compare the sizes' medians.
#   tools/bench-window.sh [RUNS] [RATE] [SIZE...]   (defaults: 2 4M 256M 2G)
set -eu
runs="${1:-2}"; rate="${2:-4M}"; shift 2 2>/dev/null || shift $#
sizes="${*:-256M 2G}"
exe="${REROOT:-target/release/reroot}"
out="$(mktemp -d /var/tmp/bench-window.XXXXXX)"
echo "size  run  window_s  grow_s  window_minus_grow_s  window_bytes  rounds  tracking"
i=1
while [ "$i" -le "$runs" ]; do
  for size in $sizes; do
    f="$out/$size-$i.json"
    "$exe" demo --data "$size" --churn "$rate" --json >"$f" 2>"$out/$size-$i.err" || true
    python3 - "$f" "$size" "$i" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); m = r.get("migrate") or {}
st = {s["stage"]: (s.get("seconds") or 0.0) for s in m.get("stages", [])}
w = m.get("read_only_window_seconds") or float("nan")
print(f'{sys.argv[2]:5} {sys.argv[3]:>3}  {w:8.3f}  {st.get("grow", 0):6.3f}  {w - st.get("grow", 0):19.3f}  '
      f'{m.get("window_bytes", 0):12d}  {m.get("precopy_rounds", 0):6d}  {m.get("write_tracking")}'
      + ("" if r.get("ok") else "  (demo FAILED)"))
PY
  done
  i=$((i + 1))
done
echo "reports in $out"
