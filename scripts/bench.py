#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the benchmark logs of `make bench` into tables and plots.

Usage: bench.py [LANE]    (default: luo-bench)

Reads build/logs/<flavour>/<lane>.ktap.log of the base and the patched
(test) kernel, and takes from it two forms of line that the benchmark
binaries print:

  # BENCH <phase> n=<N> total_ns=<T> per_file_ns=<P>
      A sweep: the cost per file of <phase> for N files (luo_bench).
      Table: one row per phase and N. Plot: build/bench/<lane>-<phase>.png,
      cost per file against N, both kernels.

  # BENCH <phase> <metric>=<value> unit=<unit> [<key>=<value>...]
      A figure: one value of <phase>, integer or decimal, in <unit>
      (gmem_bench). Optional keys after the unit describe the value:
      reps=<R> min=<v> max=<v> when it is the median of R runs.
      Table: one row per phase, base and patched value, patched/base, and
      the spread, the largest (max - min) / value of the two kernels.
      A figure that only one kernel reports (the patched kernel alone can
      do some things) has "-" for the other and "n/a" for the ratio.
      Plot: one per unit of PLOTS, build/bench/<lane>-<name>.png, a bar
      chart of the phases of that unit, both kernels, patched/base above
      each pair; other units (ratio) are in the table only.

