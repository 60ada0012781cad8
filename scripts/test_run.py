#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Checks of run.py's verdicts on made-up boots (make lint runs them): a
line lost on the results channel, a guest that stopped, a boot that timed
out and a kexec that never reached the next kernel each get a verdict that
says so, and none of them passes."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lanes as lanes_conf  # noqa: E402
import run  # noqa: E402

BIN = 'harness/qemu_agent'
STAGE1 = ['BOOT kind=kexec stage=1 kernel=7.3.4', f'BEGIN {BIN} -s 1', 'ok 1 a', '1..1',
          f'END {BIN} rc=0', 'KEXEC-LOAD', 'KEXEC', 'SYNC']
STAGE2 = ['BOOT kind=kexec stage=2 kernel=7.3.4', f'BEGIN {BIN} -s 2', 'ok 1 b', '1..1',
          f'END {BIN} rc=0', 'DONE', 'SYNC']


def boot(said, lose=(), timed_out=False, console=''):
    """A boot whose guest said these lines (markers without "HARNESS"),
    with the markers numbered as guest/init numbers them, and the lines at
    the indexes in `lose` lost on the way."""
    lines, markers, n = [], [], 0
    for i, text in enumerate(said):
        marker = not text.startswith(('ok ', 'not ok ', '1..', '#'))
        n += marker
        if i in lose:
            continue
        t = float(i)
        if marker:
            markers.append((n, t, f'HARNESS {text}'))
        lines.append((t, f'HARNESS {text}' if marker else text))
    done = any(text == 'HARNESS DONE' for _, text in lines)
    return run.Boot('t', lines, console, timed_out, done, 0, '', markers)


LANE = lanes_conf.Lane('qemu-kexec', 'kexec', 300, [BIN], [], {})
EXPECT = [(BIN, 1), (BIN, 2)]


def verdicts(b):
    groups, _ = run.boot_cases(LANE, b, EXPECT, 300)
    return {c.case: (c.result, c.detail) for _, cases in groups for c in cases}


class Verdicts(unittest.TestCase):
    def setUp(self):
        self.console = tempfile.NamedTemporaryFile('w', suffix='.log')
        self.out = open(os.devnull, 'w')
        self.stdout, sys.stdout = sys.stdout, self.out

    def tearDown(self):
        sys.stdout = self.stdout
        self.out.close()
        self.console.close()

    def test_clean(self):
        v = verdicts(boot(STAGE1 + STAGE2, console=self.console.name))
        self.assertEqual({r for r, _ in v.values()}, {'ok'})

    def test_lost_end_marker(self):
        # The failure of the issue: stage 1's END lost, stage 2 ran.
        v = verdicts(boot(STAGE1 + STAGE2, lose={4}, console=self.console.name))
        result, detail = v['qemu_agent stage 1']
        self.assertEqual(result, 'fail')
        self.assertIn('its end marker did not arrive, later ones did', detail)
        self.assertIn('marker #3 lost before "HARNESS KEXEC-LOAD"', detail)
        self.assertEqual(v['t'][0], 'fail')
        self.assertIn('results channel', v['t'][1])

    def test_lost_marker_elsewhere_fails_the_boot(self):
        v = verdicts(boot(STAGE1 + STAGE2, lose={6}, console=self.console.name))
        self.assertEqual(v['a'][0], 'ok')
        self.assertEqual(v['t'][0], 'fail')
        self.assertIn('marker #5 lost before "HARNESS SYNC"', v['t'][1])

    def test_guest_stopped(self):
        v = verdicts(boot(STAGE1[:3], console=self.console.name))
        result, detail = v['qemu_agent stage 1']
        self.assertEqual(result, 'fail')
        self.assertIn('the guest stopped while it ran', detail)

    def test_timed_out(self):
        v = verdicts(boot(STAGE1[:3], timed_out=True, console=self.console.name))
        self.assertIn("killed at the boot's timeout", v['qemu_agent stage 1'][1])

    def test_next_kernel_never_up(self):
        v = verdicts(boot(STAGE1, timed_out=True, console=self.console.name))
        self.assertEqual(v['a'][0], 'ok')
        result, detail = v['qemu_agent stage 2']
        self.assertEqual(result, 'fail')
        self.assertIn('the next kernel did not reach its init', detail)

    def test_kexec_load_failed(self):
        v = verdicts(boot(STAGE1[:6] + ['ERROR kexec failed', 'DONE'],
                          console=self.console.name))
        self.assertIn('kexec load failed', v['qemu_agent stage 2'][1])

    def test_nothing_came_out(self):
        v = verdicts(boot([], console=self.console.name))
        self.assertIn('nothing came out of the results channel', v['qemu_agent stage 1'][1])
        self.assertIn('no output on the results channel', v['t'][1])


if __name__ == '__main__':
    unittest.main()
