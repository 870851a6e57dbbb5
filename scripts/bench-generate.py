#!/usr/bin/env python3
"""`make bench-generate`: items per second of `dxr generate` (render only, render + restore) at
256² and 512² with 1 and 2 threads, where the time goes per stage, and the peak memory for a
manifest of 50 CTs against one of 2 (it must not grow with the CTs: one is resident at a time).

Usage: scripts/bench-generate.py DXR CT MASK [--views N] [--out DIR]
Each configuration runs once in a fresh folder; the machine's noise is in the figures (run it
twice to see it). Figures are printed as a Markdown table.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def run(cmd):
    """Runs `cmd`; returns (seconds, peak RSS in MiB, stderr)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    secs = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{err}")
    return secs, usage.ru_maxrss / 1024, err


STAGES = re.compile(
    r"(\d+) item\(s\) made.*?load CT ([\d.]+) s, render ([\d.]+) s, restore ([\d.]+) s, write ([\d.]+) s"
)


def manifest(path, ct, mask, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(f'{{"id": "ct{i:02d}", "ct": "{ct}", "mask": "{mask}"}}\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dxr")
    ap.add_argument("ct")
    ap.add_argument("mask")
    ap.add_argument("--views", type=int, default=4, help="views per CT in the speed rows")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    work = a.out or tempfile.mkdtemp(prefix="dxr-bench-generate-")
    os.makedirs(work, exist_ok=True)
    ct, mask = os.path.abspath(a.ct), os.path.abspath(a.mask)
    m1 = os.path.join(work, "one.jsonl")
    manifest(m1, ct, mask, 1)
    print(f"dxr generate on {os.cpu_count()} cores; CT {a.ct}; {a.views} views per run, "
          "nodules 3, restore = the default model with its own steps on the CPU (flex)\n")
    print("| size | threads | work | items/s | s/item | load CT s | render s/item | restore s/item | write s/item | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in (256, 512):
        for threads in (1, 2):
            for work_kind in ("render", "render + restore"):
                out = os.path.join(work, f"d-{size}-{threads}-{len(work_kind)}")
                shutil.rmtree(out, ignore_errors=True)
                cmd = [a.dxr, "generate", "--cts", m1, "--out", out, "--views", str(a.views),
                       "--size", str(size), "--nodules", "3", "--device", "cpu",
                       "--threads", str(threads)]
                if work_kind != "render":
                    cmd.append("--restore")
                secs, peak, err = run(cmd)
                m = STAGES.search(err)
                n, load, render, restore, write = (float(x) for x in m.groups())
                made = secs - load  # items/s once the CT is loaded
                print(f"| {size}² | {threads} | {work_kind} | {n / made:.2f} | {made / n:.3f} | "
                      f"{load:.1f} | {render / n:.3f} | {restore / n:.3f} | {write / n:.3f} | {peak:.0f} |")
                shutil.rmtree(out, ignore_errors=True)
    print("\nPeak memory against the number of CTs (256², 1 view per CT, render only, 2 threads):\n")
    print("| CTs | items | s | peak MiB |\n|---|---|---|---|")
    for n in (2, 50):
        m = os.path.join(work, f"m{n}.jsonl")
        manifest(m, ct, mask, n)
        out = os.path.join(work, f"mem-{n}")
        shutil.rmtree(out, ignore_errors=True)
        secs, peak, _ = run([a.dxr, "generate", "--cts", m, "--out", out, "--views", "1",
                             "--size", "256", "--nodules", "3", "--device", "cpu", "--threads", "2"])
        print(f"| {n} | {n} | {secs:.1f} | {peak:.0f} |")
        shutil.rmtree(out, ignore_errors=True)
    if a.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
