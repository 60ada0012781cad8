#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Run lanes again and again, optionally under a background load on the
host, and table each case's pass rate: flake hunting as a command.

Usage: soak.py [--runs N] [--flavour F,...] [--load cpu=N,mem=SIZE]
               [--load-seconds S] [--accel tcg|kvm] [LANE...]

Each run is one `run.py --flavour F LANE...`; its output, results and (when
something failed) its logs are kept in build/soak/<date>/run-<i>/. The
load, when asked for, is started before the first run and stopped after the
last one, or after --load-seconds, whichever comes first; a load process
also stops when this script dies. cpu=N: N processes that spin; mem=SIZE
(e.g. 4G): one process that keeps SIZE of memory and writes a byte of every
page of it, over and over. The table (pass rate per case, failures first)
is printed and written to build/soak/<date>/table.md (per lane: the runs
in which every case passed; then each case that failed at least once),
every case's counts to cases.tsv, the detail of every failure to
failures.txt.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paths  # noqa: E402

PAGE = 4096
SIZES = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}


def size(text):
    unit = text[-1:].upper()
    return int(text[:-1]) * SIZES[unit] if unit in SIZES else int(text)


def parse_load(spec):
    """'cpu=2,mem=4G' -> {'cpu': 2, 'mem': 4 GiB}; '' -> {}."""
    load = {}
    for item in filter(None, spec.split(',')):
        key, _, value = item.partition('=')
        if key == 'cpu':
            load['cpu'] = int(value)
        elif key == 'mem':
            load['mem'] = size(value)
        else:
            sys.exit(f'error: unknown load {item!r} (have: cpu=N, mem=SIZE)')
    return load


def load_worker(kind, amount, deadline, parent):
    """One load process: spin, or keep `amount` bytes and write every page,
    until the deadline or until its parent is gone."""
    os.nice(0)
    buf = bytearray(amount) if kind == 'mem' else None
    i = 0
    while time.monotonic() < deadline and os.getppid() == parent:
        if buf is None:
            for _ in range(200000):
                i += 1
        else:
            for off in range(0, amount, PAGE):
                buf[off] = (buf[off] + 1) & 0xff
    os._exit(0)


def start_load(load, seconds):
    """Fork the load processes; return their pids."""
    deadline, parent, pids = time.monotonic() + seconds, os.getpid(), []
    work = [('cpu', 0)] * load.get('cpu', 0) + ([('mem', load['mem'])] if 'mem' in load else [])
    for kind, amount in work:
        pid = os.fork()
        if pid == 0:
            load_worker(kind, amount, deadline, parent)
        pids.append(pid)
    return pids


