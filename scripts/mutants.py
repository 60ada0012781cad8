#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Mutation testing of the series: break the kernel on purpose, one small
edit at a time, and check that a test notices.

Usage: mutants.py [--list FILE] [--dry-run] [NAME...]
       mutants.py --update-readme [--list FILE]

Each mutant of the list (mutants.conf by default, see its header for the
format) is applied to a kernel worktree of the applied tree at its HEAD,
the flavour's kernel is rebuilt incrementally in a build directory of its
own, the named test binaries run in their lanes of lanes.conf, and the
mutant is reported as
  killed          a case failed, a binary did not finish, or a splat
  survived        every case passed (or skipped): a test is missing
  does not build  the edited kernel does not compile
  stale           the edit no longer applies to exactly one line
  error           the run itself failed (no results)

Everything goes under $BUILD/mutants/, itself laid out as a BUILD of its
own (linux-<flavour>/ worktrees, kernel-<flavour>/, initramfs-<flavour>.cpio,
logs/, results/), so kernel.sh and run.py work on it unchanged. The
initramfs is the flavour's from $BUILD (same tests, same list) with this
kernel and its modules in it. Results: $BUILD/mutants.tsv (another list:
$BUILD/mutants-<list>.tsv); NAMEs run some mutants only, in that order,
and replace their rows. --update-readme rewrites README.md's table from the tsv.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lanes as lanes_conf  # noqa: E402
import paths  # noqa: E402

TREE = paths.lib('echo "$TREE"')
MDIR = os.path.join(paths.BUILD, 'mutants')
README = os.path.join(paths.TOP, 'README.md')
TABLE = re.compile(r'(<!-- mutants:table -->\n).*?(<!-- /mutants -->)', re.S)
COLUMNS = ('mutant', 'flavour', 'file', 'breaks', 'result', 'killed_by', 'build_s', 'run_s')
VERDICTS = ('killed', 'survived', 'does not build', 'stale', 'error')
EDIT = re.compile(r'^(?:/(?P<anchor>[^/]+)/\s*)?s(?P<d>\S)')


@dataclass
class Mutant:
    name: str
    file: str
    edit: str
    anchor: str
    old: str
    new: str
    binaries: list
    flavour: str
    breaks: str
    where: str      # list:line


def die(msg):
    sys.exit(f'error: {msg}')


def parse_edit(text, where):
    """'[/anchor/ ]s<d>old<d>new<d>' -> (anchor, old, new, rest of the line)."""
    m = EDIT.match(text)
    if not m:
        die(f'{where}: the edit must be s<d>old<d>new<d>, optionally after /anchor/')
    d, pos = m.group('d'), m.end()
    parts = []
    for _ in range(2):
        end = text.find(d, pos)
        if end < 0:
            die(f'{where}: the edit is not closed by {d!r}')
        parts.append(text[pos:end])
        pos = end + 1
    if not parts[0]:
        die(f'{where}: the edit replaces nothing')
    return m.group('anchor'), parts[0], parts[1], text[m.start():pos], text[pos:]


def load(path):
    """The mutants of a list: 'name | file | edit | binaries | flavour | breaks'."""
    mutants = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if not line.strip() or line.lstrip().startswith('#'):
                continue
            where = f'{os.path.basename(path)}:{n}'
            head = line.split(' | ', 2)
            if len(head) < 3:
                die(f'{where}: expected "name | file | edit | binaries | flavour | breaks"')
            anchor, old, new, edit, rest = parse_edit(head[2], where)
            tail = [x.strip() for x in rest.split(' | ', 3)]
            if len(tail) != 4 or tail[0] != '':
                die(f'{where}: expected " | binaries | flavour | breaks" after the edit')
            _, binaries, flavour, breaks = tail
            if any(m.name == head[0].strip() for m in mutants):
                die(f'{where}: mutant {head[0].strip()} named twice')
            mutants.append(Mutant(head[0].strip(), head[1].strip(), edit, anchor, old, new,
                                  binaries.split(), flavour, breaks, where))
    return mutants


