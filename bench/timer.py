#!/usr/bin/env python3
"""Alternating whole-process timer: hotbak's own, for side-by-side ratios.

    timer.py [-n RUNS] [--drop-caches] [--alternate] [--pre 'SHELL'] [--bytes N] LABEL='CMD' LABEL2='CMD2' ...

Runs the commands in rotation (A B A B ...; with --alternate every other round in
reverse order, A B B A A B ..., so neither tool always runs after the other), each
under `bash -o pipefail -c`, so a failing stage of a pipe fails the run (and the script). Reports per command the median
wall time [min-max], CPU (user+sys of the whole process tree), the largest peak RSS of
any process in the tree, MB/s when --bytes is given, and the ratio of the first
command's median wall time to this one's (> 1 means faster than the first command).
Every round's ratio is computed within the round, so a shared machine's drift cancels.
"""
import argparse, os, statistics, subprocess, sys, time


def drop():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def once(cmd, pre, dropc):
    if pre:
        subprocess.run(["bash", "-c", pre], check=True)
    if dropc:
        drop()
    t0 = time.monotonic()
    p = subprocess.Popen(["bash", "-o", "pipefail", "-c", cmd], stdin=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if status != 0:
        sys.exit(f"command failed (status {status}): {cmd}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--pre", default="")
    ap.add_argument("--bytes", type=int, default=0)
    ap.add_argument("--alternate", action="store_true")
    ap.add_argument("cmds", nargs="+")
    a = ap.parse_args()
    cmds = [c.split("=", 1) for c in a.cmds]
    res = {l: [] for l, _ in cmds}
    ratios = {l: [] for l, _ in cmds}
    for r in range(a.n):
        order = cmds[::-1] if a.alternate and r % 2 else cmds
        walls = {}
        for label, cmd in order:
            w, c, rss = once(cmd, a.pre, a.drop_caches)
            res[label].append((w, c, rss))
            walls[label] = w
            print(f"round {r + 1} {label}: {w:.2f}s cpu {c:.2f}s rss {rss:.0f} MB", file=sys.stderr)
        base = walls[cmds[0][0]]
        for label, _ in cmds:
            ratios[label].append(base / walls[label])
    first = cmds[0][0]
    for label, _ in cmds:
        ws = [x[0] for x in res[label]]
        med = statistics.median(ws)
        cpu = statistics.median(x[1] for x in res[label])
        rss = max(x[2] for x in res[label])
        mbs = f" {a.bytes / med / 1e6:7.0f} MB/s" if a.bytes else ""
        rs = ratios[label]
        print(f"{label:<28} wall {med:7.2f}s [{min(ws):.2f}-{max(ws):.2f}]{mbs}  cpu {cpu:6.2f}s  peak RSS {rss:6.0f} MB"
              f"  speed vs {first}: {statistics.median(rs):.2f}x [{min(rs):.2f}-{max(rs):.2f}]")


if __name__ == "__main__":
    main()
