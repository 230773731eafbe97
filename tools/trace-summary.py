#!/usr/bin/env python3
"""trace-summary.py - sum up a `reroot copy|verify --trace FILE` timeline.

Usage: trace-summary.py FILE [N_BYTES READ_MBps WRITE_MBps]

Prints each phase's duration, and per pass: time to the first completed
read (ramp-up), from the last read to the end (drain), the share of the
pass with at least one read in flight, one write in flight, and both at
once (overlap), and the I/O thread's total wait in reaps. With the fio
limits given, also N/R + N/W and the ratio of the whole run to it.
"""
import json
import sys


def busy(intervals):
    """Total length of the union of (start, end) intervals."""
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def overlap(a, b):
    """Length of the intersection of two interval unions."""
    def union(iv):
        out = []
        for s, e in sorted(iv):
            if out and s <= out[-1][1]:
                out[-1][1] = max(out[-1][1], e)
            else:
                out.append([s, e])
        return out
    ua, ub = union(a), union(b)
    i = j = total = 0
    while i < len(ua) and j < len(ub):
        s = max(ua[i][0], ub[j][0])
        e = min(ua[i][1], ub[j][1])
        if e > s:
            total += e - s
        if ua[i][1] < ub[j][1]:
            i += 1
        else:
            j += 1
    return total


def main():
    recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    end = max(r["t_us"] for r in recs)
    phases, open_ = [], {}
    for r in recs:
        if r["ev"] == "phase_start":
            open_[r["name"]] = r["t_us"]
        elif r["ev"] == "phase_end":
            s = open_.pop(r["name"], None)
            if s is not None:
                phases.append((r["name"], s, r["t_us"]))
    print(f"total (to the last event) {end / 1e6:.3f} s")
    last = 0
    for name, s, e in phases:
        gap = s - last
        print(f"  {name:<15} {s / 1e6:8.3f} .. {e / 1e6:8.3f}  {((e - s) / 1e6):7.3f} s"
              + (f"   (gap before: {gap / 1e3:.1f} ms)" if gap > 1000 else ""))
        last = e
    for name, s, e in phases:
        inside = [r for r in recs if s <= r["t_us"] <= e]
        reads, writes, pend = [], [], {}
        for r in inside:
            ev = r["ev"]
            if ev in ("read_submit", "write_submit"):
                pend[(ev[0], r["chunk"], r["dev"])] = r["t_us"]
            elif ev == "read_done":
                t0 = pend.pop(("r", r["chunk"], r["dev"]), None)
                if t0 is not None:
                    reads.append((t0, r["t_us"]))
            elif ev == "write_done":
                # Writes are tagged with the target mask on submit, 255 on completion.
                key = next((k for k in pend if k[0] == "w" and k[1] == r["chunk"]), None)
                if key:
                    writes.append((pend.pop(key), r["t_us"]))
        if not reads and not writes:
            continue
        dur = max(e - s, 1)
        first_read = min((d for _, d in reads), default=s) - s
        last_read = max((d for _, d in reads), default=e)
        wait = sum(r["wait_us"] for r in inside if r["ev"] == "reap")
        print(f"{name}: {len(reads)} reads, {len(writes)} writes; ramp-up {first_read / 1e3:.1f} ms, "
              f"drain after the last read {(e - last_read) / 1e3:.1f} ms")
        print(f"  reads in flight {100 * busy(reads) / dur:.0f} %, writes {100 * busy(writes) / dur:.0f} %, "
              f"both {100 * overlap(reads, writes) / dur:.0f} %; I/O thread waited {wait / 1e3:.0f} ms in reaps")
    if len(sys.argv) == 5:
        n, r, w = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
        limit = n / 1e6 / r + n / 1e6 / w
        print(f"N/R + N/W = {limit:.3f} s; this run {end / 1e6 / limit:.2f}x")


if __name__ == "__main__":
    main()