def lane_conf(mutant, lanes):
    """lanes.conf lines that run the mutant's binaries: a lane of lanes.conf
    by name, or a binary alone in the first lane that runs it, or in the
    lane named before it ("<lane>:<binary>"), with that lane's kind,
    timeout and stage-2 parameter."""
    chosen = {}
    for spec in mutant.binaries:
        if spec in lanes:
            chosen[spec] = list(lanes[spec].binaries)
            continue
        name, _, spec = spec.rpartition(':')
        lane = next((x for x in lanes.values() if (not name or x.name == name) and
                     (spec in x.binaries or spec in map(lanes_conf.binary, x.binaries))), None)
        if lane is None:
            die(f'{mutant.where}: {name + ":" if name else ""}{spec} is neither a lane nor '
                f'a binary of {lanes_conf.CONF}')
        entry = next(b for b in lane.binaries if b == spec or lanes_conf.binary(b) == spec)
        chosen.setdefault(lane.name, [])
        if entry not in chosen[lane.name]:
            chosen[lane.name].append(entry)
    return [f'{name} {lanes[name].kind} {lanes[name].timeout} '
            f'{"".join(f"+{e} " for e in lanes[name].extras)}'
            f'{"".join(f"{k}={v} " for k, v in lanes[name].options.items())}{" ".join(bins)}'
            for name, bins in chosen.items()]


def worktree_of(flavour):
    """A flavour's kernel worktree: one per build directory, so that a file
    restored after a mutant recompiles only in the build that mutated it."""
    return os.path.join(MDIR, f'linux-{flavour}')


def git(flavour, *args):
    return subprocess.run(['git', '-C', worktree_of(flavour), *args], check=True, text=True,
                          stdout=subprocess.PIPE).stdout


def worktree(flavour, head):
    """The flavour's kernel worktree at the applied tree's HEAD, clean."""
    if not os.path.isdir(worktree_of(flavour)):
        subprocess.run(['git', '-C', TREE, 'worktree', 'prune'], check=True)
        subprocess.run(['git', '-C', TREE, 'worktree', 'add', '-q', '--detach',
                        worktree_of(flavour), head], check=True)
    git(flavour, 'checkout', '-q', '--detach', head)
    git(flavour, 'reset', '-q', '--hard')


def edited(mutant, text):
    """(the text with the mutant's edit, None) or (None, why it is stale)."""
    lines = text.split('\n')
    first, last = 0, len(lines)
    if mutant.anchor:
        found = [i for i, x in enumerate(lines) if mutant.anchor in x]
        if len(found) != 1:
            return None, f'anchor /{mutant.anchor}/ is on {len(found)} lines'
        # The anchor's function (or block): up to the next line that is "}".
        first = found[0]
        last = next((i + 1 for i in range(first, len(lines)) if lines[i].startswith('}')),
                    len(lines))
    found = [i for i in range(first, last) if mutant.old in lines[i]]
    if len(found) != 1 or lines[found[0]].count(mutant.old) != 1:
        where = ' of the anchor\'s block' if mutant.anchor else ''
        return None, f'"{mutant.old}" is on {len(found)} lines{where}'
    lines[found[0]] = lines[found[0]].replace(mutant.old, mutant.new)
    return '\n'.join(lines), None


def apply(mutant):
    """Edit the flavour's worktree; None, or why the mutant is stale."""
    path = os.path.join(worktree_of(mutant.flavour), mutant.file)
    if not os.path.isfile(path):
        return f'{mutant.file} does not exist'
    with open(path) as f:
        text, stale = edited(mutant, f.read())
    if stale:
        return stale
    with open(path, 'w') as f:
        f.write(text)
    stat = git(mutant.flavour, 'diff', '--numstat').split()
    if stat[:3] != ['1', '1', mutant.file]:
        return f'the edit changed {" ".join(stat[:2]) or "nothing"} (added, removed lines)'
    return None


