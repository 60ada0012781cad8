#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Read lanes.conf, the list of test lanes.

Usage: lanes.py names | binaries | extras [LANE...]

A lane is "name kind timeout [+extra...] [option=value...] binary...": a
"+<extra>" word adds a part to that lane's initramfs (scripts/initramfs.sh
builds it; run.py boots the flavour's initramfs with it appended), so that
what one lane needs (QEMU and its libraries) does not grow the others'
boots. Options (OPTIONS): tcg=single boots the lane's guests with one TCG
thread for all vCPUs (see lanes.conf).
"""
import os
import sys
from dataclasses import dataclass

from paths import TOP
# lanes.conf for the tests; bench.conf for `make bench` (LANES_CONF=...).
CONF = os.path.join(TOP, os.environ.get('LANES_CONF', 'lanes.conf'))
KINDS = ('single', 'kexec', 'xver-up', 'xver-down')
OPTIONS = {'tcg': ('single',)}


@dataclass
class Lane:
    name: str
    kind: str
    timeout: int
    binaries: list
    extras: list
    options: dict


def binary(spec):
    """The binary of a lane entry "<suite>/<name>[@<stage-2 kernel param>]"."""
    return spec.split('@', 1)[0]


def stage2_param(spec):
    """The kernel parameter a kexec entry adds for its stage 2, or ''."""
    return spec.split('@', 1)[1] if '@' in spec else ''


def load(path=CONF):
    lanes = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            words = line.split('#', 1)[0].split()
            if not words:
                continue
            if len(words) < 4 or words[1] not in KINDS or not words[2].isdigit():
                sys.exit(f'{path}:{n}: expected "lane kind timeout binary..."')
            extras = [w[1:] for w in words[3:] if w.startswith('+')]
            options = dict(w.split('=', 1) for w in words[3:]
                           if '=' in w and '/' not in w)
            binaries = [w for w in words[3:]
                        if not w.startswith('+') and w.split('=', 1)[0] not in options]
            for key, value in options.items():
                if value not in OPTIONS.get(key, ()):
                    sys.exit(f'{path}:{n}: unknown option {key}={value}')
            if not binaries:
                sys.exit(f'{path}:{n}: lane {words[0]} has no binary')
            lanes[words[0]] = Lane(words[0], words[1], int(words[2]), binaries, extras,
                                   options)
    return lanes


def select(names):
    lanes = load()
    unknown = [n for n in names if n not in lanes]
    if unknown:
        sys.exit(f'unknown lane(s): {" ".join(unknown)} (have: {" ".join(lanes)})')
    return [lanes[n] for n in names] if names else list(lanes.values())


def main(argv):
    if not argv or argv[0] not in ('names', 'binaries', 'extras'):
        sys.exit(__doc__)
    lanes = select(argv[1:])
    if argv[0] == 'names':
        print('\n'.join(lane.name for lane in lanes))
    elif argv[0] == 'extras':
        print('\n'.join(dict.fromkeys(e for lane in lanes for e in lane.extras)))
    else:
        seen = dict.fromkeys(binary(b) for lane in lanes for b in lane.binaries)
        print('\n'.join(seen))


if __name__ == '__main__':
    main(sys.argv[1:])
