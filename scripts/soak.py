#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Run lanes again and again, optionally under a background load on the
host, and table each case's pass rate: flake hunting as a command.

Usage: soak.py [--runs N] [--flavour F,...] [--load cpu=N,mem=SIZE,stall=S]
               [--load-seconds S] [--accel tcg|kvm] [LANE...]

Each run is one `run.py --flavour F LANE...`; its output, results and logs
are kept in build/soak/<date>/run-<i>/ (RESULTS and LOGS point there), so a
soak does not touch build/results and build/logs, and can run beside a
make test. The load, when asked for, is started before the first run and
stopped after the last one, or after --load-seconds, whichever comes
first; a load process also stops when this script dies. cpu=N: N processes
that spin; mem=SIZE (e.g. 4G): one process that keeps SIZE of memory and
writes a byte of every page of it, over and over; stall=S: the reader of
the guest's results (run.py) is stopped for S seconds every 2 to 6 seconds
(SIGSTOP, SIGCONT), as a host too busy to read would stop it, while QEMU
and the guest run on. The table is printed and written to
build/soak/<date>/table.md (per lane: the runs in which every case passed;
then each case that failed at least once),
every case's counts to cases.tsv, the detail of every failure to
failures.txt.
"""
import argparse
import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paths  # noqa: E402
from run import results_name  # noqa: E402

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
        elif key == 'stall':
            load['stall'] = float(value)
        else:
            sys.exit(f'error: unknown load {item!r} (have: cpu=N, mem=SIZE, stall=S)')
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


def stall_reader(proc, seconds, seed):
    """Stop and continue the process now and then until it exits."""
    rng = random.Random(seed)
    while proc.poll() is None:
        time.sleep(rng.uniform(2, 6))
        try:
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(seconds)
        except ProcessLookupError:
            return
        finally:
            try:
                os.kill(proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def case_name(name):
    """A case's name without the figures some add in parentheses."""
    return re.sub(r' \(.*$', '', name)


def result_names(flavours, lanes):
    """run.py's results files of a run of these lanes."""
    return [(f, results_name(f, lanes)) for f in flavours]


class Tally:
    """The cases of the runs so far."""
    def __init__(self):
        # (flavour, lane, suite, case) -> {result: count}, in the order first seen
        self.cases = defaultdict(lambda: defaultdict(int))
        self.lane_runs = defaultdict(set)           # (flavour, lane) -> runs it was in
        self.lane_failed_runs = defaultdict(set)    # (flavour, lane) -> runs with a failure
        self.failures = []

    def add(self, i, flavour, res, rc=None, since=0):
        """Run i's results file of a flavour; the number of its failures."""
        if not os.path.exists(res) or os.path.getmtime(res) < since:
            self.cases[(flavour, '(run)', 'run.py', 'results written')]['fail'] += 1
            self.lane_runs[(flavour, '(run)')].add(i)
            self.lane_failed_runs[(flavour, '(run)')].add(i)
            self.failures.append(f'run {i} {flavour}: no results (run.py exit {rc})')
            return 1
        failed = 0
        with open(res) as f:
            cases = json.load(f)['cases']
        for c in cases:
            self.cases[(flavour, c['lane'], c['suite'], case_name(c['case']))][c['result']] += 1
            self.lane_runs[(flavour, c['lane'])].add(i)
            if c['result'] == 'fail':
                failed += 1
                self.lane_failed_runs[(flavour, c['lane'])].add(i)
                self.failures.append(f'run {i} {flavour}/{c["lane"]}: {c["suite"]}: '
                                     f'{c["case"]}\n' + ''.join(
                                         f'    {x}\n' for x in c['detail'].split('\n')))
        return failed


