#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Boot the test kernel in QEMU and run the lanes of lanes.conf.

Usage: run.py [--flavour F] [--timeline] [--accel tcg|kvm] [--dry-run] [LANE...]

Every boot has a serial port, ttyS0, for the kernel console (kept in
build/logs/), and a virtio-serial port, "harness.results", that carries the
tests' output and guest/init's markers only, read here line by line and
stamped with the host's clock. That port has flow control: QEMU holds what
it cannot pass on, and the guest's writers wait, while this reader is
behind; and before a kexec or a poweroff the guest waits until this reader
has confirmed its last marker ("SYNC"). So no line is dropped however busy
the host is. The markers are numbered across the kexec, so a marker that
was lost all the same is reported as lost, not as a test that did not
finish. A boot that hangs is killed at the lane's timeout; a boot
that does not reach its end, or whose console shows a splat, fails its
lane. Results go to build/results/<flavour>.{json,tsv}.
"""
import argparse
import bisect
import json
import os
import re
import select
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, asdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lanes as lanes_conf  # noqa: E402
import paths  # noqa: E402

QEMU = ['qemu-system-x86_64', '-nodefaults', '-display', 'none', '-no-reboot',
        '-smp', '2', '-m', '4G']
# The accelerator (--accel, or ACCEL in the environment): TCG by default;
# KVM where /dev/kvm works (the KVM tests then need nested virtualization).
ACCELS = {'tcg': ['-accel', 'tcg', '-cpu', 'max'], 'kvm': ['-accel', 'kvm', '-cpu', 'host']}
# With --icount the guest clock counts instructions: figures that repeat.
# Only TCG can count them: benchmarks always run on TCG.
ICOUNT = ['-icount', 'shift=0,sleep=off']
# More QEMU options from the environment, e.g. QEMU_EXTRA='-d guest_errors'.
QEMU_EXTRA = os.environ.get('QEMU_EXTRA', '').split()
# tsc=nowatchdog: 7.3's clocksource watchdog can deadlock a boot under
# load, base kernel and series alike. Its timer callback on CPU 0 checks
# the TSC of CPU 1 with interrupts off, waiting for CPU 1 to answer an IPI,
# with a timeout read from a clock that, before the switch to tsc-early,
# only advances on timer interrupts; if CPU 1 has disabled its interrupts
# in stop_machine() for that very switch (clocksource_done_booting(),
# timekeeping_notify()) and waits for CPU 0, neither ever goes on. The
# hang dumps of two boots of make soak named exactly these two places
# (watchdog_check_skew(), multi_cpu_stop()). With tsc=nowatchdog no
# clocksource needs the watchdog and its timer never starts.
CMDLINE = 'console=ttyS0 panic=-1 liveupdate=on retain_initrd tsc=nowatchdog'


def host_tsc_khz():
    """The host's TSC frequency in kHz, when the host knows it for sure, or
    None. TSC_KHZ in the environment overrides it (0: none).

    Under TCG the guest's TSC is the host's, and the guest calibrates it
    against the emulated PIT, which a loaded host disturbs: a boot of
    make soak saw "tsc: PIT calibration deviates from HPET: 51222 2595844",
    took 51.222 MHz, and its clock ran 50 times fast until the end of the
    boot (a test "timed out after 200 s" 1.5 s after it started). With
    tsc_early_khz the guest skips that calibration (and refines the value
    against the HPET a second later, which load does not disturb). The
    host's value is its /proc/cpuinfo "cpu MHz" when its kernel took the
    TSC frequency from CPUID or the hypervisor (tsc_known_freq) and cannot
    measure the current one (no aperfmperf): then both are one figure."""
    if 'TSC_KHZ' in os.environ:
        return int(os.environ['TSC_KHZ']) or None
    try:
        with open('/proc/cpuinfo') as f:
            cpu0 = f.read().split('\n\n')[0]
    except OSError:
        return None
    flags = re.search(r'^flags\s*:(.*)$', cpu0, re.M)
    mhz = re.search(r'^cpu MHz\s*:\s*([0-9.]+)$', cpu0, re.M)
    if not flags or not mhz:
        return None
    flags = set(flags.group(1).split())
    if not {'constant_tsc', 'nonstop_tsc', 'tsc_known_freq'} <= flags or 'aperfmperf' in flags:
        return None
    khz = round(float(mhz.group(1)) * 1000)
    return khz if 500000 <= khz <= 10000000 else None

# What a kernel flavour needs beyond that, and how much slower it runs.
# debug: KASAN needs a larger KHO scratch area, or KHO disables itself and
# the next kernel dies after kexec. no5lvl: with 5-level paging (-cpu max
# has LA57) the base kernel sometimes reports "KASAN: wild-memory-access"
# in do_raw_spin_lock() from an interrupt taken during identify_cpu(), while
# the boot CPU's capability bits, LA57 included, are transiently cleared and
# KASAN computes its shadow range for 4-level paging. It happens before any
# live-update code runs; 4-level paging avoids it.
FLAVOUR_CMDLINE = {'debug': 'kho_scratch=256M,512M,256M no5lvl'}
FLAVOUR_SLOWDOWN = {'debug': 4}

# What a kernel console must never show: the headers of kernel reports
# (lockdep's start with WARNING: or BUG:). Stack traces alone do not count:
# an allocation failure that fault injection provokes on purpose prints one.
SPLAT = re.compile(r'WARNING:|BUG:|Oops|general protection fault|Kernel panic'
                   r'|possible (circular|recursive) locking|inconsistent lock state'
                   r'|rcu.*(stall|detected stalls)|blocked for more than'
                   r'|UBSAN:|KASAN:|kernel BUG')
# Lockdep announces itself at boot; that line is not a report.
SPLAT_OK = re.compile(r'RCU lockdep checking is enabled|Lock dependency validator')

# The results channel: a virtio-serial port on QEMU's stdout, opened once
# per boot by guest/init. (The second serial port that carried the results
# before was opened and closed for every marker, and once lost a stage 1's
# end marker under host load; README "Flakes found" says what could do it.)
RESULTS_CHANNEL = ['-chardev', 'stdio,id=results,signal=off', '-device', 'virtio-serial-pci',
                   '-device', 'virtserialport,chardev=results,name=harness.results']
# guest/init's markers: "HARNESS[<n>] <what>", n counting every marker of
# the boot, stage 2 going on from stage 1's last.
MARKER = re.compile(r'^HARNESS\[(\d+)\] (.*)$')

KTAP_RESULT = re.compile(r'^(not ok|ok) (\d+) ([^#]*?)\s*(?:#\s*(SKIP|TODO|XFAIL)\b\s*(.*))?$')
KTAP_PLAN = re.compile(r'^1\.\.(\d+)$')


@dataclass
class Case:
    lane: str
    suite: str
    case: str
    result: str        # ok, fail, skip
    seconds: float
    detail: str = ''


@dataclass
class Segment:
    """One run of one test binary, between HARNESS BEGIN and HARNESS END."""
    binary: str
    stage: int
    start: float
    lines: list = field(default_factory=list)   # (time, text)
    rc: int = None
    end: float = None


@dataclass
class Boot:
    tag: str
    lines: list        # (time, text) of the results channel, markers
                       # as "HARNESS <what>"
    console: str       # path of the console log
    timed_out: bool
    done: bool
    qemu_rc: int       # QEMU's exit status
    qemu_log: str      # path of QEMU's own stderr
    markers: list = field(default_factory=list)   # (n, time, "HARNESS <what>")
    hang: list = field(default_factory=list)      # where the vCPUs of a hung guest were


def die(msg):
    sys.exit(f'error: {msg}')


def qemu_cmd(kernel, initrd, params, console, flavour, lane=None, monitor=None):
    qemu = QEMU
    # tcg=single: one TCG thread for all vCPUs (lanes.conf says why).
    if lane and lane.options.get('tcg') == 'single':
        qemu = [('tcg,thread=single' if a == 'tcg' else a) for a in QEMU]
    return qemu + QEMU_EXTRA + ['-kernel', kernel, '-initrd', initrd,
                                '-append', f'{CMDLINE} {FLAVOUR_CMDLINE.get(flavour, "")} {params}',
                                '-serial', f'file:{console}'] + RESULTS_CHANNEL + (
                                    ['-monitor', f'unix:{monitor},server=on,wait=off']
                                    if monitor else [])


def hmp(sock, command, wait=5.0):
    """One command on QEMU's human monitor; its answer, up to the prompt."""
    sock.sendall(command.encode() + b'\n')
    out, end = b'', time.monotonic() + wait
    while not out.rstrip().endswith(b'(qemu)') and time.monotonic() < end:
        sock.settimeout(max(end - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        out += chunk
    text = out.decode(errors='replace').replace('\r', '')
    # The monitor echoes the command line with terminal escapes: drop it.
    return '\n'.join(ln for ln in text.split('\n')[1:] if not ln.startswith('(qemu)'))


class Symbols:
    """A kernel's System.map (the test kernels have no KASLR)."""
    def __init__(self, kernel):
        self.addrs, self.names = [], []
        path = os.path.join(os.path.dirname(kernel), '..', '..', '..', 'System.map')
        try:
            with open(path) as f:
                for ln in f:
                    a, kind, name = ln.split()[:3]
                    if kind in 'tTwW':
                        self.addrs.append(int(a, 16))
                        self.names.append(name)
        except (FileNotFoundError, ValueError):
            pass

    def name(self, addr):
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0 or addr - self.addrs[i] > 0x10000:
            return None
        return f'{self.names[i]}+{addr - self.addrs[i]:#x}'


def hang_dump(monitor, out, kernel):
    """Where each vCPU of a hung guest is: its registers and the kernel
    text addresses on its stack, named from the kernel's System.map,
    written to `out`; one line per vCPU returned."""
    syms, summary = Symbols(kernel), []
    try:
        with socket.socket(socket.AF_UNIX) as sock, open(out, 'w') as f:
            sock.connect(monitor)
            hmp(sock, '')       # the banner
            hmp(sock, 'stop')
            for cpu in range(int(QEMU[QEMU.index('-smp') + 1])):
                hmp(sock, f'cpu {cpu}')
                regs = hmp(sock, 'info registers')
                rip = re.search(r'RIP=([0-9a-f]+)', regs)
                rsp = re.search(r'RSP=([0-9a-f]+)', regs)
                stack = hmp(sock, f'x/96gx 0x{rsp.group(1)}') if rsp else ''
                at = syms.name(int(rip.group(1), 16)) if rip else None
                calls = [n for n in (syms.name(int(w, 16)) for w in
                                     re.findall(r'\b0x(ffffffff[0-9a-f]{8})\b', stack)) if n]
                f.write(f'== cpu {cpu}: {at or "?"}\n{regs}\nstack (text addresses): '
                        f'{" ".join(calls)}\n{stack}\n')
                summary.append(f'cpu {cpu} at {at or (rip.group(1) if rip else "?")}; '
                               f'on its stack: {" < ".join(dict.fromkeys(calls[:12]))}')
    except OSError as e:
        summary.append(f'no register dump: {e}')
    return summary


def run_qemu(tag, kernel, initrd, params, timeout, logdir, flavour, lane=None, kernels=None):
    """Boot once; return the timestamped test output and the console log.
    A guest that hangs is stopped and its vCPUs' registers and stacks are
    written to <tag>.hang.log (kernels: the kernel booted, and the one
    kexec'd into, for the names of their addresses)."""
    console = os.path.join(logdir, f'{tag}.console.log')
    ktap = os.path.join(logdir, f'{tag}.ktap.log')
    qemu_log = os.path.join(logdir, f'{tag}.qemu.log')
    # A QEMU that fails early never opens the console: no old log shown as new.
    if os.path.exists(console):
        os.remove(console)
    mondir = tempfile.mkdtemp(prefix='luo-qemu-')
    monitor = os.path.join(mondir, 'monitor')
    cmd = qemu_cmd(kernel, initrd, params, console, flavour, lane, monitor)
    start = time.monotonic()
    lines, markers, buf, timed_out, hang = [], [], b'', False, []
    # QEMU's stdin is the host's side of the results port towards the
    # guest: the answers to SYNC go there. It stays open until the end (at
    # its end of file, QEMU would tell the guest that the host has left).
    with open(ktap, 'w') as log, subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(qemu_log, 'w')) as qemu:
        fd = qemu.stdout.fileno()
        while True:
            left = start + timeout - time.monotonic()
            if left <= 0:
                timed_out = True
                kexecd = any(text == 'HARNESS KEXEC' for _, text in lines)
                hang = hang_dump(monitor, os.path.join(logdir, f'{tag}.hang.log'),
                                 (kernels or (kernel, kernel))[1 if kexecd else 0])
                qemu.kill()
                break
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            *complete, buf = buf.split(b'\n')
            now = time.monotonic() - start
            for raw in complete:
                text = raw.decode(errors='replace').rstrip('\r')
                log.write(f'[{now:8.3f}] {text}\n')
                m = MARKER.match(text)
                if m:
                    text = f'HARNESS {m.group(2)}'
                    markers.append((int(m.group(1)), now, text))
                    if text == 'HARNESS SYNC':
                        try:
                            qemu.stdin.write(f'SYNC {m.group(1)}\n'.encode())
                            qemu.stdin.flush()
                        except BrokenPipeError:
                            pass    # QEMU has gone: its exit is reported
                lines.append((now, text))
        qemu.wait()
    shutil.rmtree(mondir, ignore_errors=True)
    done = any(text == 'HARNESS DONE' for _, text in lines)
    return Boot(tag, lines, console, timed_out, done, qemu.returncode, qemu_log, markers, hang)


def lost_markers(boot):
    """The markers that the guest wrote and that did not arrive, as
    (first n, last n, the marker that came next); a number that goes back
    is a marker out of order, (n, n, that marker)."""
    lost, last = [], 0
    for n, _, text in boot.markers:
        if n > last + 1:
            lost.append((last + 1, n - 1, text))
        elif n <= last:
            lost.append((n, n, f'{text} (out of order)'))
        last = max(last, n)
    return lost


def lost_text(lost):
    return '; '.join(f'marker{"s" if a != b else ""} #{a}{f"-#{b}" if a != b else ""} '
                     f'lost before "{text}"' for a, b, text in lost)


def unfinished(boot, seg, timeout):
    """Why a binary run has no end marker: what the rest of the boot shows."""
    begin = next((n for n, t, text in boot.markers if t == seg.start
                  and text.startswith(f'HARNESS BEGIN {seg.binary}')), 0)
    later = [(n, text) for n, _, text in boot.markers if n > begin]
    lost = [x for x in lost_markers(boot) if x[0] > begin]
    if lost:
        return ('its end marker did not arrive, later ones did: results channel lost '
                + lost_text(lost))
    if later:
        return f'no end marker, yet the guest went on: "{later[0][1]}"'
    if boot.timed_out:
        return f'did not finish: the guest was killed at the boot\'s timeout ({timeout} s)'
    if not boot.done:
        return 'did not finish: the guest stopped while it ran (panic or crash? see the console)'
    return 'did not finish'


def never_ran(boot, binary, stage):
    """Why a binary run expected in this boot has no begin marker."""
    said = [text for _, text in boot.lines if text.startswith('HARNESS ')]
    if stage == 2:
        if not any(x.startswith('HARNESS KEXEC-LOAD') for x in said):
            return 'never ran: stage 1 did not ask for the kexec'
        if 'HARNESS KEXEC' not in said:
            return 'never ran: the next kernel was not loaded (kexec load failed)'
        if not any(x.startswith('HARNESS BOOT') and 'stage=2' in x for x in said):
            return ('never ran: the next kernel did not reach its init (kexec or its boot '
                    'failed, see the console)')
    if not boot.lines:
        return 'never ran: nothing came out of the results channel (see the console)'
    return f'never ran (binary {binary}, stage {stage})'



def segments(boot, stage):
    """Split a boot's test output into one Segment per binary run."""
    segs, cur = [], None
    for t, text in boot.lines:
        m = re.match(r'^HARNESS (BEGIN|END) (\S+)(?: rc=(-?\d+))?', text)
        if m and m.group(1) == 'BEGIN':
            cur = Segment(m.group(2), stage, t)
            segs.append(cur)
        elif m and cur:
            cur.rc, cur.end = int(m.group(3)), t
            cur = None
        elif cur:
            cur.lines.append((t, text))
        elif text.startswith('HARNESS BOOT') and 'stage=2' in text:
            stage = 2
    return segs


def segment_cases(lane, seg, label, why_unfinished='did not finish'):
    """The test cases of one binary run: its KTAP results, or its exit status."""
    suite = seg.binary.split('/')[-1]
    cases, plan, last = [], None, seg.start
    for t, text in seg.lines:
        m = KTAP_RESULT.match(text)
        if m:
            ok, name, directive, why = m.group(1) == 'ok', m.group(3), m.group(4), m.group(5)
            result = 'skip' if directive == 'SKIP' else ('ok' if ok or directive == 'XFAIL' else 'fail')
            cases.append(Case(lane, suite, name, result, round(t - last, 3), why or ''))
            last = t
            continue
        m = KTAP_PLAN.match(text)
        if m:
            plan = int(m.group(1))
    end = seg.end if seg.end is not None else last
    timeout = next((x[len('HARNESS '):] for _, x in seg.lines
                    if x.startswith('HARNESS TIMEOUT')), None)
    if timeout:
        # The binary was killed in the guest: one failure, the lane goes on.
        cases.append(Case(lane, suite, label, 'fail', round(end - seg.start, 3), timeout))
    elif seg.rc is None:
        cases.append(Case(lane, suite, label, 'fail', round(end - last, 3), why_unfinished))
    elif not cases:
        result = {0: 'ok', 4: 'skip'}.get(seg.rc, 'fail')
        said = [x for _, x in seg.lines if x.strip()][-3:]
        cases.append(Case(lane, suite, label, result, round(end - seg.start, 3),
                          '' if result == 'ok' else
                          '\n'.join([f'exit status {seg.rc}; last output:'] + said)))
    else:
        if plan is not None and len(cases) < plan:
            cases.append(Case(lane, suite, f'{label} (plan)', 'fail', 0.0,
                              f'{len(cases)} of {plan} results reported'))
        if seg.rc not in (0, 4) and not any(c.result == 'fail' for c in cases):
            cases.append(Case(lane, suite, f'{label} (exit)', 'fail', 0.0,
                              f'exit status {seg.rc} with every result ok'))
    return cases


def splats(console):
    try:
        with open(console, errors='replace') as f:
            return [ln.rstrip() for ln in f if SPLAT.search(ln) and not SPLAT_OK.search(ln)]
    except FileNotFoundError:
        return []


def tail(path, n=25):
    try:
        with open(path, errors='replace') as f:
            return [ln.rstrip() for ln in f][-n:]
    except FileNotFoundError:
        return []


def boot_cases(lane, boot, expect, timeout):
    """All cases of one boot, in groups: (binary, its cases) for each binary
    run (kexec: "<binary> stage <n>"), then ("boot", the boot's health)."""
    groups, stage1_skipped = [], False
    segs = segments(boot, 1)
    for binary, stage in expect:
        seg = next((s for s in segs if s.binary == binary and s.stage == stage), None)
        stage_name = f' stage {stage}' if lane.kind != 'single' else ''
        label = binary.split('/')[-1] + stage_name
        if seg:
            cases = segment_cases(lane.name, seg, label,
                                  unfinished(boot, seg, timeout) if seg.rc is None else '')
        elif stage1_skipped:
            # guest/init does not kexec after a stage 1 that skipped.
            cases = [Case(lane.name, binary.split('/')[-1], label, 'skip', 0.0,
                          'stage 1 skipped')]
        else:
            cases = [Case(lane.name, binary.split('/')[-1], label, 'fail', 0.0,
                          never_ran(boot, binary, stage))]
        groups.append((binary + stage_name, cases))
        if seg and lane.kind != 'single':
            stage1_skipped = seg.rc == 4
            if seg.rc not in (0, 4):
                break   # stage 2 cannot run after a failed stage 1
    problems = []
    lost = lost_markers(boot)
    if lost:
        problems.append('results channel: ' + lost_text(lost))
    if not boot.lines:
        problems.append('no output on the results channel')
    if boot.timed_out:
        problems.append(f'timed out after {timeout} s' + ''.join(f'; {x}' for x in boot.hang))
    elif boot.qemu_rc:
        problems.append(f'QEMU exited with status {boot.qemu_rc} (its log: {boot.qemu_log})')
    elif not boot.done:
        problems.append('guest stopped before the end (panic or crash?)')
    problems += [x[len('HARNESS '):] for _, x in boot.lines if x.startswith('HARNESS ERROR')]
    found = splats(boot.console)
    if found:
        problems.append(f'{len(found)} splat line(s) in the console log')
    if problems:
        groups.append(('boot', [Case(lane.name, 'boot', boot.tag, 'fail', 0.0,
                                     '; '.join(problems))]))
        print(f'# {boot.tag}: {"; ".join(problems)}; console: {boot.console}')
        for ln in (found[:10] if found else tail(boot.console)):
            print(f'#   {ln}')
        if boot.qemu_rc and not boot.timed_out:
            print(f'# {boot.qemu_log}:')
            for ln in tail(boot.qemu_log, 10):
                print(f'#   {ln}')
    return groups, len(found)


# The kernel of the unpatched base, for the cross-version (xver) lanes; the
# initramfs of every flavour carries it as /boot/bzImage-base.
BASE_KERNEL = paths.kernel_image('base')


def lane_boots(lane):
    """(tag, kernel params, expected (binary, stage) runs, boots the base
    kernel) for each boot. xver-up boots the base kernel and kexecs into
    the flavour's; xver-down the reverse."""
    if lane.kind == 'single':
        yield (lane.name, f'harness.kind=single harness.run={",".join(lane.binaries)}',
               [(b, 1) for b in lane.binaries], False)
        return
    for spec in lane.binaries:
        b, extra = lanes_conf.binary(spec), lanes_conf.stage2_param(spec)
        params = f'harness.kind=kexec harness.run={b} harness.stage=1'
        if extra:
            params += f' harness.stage2={extra}'
        if lane.kind == 'xver-down':
            params += ' harness.next=/boot/bzImage-base'
        yield (f'{lane.name}-{b.split("/")[-1]}', params, [(b, 1), (b, 2)],
               lane.kind == 'xver-up')


def flavour_boots(lane, flavour, kernel):
    """lane_boots() on a flavour: (tag, kernel, params, expected runs, timeout)."""
    for tag, params, expect, boots_base in lane_boots(lane):
        timeout = lane.timeout * FLAVOUR_SLOWDOWN.get(flavour, 1)
        # Each binary of the boot gets its share of the lane's timeout in
        # the guest; the boot's own timeout, a little longer, is the
        # backstop for a guest that hangs as a whole.
        params += f' harness.timeout={max(timeout // len(expect), 1)}'
        yield tag, BASE_KERNEL if boots_base else kernel, params, expect, timeout


def timeline(boot):
    """Print what the demo did, stamped with the host clock: the boots, the
    kexec and the demo binary's KTAP results; "verified" is its last passing
    case whose name says the guest verified its memory."""
    kexec = next((t for t, x in boot.lines if x == 'HARNESS KEXEC'), None)
    verified = [t for t, x in boot.lines
                if re.match(r'ok \d+ \S*verif', x)]
    print('# timeline (host clock, seconds since QEMU start)')
    for t, text in boot.lines:
        if text == 'HARNESS KEXEC':
            shown = 'kexec: rebooting into the next kernel'
        elif text.startswith('HARNESS BOOT '):
            shown = 'kernel up: ' + text[len('HARNESS BOOT '):]
        elif re.match(r'(not )?ok \d+ ', text):
            shown = re.sub(r'^((not )?ok) \d+ ', r'\1 ', text)
        else:
            continue
        print(f'  {t:8.2f}s  {shown}')
    if kexec is not None and verified:
        print(f'# reboot request to guest memory verified: {verified[-1] - kexec:.2f} s')


def blackout(boot):
    """The phases of a live update's blackout, stamped with the host clock:
    the binary's "# blackout: <event>" lines and, between the first and the
    last of them, what the harness did (end of stage 1, kexec, next boot);
    the total runs from the first event to the last."""
    harness = {'HARNESS KEXEC-LOAD': 'stage 1 over: init loads the next kernel',
               'HARNESS KEXEC': 'next kernel loaded: kexec',
               'HARNESS BOOT': 'next kernel up: its init runs'}
    marks = [(t, text[len('# blackout: '):]) for t, text in boot.lines
             if text.startswith('# blackout: ')]
    if len(marks) < 2:
        return
    # "HARNESS BOOT kind=... stage=2 ...": the words before " kind=".
    # By time alone: lines stamped alike keep the order they came in.
    events = sorted(marks + [(t, harness[k]) for t, text in boot.lines
                             for k in harness if text.split(' kind=')[0] == k
                             and marks[0][0] < t < marks[-1][0]], key=lambda e: e[0])
    print(f'# blackout of {boot.tag} (host clock, seconds since the previous event)')
    for (t0, _), (t, what) in zip(events, events[1:]):
        print(f'# blackout   {t - t0:7.3f}  {what}')
    print(f'# blackout total {events[-1][0] - events[0][0]:.3f} s: '
          f'{events[0][1]} -> {events[-1][1]}')


def preflight(flavour, kernel, initrd, names):
    """Stop with the command that fixes it when something a boot needs is
    missing or stale; return the base's name."""
    version = paths.BASE_USED
    if not os.path.exists(version):
        die(f'{version} is missing: run `make` first (or set BUILD to a build directory)')
    make = f'make FLAVOURS={flavour} initramfs'
    for path in (kernel, initrd):
        if not os.path.exists(path):
            die(f'{path} is missing: run `{make}` first')
    # kexec lanes boot the kernel the initramfs carries: it must be this one.
    kernels = [kernel]
    if any(lane.kind.startswith('xver') for lane in lanes_conf.select(names)):
        if not os.path.exists(BASE_KERNEL):
            die(f'{BASE_KERNEL} is missing: run `make base-kernel` first')
        kernels.append(BASE_KERNEL)
    for k in kernels:
        if os.path.getmtime(initrd) < os.path.getmtime(k):
            die(f'{initrd} is older than {k}: run `{make}`')
    with open(version) as f:
        return f.read().strip()


def lane_initrd(initrd, lane):
    """The initramfs a lane boots: the flavour's, with the lane's extra
    parts appended (the kernel unpacks concatenated archives one after the
    other), made again when a part is newer."""
    if not lane.extras:
        return initrd
    parts = [initrd] + [paths.extra_initramfs(e) for e in lane.extras]
    for p in parts[1:]:
        if not os.path.exists(p):
            die(f'{p} is missing: run `make initramfs` first')
    out = re.sub(r'\.cpio$', '', initrd) + ''.join(f'+{e}' for e in lane.extras) + '.cpio'
    if (not os.path.exists(out)
            or any(os.path.getmtime(p) > os.path.getmtime(out) for p in parts)):
        with open(out + '.tmp', 'wb') as f:
            for p in parts:
                with open(p, 'rb') as g:
                    shutil.copyfileobj(g, f)
        os.replace(out + '.tmp', out)
    return out


def results_name(flavour, names):
    """The name of a run's results files: <flavour> for every lane, else
    named after the lanes (and the lanes file, when not lanes.conf)."""
    conf = os.path.splitext(os.path.basename(lanes_conf.CONF))[0]
    return '-'.join([flavour] + ([] if conf == 'lanes' else [conf]) + sorted(names))


def run_flavour(flavour, names, show_timeline, dry_run):
    """Run the lanes on one kernel flavour; return its cases. A dry run
    prints the QEMU command line of every boot and runs nothing."""
    result_name = results_name(flavour, names)
    kernel = paths.kernel_image(flavour)
    initrd = paths.initramfs_of(flavour)
    logdir = paths.logs_dir(flavour)
    resdir = paths.RESULTS
    os.makedirs(logdir, exist_ok=True)
    os.makedirs(resdir, exist_ok=True)
    base = preflight(flavour, kernel, initrd, names)
    print(f'# base: {base}; kernel: {flavour} ({kernel})')
    if dry_run:
        for lane in lanes_conf.select(names):
            for tag, boot_kernel, params, _, _ in flavour_boots(lane, flavour, kernel):
                console = os.path.join(logdir, f'{tag}.console.log')
                print(shlex.join(qemu_cmd(boot_kernel, lane_initrd(initrd, lane), params,
                                          console, flavour, lane)))
        return []

    all_cases, total_splats, started = [], 0, time.monotonic()
    ktap_lanes = []     # (lane, [(binary, [Case])]) for the KTAP file
    for lane in lanes_conf.select(names):
        lane_start, lane_groups, lane_splats = time.monotonic(), [], 0
        print(f'# lane {lane.name} on {flavour} ({lane.kind}, {len(lane.binaries)} binaries)')
        for tag, boot_kernel, params, expect, timeout in flavour_boots(lane, flavour, kernel):
            # The kernel of a kexec's second stage: the base for xver-down.
            after = BASE_KERNEL if lane.kind == 'xver-down' else kernel
            boot = run_qemu(tag, boot_kernel, lane_initrd(initrd, lane), params, timeout + 30,
                            logdir, flavour, lane, (boot_kernel, after))
            groups, found = boot_cases(lane, boot, expect, timeout)
            cases = [c for _, group in groups for c in group]
            lane_splats += found
            for c in cases:
                directive = f' # SKIP {c.detail}' if c.result == 'skip' else ''
                if c.result == 'fail' and c.detail.startswith('TIMEOUT'):
                    directive = ' # TIMEOUT'
                print(f'{"ok" if c.result != "fail" else "not ok"} {flavour}/'
                      f'{lane.name}: {c.suite}: {c.case}{directive}', flush=True)
                if c.result == 'fail' and c.detail:
                    print('\n'.join(f'#   {x}' for x in c.detail.split('\n')))
            if show_timeline:
                timeline(boot)
            blackout(boot)
            lane_groups += groups
        lane_cases = [c for _, group in lane_groups for c in group]
        ktap_lanes.append((lane.name, lane_groups))
        counts = tally(lane_cases)
        print(f'# lane {lane.name} on {flavour}: {counts["ok"]} passed, {counts["fail"]} failed, '
              f'{counts["skip"]} skipped, {lane_splats} splats, '
              f'{time.monotonic() - lane_start:.1f} s')
        all_cases += lane_cases
        total_splats += lane_splats

    meta = {'base': base, 'flavour': flavour, 'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
            'seconds': round(time.monotonic() - started, 1), 'splats': total_splats}
    with open(os.path.join(resdir, f'{result_name}.json'), 'w') as f:
        json.dump({'meta': meta, 'cases': [asdict(c) for c in all_cases]}, f, indent=1)
    with open(os.path.join(resdir, f'{result_name}.tsv'), 'w') as f:
        f.write('lane\tsuite\tcase\tresult\tseconds\n')
        for c in all_cases:
            f.write(f'{c.lane}\t{c.suite}\t{c.case}\t{c.result}\t{c.seconds}\n')
    with open(os.path.join(resdir, f'{result_name}.ktap'), 'w') as f:
        f.write('\n'.join(ktap(meta, ktap_lanes)) + '\n')
    print(f'# {flavour}: {len(all_cases)} cases, {total_splats} splats, {meta["seconds"]} s; '
          f'results in {resdir}/{result_name}.tsv')
    return all_cases


def ktap_status(cases):
    """The result line's verdict and directive for a test of these cases."""
    counts = tally(cases)
    if counts['fail']:
        return 'not ok', ''
    return 'ok', ' # SKIP' if counts['skip'] == len(cases) else ''


def ktap_case(num, case, indent):
    """One case as a KTAP result line; its detail in diagnostic lines before
    it, where kunit.py's parser attaches them to it. A skip's last line of
    detail is its reason; a timeout's diagnostic starts with TIMEOUT."""
    detail = case.detail.split('\n') if case.detail and case.result != 'ok' else []
    if case.suite == 'boot' and case.detail.startswith('timed out'):
        detail[0] = 'TIMEOUT ' + detail[0]
    line = f'{"not ok" if case.result == "fail" else "ok"} {num} {case.case}'
    if case.result == 'skip':
        # The last line: the reason given, or the binary's own "# SKIP ...".
        reason = re.sub(r'^.*# SKIP\s*', '', detail.pop() if detail else '')
        line = f'{line} # SKIP {reason}'.rstrip()
    return [f'{indent}# {x}' for x in detail] + [indent + line]


def ktap_test(num, name, items, indent):
    """A KTAP subtest with its own plan: items are (name, items) subtests
    or Case leaves."""
    inner = indent + '    '
    lines = [f'{inner}KTAP version 1', f'{inner}# Subtest: {name}', f'{inner}1..{len(items)}']
    cases = []
    for n, item in enumerate(items, 1):
        if isinstance(item, Case):
            lines += ktap_case(n, item, inner)
            cases.append(item)
        else:
            lines += ktap_test(n, *item, inner)
            cases += leaves(item[1])
    status, directive = ktap_status(cases)
    return lines + [f'{indent}{status} {num} {name}{directive}']


def leaves(items):
    return [c for item in items
            for c in ([item] if isinstance(item, Case) else leaves(item[1]))]


def ktap(meta, lanes):
    """KTAP version 1 of one flavour's run: a test per lane, in it a test
    per binary run (kexec lanes: per stage; "boot" for a boot's health),
    in that the cases."""
    lines = ['KTAP version 1', f'# flavour: {meta["flavour"]}; base: {meta["base"]}; '
             f'date: {meta["date"]}; splats: {meta["splats"]}', f'1..{len(lanes)}']
    for n, (name, groups) in enumerate(lanes, 1):
        lines += ktap_test(n, name, groups, '')
    return lines


def tally(cases):
    return {r: sum(c.result == r for c in cases) for r in ('ok', 'fail', 'skip')}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--flavour', default='test', help='kernel flavours, comma-separated')
    ap.add_argument('--timeline', action='store_true', help='print the demo timeline')
    ap.add_argument('--icount', action='store_true',
                    help='guest clock counts instructions (benchmarks)')
    ap.add_argument('--accel', choices=ACCELS, default=os.environ.get('ACCEL', 'tcg'),
                    help='QEMU accelerator (default: $ACCEL or tcg; --icount is always tcg)')
    ap.add_argument('--dry-run', action='store_true',
                    help='print the QEMU command lines, run nothing')
    ap.add_argument('lanes', nargs='*')
    args = ap.parse_args()
    if args.accel not in ACCELS:
        die(f'unknown accelerator {args.accel!r} (have: {", ".join(ACCELS)})')
    if args.icount:
        if args.accel != 'tcg':
            print(f'# --icount needs TCG: {args.accel} not used')
        args.accel = 'tcg'
        QEMU_EXTRA.extend(ICOUNT)
    QEMU.extend(ACCELS[args.accel])
    # The TSC counts instructions with -icount, and KVM tells the guest its
    # frequency: only plain TCG needs it.
    khz = host_tsc_khz() if args.accel == 'tcg' and not args.icount else None
    if khz:
        global CMDLINE
        CMDLINE += f' tsc_early_khz={khz}'
    if not shutil.which(QEMU[0]):
        die(f'{QEMU[0]} not found in PATH: apt-get install qemu-system-x86 (or run `make deps`)')
    if args.accel == 'kvm' and not args.dry_run and not os.access('/dev/kvm', os.R_OK | os.W_OK):
        die('ACCEL=kvm, but /dev/kvm ' + ('is not readable and writable by this user'
                                         if os.path.exists('/dev/kvm') else 'does not exist')
            + ': run without ACCEL=kvm (TCG is the default)')
    cases = []
    for flavour in args.flavour.split(','):
        cases += run_flavour(flavour, args.lanes, args.timeline, args.dry_run)
    if args.dry_run:
        return 0
    counts = tally(cases)
    line = f'{counts["ok"]} passed, {counts["fail"]} failed'
    print(line + (f', {counts["skip"]} skipped' if counts['skip'] else ''))
    return 1 if counts['fail'] else 0


if __name__ == '__main__':
    sys.exit(main())
