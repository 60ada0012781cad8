#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the benchmark logs of `make bench` into a table and a plot.

Reads build/logs/<flavour>/<lane>.ktap.log of the base and the patched
(test) kernel, in which the benchmark binaries print
  # BENCH <phase> n=<N> total_ns=<T> per_file_ns=<P>
and writes build/bench/<lane>.md (a Markdown table, also printed) and
build/bench/<lane>-<phase>.png (cost per file against N, both kernels).
"""
import os
import re
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get('BUILD', os.path.join(TOP, 'build'))
FLAVOURS = ('base', 'test')
LINE = re.compile(r'# BENCH (\S+) n=(\d+) total_ns=(\d+) per_file_ns=(\d+)')


def read(flavour, lane):
    """{(phase, n): per-file ns} from one kernel's log."""
    path = os.path.join(BUILD, 'logs', flavour, f'{lane}.ktap.log')
    figures = {}
    with open(path) as f:
        for line in f:
            m = LINE.search(line)
            if m:
                figures[(m.group(1), int(m.group(2)))] = int(m.group(4))
    if not figures:
        sys.exit(f'{path}: no BENCH lines')
    return figures


def plot(lane, phase, rows, out):
    data = out + '.dat'
    with open(data, 'w') as f:
        for n, base, test in rows:
            f.write(f'{n} {base} {test}\n')
    script = f'''
set terminal pngcairo size 800,500
set output '{out}'
set title '{lane}: {phase} cost per file (QEMU -icount, guest ns = instructions)'
set xlabel 'files in the session (N)'
set ylabel 'ns per file'
set logscale x
set yrange [0:*]
set key top left
set grid
plot '{data}' using 1:2 with linespoints title 'base 7.3.4', \\
     '{data}' using 1:3 with linespoints title 'patched'
'''
    subprocess.run(['gnuplot'], input=script, text=True, check=True)


def main():
    lane = sys.argv[1] if len(sys.argv) > 1 else 'luo-bench'
    outdir = os.path.join(BUILD, 'bench')
    os.makedirs(outdir, exist_ok=True)
    base, test = (read(f, lane) for f in FLAVOURS)
    phases = sorted({p for p, _ in base}, key=['preserve', 'unpreserve'].index)
    lines = ['| phase | N | base ns/file | patched ns/file | patched/base |',
             '|---|---:|---:|---:|---:|']
    for phase in phases:
        rows = sorted((n, base[(p, n)], test[(p, n)]) for p, n in base if p == phase)
        for n, b, t in rows:
            lines.append(f'| {phase} | {n} | {b} | {t} | {t / b:.2f} |')
        plot(lane, phase, rows, os.path.join(outdir, f'{lane}-{phase}.png'))
    table = '\n'.join(lines) + '\n'
    with open(os.path.join(outdir, f'{lane}.md'), 'w') as f:
        f.write(table)
    print(table, end='')
    print(f'# plots: {outdir}/{lane}-*.png')


if __name__ == '__main__':
    main()