Writes the tables to build/bench/<lane>.md and prints them. BUILD=<dir> in
the environment reads and writes <dir> instead of build/.
"""
import math
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paths import BUILD, logs_dir  # noqa: E402
# The base and the patched flavour, in that order (make bench BENCH_CONFIG=...
# sets them); results of another pair than the default go to their own
# directory, build/bench-<patched flavour>.
FLAVOURS = tuple(os.environ.get('BENCH_FLAVOURS', 'base,test').split(','))
SWEEP = re.compile(r'# BENCH (\S+) n=(\d+) total_ns=(\d+) per_file_ns=(\d+)\s*$')
FIGURE = re.compile(r'# BENCH (\S+) (\w+)=([0-9.]+) unit=(\S+)((?: \w+=[0-9.]+)*)\s*$')
# unit: (plot name, y axis label, log scale)
PLOTS = {
    'pages/s': ('throughput', 'pages per second (higher is better)', False),
    'ns': ('latency', 'ns, log scale (lower is better)', True),
}
KERNELS = "QEMU -icount shift=0,sleep=off, guest ns = instructions"


def number(text):
    return float(text) if '.' in text else int(text)


def read(flavour, lane):
    """({(phase, n): per-file ns}, {phase: figure}) from one kernel's log.

    A figure is a dict: metric, value, unit and the optional keys.
    """
    path = os.path.join(logs_dir(flavour), f'{lane}.ktap.log')
    sweeps, figures = {}, {}
    with open(path) as f:
        for line in f:
            m = SWEEP.search(line)
            if m:
                sweeps[(m.group(1), int(m.group(2)))] = int(m.group(4))
                continue
            m = FIGURE.search(line)
            if m:
                figure = {'metric': m.group(2), 'value': number(m.group(3)),
                          'unit': m.group(4)}
                for kv in m.group(5).split():
                    key, value = kv.split('=', 1)
                    figure[key] = number(value)
                figures[m.group(1)] = figure
    if not sweeps and not figures:
        sys.exit(f'{path}: no BENCH lines')
    return sweeps, figures


def gnuplot(script):
    subprocess.run(['gnuplot'], input=script, text=True, check=True)


def plot_sweep(lane, phase, rows, out):
    data = out + '.dat'
    with open(data, 'w') as f:
        for n, base, test in rows:
            f.write(f'{n} {base} {test}\n')
    gnuplot(f'''
set terminal pngcairo size 800,500
set output '{out}'
set title '{lane}: {phase} cost per file ({KERNELS})'
set xlabel 'files in the session (N)'
set ylabel 'ns per file'
set logscale x
set yrange [0:*]
set key top left
set grid
plot '{data}' using 1:2 with linespoints title 'base 7.3.4', \\
     '{data}' using 1:3 with linespoints title 'patched'
''')


def plot_figures(lane, unit, rows, out):
    """Bars of base and patched for each phase; NaN where a kernel has none."""
    name, ylabel, log = PLOTS[unit]
    data = out + '.dat'
    with open(data, 'w') as f:
        for phase, base, test in rows:
            f.write(f'{phase} {"NaN" if base is None else base} '
                    f'{"NaN" if test is None else test}\n')
    values = [v for _, b, t in rows for v in (b, t) if v is not None]
    # Bars of a log plot start at the bottom of the axis, not at 0.
    yrange = (f"set logscale y\nset format y '10^{{%L}}'\n"
              f'set yrange [{10 ** math.floor(math.log10(min(values)))}:*]'
              if log else f'set yrange [0:{1.1 * max(values)}]')
    gnuplot(f'''
set terminal pngcairo size {max(800, 70 * len(rows))},{560 + 8 * max(len(p) for p, _, _ in rows)}
set output '{out}'
set title '{lane}: {name} ({KERNELS})'
set ylabel '{ylabel}'
{yrange}
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by 90 right noenhanced
set key outside top center horizontal
set grid ytics
set datafile missing 'NaN'
# Above each pair of bars: patched/base.
plot '{data}' using 2:xtic(1) title 'base 7.3.4', \\
     '' using 3 title 'patched', \\
     '' using 0:($2 > $3 ? $2 : $3):(sprintf('%.3f', $3 / $2)) \\
        with labels offset 0,0.8 notitle
''')


def cell(value):
    if value is None:
        return '-'
    return f'{value:.3f}' if isinstance(value, float) else str(value)


def spread(*figures):
    """Largest (max - min) / value of the figures that have min and max."""
    s = [(f['max'] - f['min']) / f['value'] for f in figures
         if f and 'min' in f and 'max' in f and f['value']]
    return f'{100 * max(s):.1f}%' if s else ''


def sweep_table(lane, base, test, outdir):
    lines = ['| phase | N | base ns/file | patched ns/file | patched/base |',
             '|---|---:|---:|---:|---:|']
    phases = list(dict.fromkeys(p for p, _ in list(base) + list(test)))
    for phase in phases:
        rows = sorted((n, base[(p, n)], test[(p, n)])
                      for p, n in base if p == phase and (p, n) in test)
        for n, b, t in rows:
            lines.append(f'| {phase} | {n} | {b} | {t} | {t / b:.2f} |')
        plot_sweep(lane, phase, rows, os.path.join(outdir, f'{lane}-{phase}.png'))
    return lines


def figure_table(lane, base, test, outdir):
    lines = ['| phase | unit | base | patched | patched/base | spread |',
             '|---|---|---:|---:|---:|---:|']
    by_unit = {}
    # In the order the patched kernel reports them, which reports them all.
    for phase in dict.fromkeys(list(test) + list(base)):
        b, t = base.get(phase), test.get(phase)
        bv, tv = (f['value'] if f else None for f in (b, t))
        unit = (t or b)['unit']
        ratio = f'{tv / bv:.3f}' if bv and tv is not None else 'n/a'
        lines.append(f'| {phase} | {unit} | {cell(bv)} | {cell(tv)} | {ratio} '
                     f'| {spread(b, t)} |')
        by_unit.setdefault(unit, []).append((phase, bv, tv))
    for unit, rows in by_unit.items():
        if unit in PLOTS:
            plot_figures(lane, unit, rows,
                         os.path.join(outdir, f'{lane}-{PLOTS[unit][0]}.png'))
    return lines


def main():
    lane = sys.argv[1] if len(sys.argv) > 1 else 'luo-bench'
    outdir = os.path.join(BUILD, 'bench' if FLAVOURS == ('base', 'test')
                          else f'bench-{FLAVOURS[1]}')
    os.makedirs(outdir, exist_ok=True)
    (base_sweeps, base_figures), (test_sweeps, test_figures) = (
        read(f, lane) for f in FLAVOURS)
    tables = []
    if base_sweeps or test_sweeps:
        tables.append(sweep_table(lane, base_sweeps, test_sweeps, outdir))
    if base_figures or test_figures:
        tables.append(figure_table(lane, base_figures, test_figures, outdir))
    text = '\n\n'.join('\n'.join(t) for t in tables) + '\n'
    with open(os.path.join(outdir, f'{lane}.md'), 'w') as f:
        f.write(text)
    print(text, end='')
    print(f'# plots: {outdir}/{lane}-*.png')


if __name__ == '__main__':
    main()
