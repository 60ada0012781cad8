#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The counts that README.md quotes, from the results of the last run.

Usage: counts.py [--flavours test,debug] [show|check|update]

  show    print every count (the default)
  check   print them, and compare README.md's marked counts with them:
          name each that disagrees (or that no results give), exit 1 if any
  update  rewrite README.md's marked counts

Counts: patches (lines of patches/series); from build/results/<flavour>.json
of each flavour: cases.<flavour>, passed.<flavour>, failed.<flavour>,
skipped.<flavour>, splats.<flavour>; and the same over all flavours:
cases, passed, failed, skipped, splats (README.md's totals are over
test and debug, the flavours of `make test`). A count in README.md is
marked <!-- counts:KEY -->N<!-- /counts -->, KEY in lower case; the markers
do not show when rendered.
patches/0000-cover-letter.patch is not read or written: its counts are
edited by hand.
"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paths import TOP, PATCHES, RESULTS, TEST_FLAVOURS  # noqa: E402

README = os.path.join(TOP, 'README.md')
MARK = re.compile(r'<!-- counts:([a-z.]+) -->(.*?)<!-- /counts -->')
VERDICTS = {'ok': 'passed', 'fail': 'failed', 'skip': 'skipped'}


def counts(flavours):
    """{key: number}; a flavour without results has no keys."""
    with open(os.path.join(PATCHES, 'series')) as f:
        found = {'patches': sum(1 for line in f if line.strip())}
    totals = dict.fromkeys(['cases', 'splats', *VERDICTS.values()], 0)
    for flavour in flavours:
        path = os.path.join(RESULTS, f'{flavour}.json')
        if not os.path.exists(path):
            print(f'# no results of {flavour}: {path} (run `make FLAVOURS={flavour} test`)',
                  file=sys.stderr)
            totals = None
            continue
        with open(path) as f:
            run = json.load(f)
        these = {'cases': len(run['cases']), 'splats': run['meta']['splats']}
        for result, name in VERDICTS.items():
            these[name] = sum(c['result'] == result for c in run['cases'])
        for key, n in these.items():
            found[f'{key}.{flavour}'] = n
            if totals is not None:
                totals[key] += n
    # Totals only when every flavour has results.
    found.update(totals or {})
    return found


def marks(text):
    """(line number, key, value) of every marked count."""
    for n, line in enumerate(text.split('\n'), 1):
        for m in MARK.finditer(line):
            yield n, m.group(1), m.group(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--flavours', default=TEST_FLAVOURS)
    ap.add_argument('mode', nargs='?', default='show', choices=('show', 'check', 'update'))
    args = ap.parse_args()
    found = counts(args.flavours.split(','))
    with open(README) as f:
        text = f.read()
    if args.mode != 'update':
        for key, n in found.items():
            print(f'{key}\t{n}')
    if args.mode == 'show':
        return 0
    unknown, wrong = 0, 0
    for n, key, value in marks(text):
        if key not in found:
            print(f'README.md:{n}: {key}: not checked, no results give it')
            unknown += 1
        elif value != str(found[key]):
            print(f'README.md:{n}: {key} is {value}, the results say {found[key]}')
            wrong += 1
    if args.mode == 'check':
        print(f'README.md: {wrong + unknown} count(s) disagree' if wrong + unknown
              else 'README.md: counts agree')
        return 1 if wrong + unknown else 0
    new = MARK.sub(lambda m: f'<!-- counts:{m.group(1)} -->'
                   f'{found.get(m.group(1), m.group(2))}<!-- /counts -->', text)
    with open(README, 'w') as f:
        f.write(new)
    print(f'README.md: {wrong} count(s) rewritten, {unknown} left as they were (no results)')
    return 1 if unknown else 0


if __name__ == '__main__':
    sys.exit(main())