def check(mutant, head):
    """What a dry run says of the mutant: None if its edit applies at @head."""
    shown = subprocess.run(['git', '-C', TREE, 'show', f'{head}:{mutant.file}'], text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if shown.returncode:
        return f'{mutant.file} does not exist'
    return edited(mutant, shown.stdout)[1]


def build(flavour, log):
    """kernel.sh on the worktree, into $BUILD/mutants/kernel-<flavour>."""
    env = dict(os.environ, BUILD=MDIR, TREE=worktree_of(flavour))
    with open(log, 'w') as f:
        rc = subprocess.run([os.path.join(paths.TOP, 'scripts', 'kernel.sh'), flavour],
                            env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    return rc == 0


def initramfs(flavour):
    """The flavour's initramfs of $BUILD with the mutant kernel (and its
    modules) in place of the flavour's: its list, the kernel directory
    replaced, written with the mutant build's gen_init_cpio."""
    main_list = re.sub(r'\.cpio$', '.list', paths.initramfs_of(flavour))
    if not os.path.exists(main_list):
        die(f'{main_list} is missing: run `make FLAVOURS={flavour} initramfs` first')
    kdir = paths.lib('kernel_dir "$1"', flavour) + '/'
    mkdir = os.path.join(MDIR, f'kernel-{flavour}') + '/'
    out = os.path.join(MDIR, f'initramfs-{flavour}')
    with open(main_list) as f, open(out + '.list', 'w') as g:
        for line in f:
            w = line.split(' ')
            if w[0] == 'file' and w[2].startswith(kdir):
                w[2] = mkdir + w[2][len(kdir):]
            g.write(' '.join(w))
    with open(out + '.cpio', 'wb') as f:
        subprocess.run([mkdir + 'usr/gen_init_cpio', out + '.list'], stdout=f, check=True)


def prepare_build_dir():
    """What run.py needs of a BUILD, besides kernels and initramfs."""
    os.makedirs(os.path.join(MDIR, 'logs'), exist_ok=True)
    shutil.copy(paths.BASE_USED, os.path.join(MDIR, 'base-version'))
    base = paths.kernel_image('base')
    link = os.path.join(MDIR, 'kernel-base')
    if os.path.exists(base) and not os.path.lexists(link):
        os.symlink(paths.lib('kernel_dir base'), link)
    # The extra initramfs parts of lanes (the same for every kernel).
    for extra in dict.fromkeys(e for lane in lanes_conf.load().values() for e in lane.extras):
        part = paths.extra_initramfs(extra)
        link = os.path.join(MDIR, os.path.basename(part))
        if os.path.exists(part) and not os.path.lexists(link):
            os.symlink(part, link)


def run_lanes(mutant, conf, log):
    """(result, the first failing case) of the mutant's lanes."""
    conf_path = os.path.join(MDIR, 'mutant.conf')
    with open(conf_path, 'w') as f:
        f.write('\n'.join(conf) + '\n')
    names = sorted(line.split()[0] for line in conf)
    result = os.path.join(MDIR, 'results', '-'.join([mutant.flavour, 'mutant'] + names) + '.json')
    if os.path.exists(result):
        os.remove(result)
    env = dict(os.environ, BUILD=MDIR, LANES_CONF=conf_path)
    with open(log, 'w') as f:
        subprocess.run([os.path.join(paths.TOP, 'scripts', 'run.py'), '--flavour',
                        mutant.flavour, *names], env=env, stdout=f, stderr=subprocess.STDOUT)
    if not os.path.exists(result):
        return 'error', f'no results (see {log})'
    with open(result) as f:
        cases = json.load(f)['cases']
    failed = [c for c in cases if c['result'] == 'fail']
    if not failed:
        return 'survived', ''
    c = failed[0]
    if c['suite'] == 'boot':
        return 'killed', f'{c["case"]}: {c["detail"].split(";")[0]}'
    # A binary that failed as a whole: say how (timeout, died, exit status).
    why = ''
    if c['detail'].startswith('TIMEOUT'):
        why = ' (timeout)'
    elif c['detail'].startswith(('did not finish', 'exit status')):
        why = f' ({c["detail"].split(";")[0].split(" (")[0]})'
    return 'killed', f'{c["suite"]}: {c["case"]}{why}'


def tsv_path(list_path):
    stem = os.path.splitext(os.path.basename(list_path))[0]
    return os.path.join(paths.BUILD, 'mutants.tsv' if stem == 'mutants'
                        else f'mutants-{stem}.tsv')


def read_tsv(path):
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        rows = [dict(zip(COLUMNS, line.rstrip('\n').split('\t'))) for line in f][1:]
    return {r['mutant']: r for r in rows}


def write_tsv(path, mutants, rows):
    with open(path, 'w') as f:
        f.write('\t'.join(COLUMNS) + '\n')
        for m in mutants:
            if m.name in rows:
                f.write('\t'.join(str(rows[m.name][c]) for c in COLUMNS) + '\n')


def update_readme(mutants, rows):
    """README.md's table between <!-- mutants:table --> and <!-- /mutants -->."""
    lines = ['| mutant | file | what it breaks | flavour | result | killed by | s |',
             '|---|---|---|---|---|---|---|']
    total = 0
    for m in mutants:
        r = rows.get(m.name)
        seconds = int(r['build_s']) + int(r['run_s']) if r else 0
        total += seconds
        lines.append(f'| `{m.name}` | `{m.file}` | {m.breaks} | {m.flavour} | '
                     f'{r["result"] if r else "not run"} | '
                     f'{r["killed_by"].replace("|", "/") if r else ""} | '
                     f'{seconds if r else ""} |')
    done = [rows[m.name] for m in mutants if m.name in rows]
    counts = {v: sum(r['result'] == v for r in done) for v in VERDICTS}
    lines.append('')
    lines.append(f'{len(mutants)} mutants, {len(done)} run: '
                 + ', '.join(f'{n} {v}' for v, n in counts.items() if n)
                 + f'. Their builds and boots took {total / 60:.0f} min '
                 f'({total / max(len(done), 1):.0f} s a mutant: "s" is build and boot seconds); '
                 'the first, full build of each flavour comes on top.')
    with open(README) as f:
        text = f.read()
    if not TABLE.search(text):
        die('README.md has no <!-- mutants:table --> ... <!-- /mutants --> markers')
    text = TABLE.sub(lambda m: m.group(1) + '\n'.join(lines) + '\n' + m.group(2), text)
    with open(README, 'w') as f:
        f.write(text)
    print(f'README.md: table of {len(mutants)} mutants rewritten')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--list', default='mutants.conf',
                    help='the list of mutants (default: mutants.conf)')
    ap.add_argument('--dry-run', action='store_true',
                    help='check that every edit applies and name its lanes; touch nothing')
    ap.add_argument('--update-readme', action='store_true',
                    help="rewrite README.md's table from the results, run nothing")
    ap.add_argument('names', nargs='*', help='run these mutants only, in this order')
    args = ap.parse_args()
    args.list = os.path.join(paths.TOP, args.list) if not os.path.exists(args.list) else args.list
    mutants = load(args.list)
    tsv = tsv_path(args.list)
    rows = read_tsv(tsv)
    if args.update_readme:
        update_readme(mutants, rows)
        return 0
    unknown = set(args.names) - {m.name for m in mutants}
    if unknown:
        die(f'unknown mutant(s): {" ".join(sorted(unknown))}')
    by_name = {m.name: m for m in mutants}
    todo = [by_name[n] for n in dict.fromkeys(args.names)] if args.names else mutants
    lanes = lanes_conf.load()
    confs = {m.name: lane_conf(m, lanes) for m in todo}
    head = subprocess.run(['git', '-C', TREE, 'rev-parse', 'HEAD'], check=True, text=True,
                          stdout=subprocess.PIPE).stdout.strip()
    os.makedirs(MDIR, exist_ok=True)
    print(f'# {len(todo)} mutants of {args.list}, on {TREE} '
          f'at {head[:12]}, in {MDIR}', flush=True)
    built, started = set(), time.monotonic()
    if args.dry_run:
        stale = 0
        for m in todo:
            why = check(m, head)
            stale += bool(why)
            print(f'{m.name}: {"stale: " + why if why else "applies"}; '
                  f'{m.flavour}: {"; ".join(confs[m.name])}')
        return 1 if stale else 0
    prepare_build_dir()
    for m in todo:
        logs = os.path.join(MDIR, 'logs', m.name)
        worktree(m.flavour, head)
        if m.flavour not in built:
            print(f'# kernel-{m.flavour} without mutants (a full build the first time, later '
                  'only what the tree changed)', flush=True)
            if not build(m.flavour, f'{logs}.base-build.log'):
                die(f'the unmutated kernel-{m.flavour} does not build: {logs}.base-build.log')
            built.add(m.flavour)
        t0 = time.monotonic()
        stale = apply(m)
        row = {'mutant': m.name, 'flavour': m.flavour, 'file': m.file, 'breaks': m.breaks,
               'result': '', 'killed_by': '', 'build_s': 0, 'run_s': 0}
        if stale:
            row.update(result='stale', killed_by=stale)
        elif not build(m.flavour, f'{logs}.build.log'):
            row.update(result='does not build', killed_by=f'see {logs}.build.log')
        else:
            t1 = time.monotonic()
            row['build_s'] = round(t1 - t0)
            initramfs(m.flavour)
            result, case = run_lanes(m, confs[m.name], f'{logs}.run.log')
            row.update(result=result, killed_by=case, run_s=round(time.monotonic() - t1))
        if not row['build_s']:
            row['build_s'] = round(time.monotonic() - t0)
        rows[m.name] = row
        print(f'{row["result"]:<14} {m.name} ({m.flavour}, {row["build_s"]} s build, '
              f'{row["run_s"]} s run){": " + row["killed_by"] if row["killed_by"] else ""}',
              flush=True)
        write_tsv(tsv, mutants, rows)
    for flavour in {m.flavour for m in todo}:
        worktree(flavour, head)
    done = [rows[m.name] for m in todo]
    counts = {r: sum(x['result'] == r for x in done) for r in VERDICTS}
    print(f'# {", ".join(f"{n} {r}" for r, n in counts.items() if n)} of {len(done)} mutants, '
          f'{time.monotonic() - started:.0f} s; results in {tsv}')
    return 1 if len(done) != counts['killed'] else 0


if __name__ == '__main__':
    sys.exit(main())