def stop_load(pids):
    for pid in pids:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def result_names(flavours, lanes):
    """run.py's results files of a run of these lanes (its naming)."""
    return [(f, '-'.join([f] + sorted(lanes))) for f in flavours]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--runs', type=int, default=10)
    ap.add_argument('--flavour', default=paths.TEST_FLAVOURS)
    ap.add_argument('--load', default='', help='cpu=N,mem=SIZE (default: no load)')
    ap.add_argument('--load-seconds', type=int, default=4 * 3600,
                    help='stop the load after that long at most (default 4 h)')
    ap.add_argument('--accel', default=os.environ.get('ACCEL', 'tcg'))
    ap.add_argument('lanes', nargs='*')
    args = ap.parse_args()
    load = parse_load(args.load)
    flavours = args.flavour.split(',')
    out = os.path.join(paths.BUILD, 'soak', time.strftime('%Y%m%d-%H%M%S'))
    os.makedirs(out)
    print(f'# soak: {args.runs} runs of {" ".join(args.lanes) or "every lane"} on '
          f'{",".join(flavours)}, load: {args.load or "none"}; in {out}', flush=True)
    # (flavour, lane, suite, case) -> {result: count}, in the order first seen
    tally = defaultdict(lambda: defaultdict(int))
    failures = []
    lane_failed_runs = defaultdict(set)     # (flavour, lane) -> runs with a failure
    pids = start_load(load, args.load_seconds) if load else []
    started = time.monotonic()
    try:
        for i in range(1, args.runs + 1):
            rundir = os.path.join(out, f'run-{i}')
            os.makedirs(rundir)
            t0 = time.monotonic()
            with open(os.path.join(rundir, 'run.log'), 'w') as log:
                rc = subprocess.run([os.path.join(paths.TOP, 'scripts', 'run.py'),
                                     '--accel', args.accel, '--flavour', args.flavour,
                                     *args.lanes], stdout=log, stderr=subprocess.STDOUT).returncode
            failed = 0
            for flavour, name in result_names(flavours, args.lanes):
                res = os.path.join(paths.RESULTS, f'{name}.json')
                if not os.path.exists(res) or os.path.getmtime(res) < t0:
                    tally[(flavour, '(run)', 'run.py', 'results written')]['fail'] += 1
                    lane_failed_runs[(flavour, '(run)')].add(i)
                    failures.append(f'run {i} {flavour}: no results (run.py exit {rc})')
                    failed += 1
                    continue
                shutil.copy(res, rundir)
                with open(res) as f:
                    cases = json.load(f)['cases']
                for c in cases:
                    tally[(flavour, c['lane'], c['suite'], c['case'])][c['result']] += 1
                    if c['result'] == 'fail':
                        failed += 1
                        lane_failed_runs[(flavour, c['lane'])].add(i)
                        failures.append(f'run {i} {flavour}/{c["lane"]}: {c["suite"]}: '
                                        f'{c["case"]}\n' + ''.join(
                                            f'    {x}\n' for x in c['detail'].split('\n')))
                if any(c['result'] == 'fail' for c in cases):
                    shutil.copytree(paths.logs_dir(flavour), os.path.join(rundir, f'logs-{flavour}'))
            print(f'# run {i}/{args.runs}: {"ok" if not failed else f"{failed} failed"}, '
                  f'{time.monotonic() - t0:.0f} s', flush=True)
    finally:
        stop_load(pids)
    rows = sorted(tally.items(), key=lambda kv: -kv[1]['fail'])
    table = ['| lane | flavour | runs with every case passed | cases per run | '
             'cases that failed at least once |', '|---|---|---|---|---|']
    for flavour, lane in dict.fromkeys((k[0], k[1]) for k in tally):
        lane_rows = [(k, r) for k, r in tally.items() if k[:2] == (flavour, lane)]
        clean = args.runs - len({run for run in lane_failed_runs[(flavour, lane)]})
        bad = [f'{k[3]} ({r["fail"]}/{args.runs})' for k, r in lane_rows if r['fail']]
        table.append(f'| {lane} | {flavour} | {clean}/{args.runs} | {len(lane_rows)} | '
                     f'{", ".join(bad) or "none"} |')
    table += ['', '| flavour | lane | suite | case | passed | failed | skipped |',
              '|---|---|---|---|---|---|---|']
    table += [f'| {f} | {lane} | {suite} | {case} | {r["ok"]} | {r["fail"]} | {r["skip"]} |'
              for (f, lane, suite, case), r in rows if r['fail']]
    with open(os.path.join(out, 'table.md'), 'w') as f:
        f.write('\n'.join(table) + '\n')
    with open(os.path.join(out, 'cases.tsv'), 'w') as f:
        f.write('flavour\tlane\tsuite\tcase\tpassed\tfailed\tskipped\n')
        for (fl, lane, suite, case), r in tally.items():
            f.write(f'{fl}\t{lane}\t{suite}\t{case}\t{r["ok"]}\t{r["fail"]}\t{r["skip"]}\n')
    with open(os.path.join(out, 'failures.txt'), 'w') as f:
        f.write('\n'.join(failures))
    flaky = [k for k, r in rows if r['fail']]
    print('\n'.join(table))
    print(f'# soak: {args.runs} runs, {time.monotonic() - started:.0f} s, load: '
          f'{args.load or "none"}; {len(tally)} cases, {len(flaky)} with a failure; '
          f'{out}/failures.txt')
    return 1 if flaky else 0


if __name__ == '__main__':
    sys.exit(main())