def write_table(out, t):
    """The table of the runs so far, in table.md; the counts in cases.tsv;
    the failures in failures.txt. Return the rows and the table."""
    tally, lane_runs, lane_failed_runs = t.cases, t.lane_runs, t.lane_failed_runs
    rows = sorted(tally.items(), key=lambda kv: -kv[1]['fail'])
    table = ['| lane | flavour | runs with every case passed | cases | '
             'cases that failed at least once (failed/runs) |', '|---|---|---|---|---|']
    for flavour, lane in dict.fromkeys((k[0], k[1]) for k in tally):
        lane_rows = [(k, r) for k, r in tally.items() if k[:2] == (flavour, lane)]
        runs = len(lane_runs[(flavour, lane)])
        clean = runs - len(lane_failed_runs[(flavour, lane)])
        bad = [f'{k[2]}: {k[3]} ({r["fail"]}/{runs})' for k, r in lane_rows if r['fail']]
        table.append(f'| {lane} | {flavour} | {clean}/{runs} | '
                     f'{sum(1 for _, r in lane_rows if r["fail"] < sum(r.values()))} | '
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
        f.write('\n'.join(t.failures))
    return rows, table


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--runs', type=int, default=10)
    ap.add_argument('--flavour', default=paths.TEST_FLAVOURS)
    ap.add_argument('--load', default='', help='cpu=N,mem=SIZE (default: no load)')
    ap.add_argument('--load-seconds', type=int, default=4 * 3600,
                    help='stop the load after that long at most (default 4 h)')
    ap.add_argument('--accel', default=os.environ.get('ACCEL', 'tcg'))
    ap.add_argument('--load-only', action='store_true',
                    help='only the load (cpu, mem), until --load-seconds or killed: '
                    'e.g. beside a make test')
    ap.add_argument('--table', metavar='DIR',
                    help='only the table again, from the runs of an earlier soak in DIR')
    ap.add_argument('lanes', nargs='*')
    args = ap.parse_args()
    load = parse_load(args.load)
    if args.load_only:
        pids = start_load(load, args.load_seconds)
        try:
            for pid in pids:
                os.waitpid(pid, 0)
        finally:
            stop_load(pids)
        return 0
    flavours = args.flavour.split(',')
    t = Tally()
    if args.table:
        runs = sorted((int(d[4:]), d) for d in os.listdir(args.table) if d.startswith('run-'))
        for i, d in runs:
            for res in sorted(glob.glob(os.path.join(args.table, d, 'results', '*.json'))):
                t.add(i, os.path.basename(res).split('-')[0].split('.')[0], res)
        print('\n'.join(write_table(args.table, t)[1]))
        return 0
    out = os.path.join(paths.BUILD, 'soak', time.strftime('%Y%m%d-%H%M%S'))
    os.makedirs(out)
    print(f'# soak: {args.runs} runs of {" ".join(args.lanes) or "every lane"} on '
          f'{",".join(flavours)}, load: {args.load or "none"}; in {out}', flush=True)
    pids = start_load(load, args.load_seconds)
    started, i, proc = time.monotonic(), 0, None
    # Killed, a soak takes its run.py and that one's QEMU with it (they are
    # a process group of their own), stopped by a stall or not.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for i in range(1, args.runs + 1):
            rundir = os.path.join(out, f'run-{i}')
            os.makedirs(rundir)
            t0, t0_wall = time.monotonic(), time.time()
            with open(os.path.join(rundir, 'run.log'), 'w') as log:
                env = dict(os.environ, RESULTS=os.path.join(rundir, 'results'),
                           LOGS=os.path.join(rundir, 'logs'))
                proc = subprocess.Popen([os.path.join(paths.TOP, 'scripts', 'run.py'),
                                         '--accel', args.accel, '--flavour', args.flavour,
                                         *args.lanes], stdout=log, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
                if 'stall' in load:
                    threading.Thread(target=stall_reader, args=(proc, load['stall'], i),
                                     daemon=True).start()
                rc = proc.wait()
            failed = sum(t.add(i, flavour, os.path.join(rundir, 'results', f'{name}.json'),
                               rc, t0_wall)
                         for flavour, name in result_names(flavours, args.lanes))
            write_table(out, t)
            print(f'# run {i}/{args.runs}: {"ok" if not failed else f"{failed} failed"}, '
                  f'run.py exit {rc}, {time.monotonic() - t0:.0f} s', flush=True)
    finally:
        if proc and proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                os.killpg(proc.pid, sig)
            proc.wait()
        stop_load(pids)
    rows, table = write_table(out, t)
    flaky = [k for k, r in rows if r['fail']]
    print('\n'.join(table))
    print(f'# soak: {i} runs, {time.monotonic() - started:.0f} s, load: '
          f'{args.load or "none"}; {len(t.cases)} cases, {len(flaky)} with a failure; '
          f'{out}/failures.txt')
    return 1 if flaky else 0


if __name__ == '__main__':
    sys.exit(main())
