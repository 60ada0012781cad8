#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the benchmark logs of `make bench` into tables and plots.

Usage: bench.py [LANE]    (default: luo-bench)

Reads build/logs/<flavour>/<lane>.ktap.log of the base and the patched
(test) kernel (for a kexec lane, <lane>-<binary>.ktap.log of each of its
binaries), and takes from it three forms of line that the benchmark
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

  # BENCH <phase> mib=<M> ns=<T>
      A size sweep: the cost of <phase> with M MiB of memory (the retrieve
      of a memfd of that size; the next kernel's boot with it preserved:
      retrieve_bench). Table: one row per phase and M; then one row per
      phase and kernel with the least-squares line through its points: ns
      per GiB, ns at 0, and what that predicts for 1 TiB. Plot:
      build/bench/<lane>-per-gib.png, ms against GiB, phases and kernels.

Writes the tables to build/bench/<lane>.md and prints them. BUILD=<dir> in
the environment reads and writes <dir> instead of build/.
"""
import glob
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
SIZED = re.compile(r'# BENCH (\S+) mib=(\d+) ns=(\d+)\s*$')
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


def lines_of(paths):
    for path in paths:
        with open(path) as f:
            yield from f


def read(flavour, lane):
    """({(phase, n): per-file ns}, {phase: figure}, {(phase, MiB): ns}) from
    one kernel's logs of the lane.

    A figure is a dict: metric, value, unit and the optional keys.
    """
    path = os.path.join(logs_dir(flavour), f'{lane}.ktap.log')
    paths = [path] if os.path.exists(path) else sorted(
        glob.glob(os.path.join(logs_dir(flavour), f'{lane}-*.ktap.log')))
    sweeps, figures, sized = {}, {}, {}
    for line in lines_of(paths):
        m = SIZED.search(line)
        if m:
            sized[(m.group(1), int(m.group(2)))] = int(m.group(3))
            continue
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
    if not sweeps and not figures and not sized:
        sys.exit(f'{path}: no BENCH lines')
    return sweeps, figures, sized


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


def fit(points):
    """Least-squares line through [(MiB, ns)]: (ns per GiB, ns at 0)."""
    n = len(points)
    xs = [m / 1024 for m, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0
    return slope, my - slope * mx


def plot_sized(lane, series, out):
    """ms against GiB: one line per phase and kernel."""
    plots = []
    for i, (title, points) in enumerate(series):
        data = f'{out}.{i}.dat'
        with open(data, 'w') as f:
            for m, v in points:
                f.write(f'{m / 1024} {v / 1e6}\n')
        plots.append(f"'{data}' using 1:2 with linespoints title '{title}'")
    gnuplot(f'''
set terminal pngcairo size 900,560
set output '{out}'
set title '{lane}: cost against preserved memory ({KERNELS})'
set xlabel 'GiB preserved'
set ylabel 'ms (guest instructions / 10^6)'
set yrange [0:*]
set key top left noenhanced
set grid
plot {", ".join(plots)}
''')


def sized_table(lane, base, test, outdir):
    lines = ['| phase | MiB | base ns | patched ns | patched/base |',
             '|---|---:|---:|---:|---:|']
    phases = list(dict.fromkeys(p for p, _ in list(test) + list(base)))
    for phase in phases:
        for mib in sorted({m for p, m in list(base) + list(test) if p == phase}):
            b, t = base.get((phase, mib)), test.get((phase, mib))
            ratio = f'{t / b:.3f}' if b and t is not None else 'n/a'
            lines.append(f'| {phase} | {mib} | {cell(b)} | {cell(t)} | {ratio} |')
    lines += ['', '| phase | kernel | ns per GiB | ns at 0 | 1 TiB predicted |',
              '|---|---|---:|---:|---:|']
    series = []
    for phase in phases:
        for name, figures in (('base 7.3.4', base), ('patched', test)):
            points = sorted((m, v) for (p, m), v in figures.items() if p == phase)
            if len(points) < 2:
                continue
            slope, at0 = fit(points)
            lines.append(f'| {phase} | {name} | {slope:.0f} | {at0:.0f} '
                         f'| {(at0 + 1024 * slope) / 1e9:.1f} s |')
            series.append((f'{phase}, {name}', points))
    plot_sized(lane, series, os.path.join(outdir, f'{lane}-per-gib.png'))
    return lines


def main():
    lane = sys.argv[1] if len(sys.argv) > 1 else 'luo-bench'
    outdir = os.path.join(BUILD, 'bench' if FLAVOURS == ('base', 'test')
                          else f'bench-{FLAVOURS[1]}')
    os.makedirs(outdir, exist_ok=True)
    (base_sweeps, base_figures, base_sized), (test_sweeps, test_figures, test_sized) = (
        read(f, lane) for f in FLAVOURS)
    tables = []
    if base_sized or test_sized:
        tables.append(sized_table(lane, base_sized, test_sized, outdir))
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
