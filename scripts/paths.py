# SPDX-License-Identifier: GPL-2.0
"""The harness's paths and flavours for the Python scripts, read from
scripts/lib.sh, where they are defined once (with the same environment
overrides: BUILD=..., TREE=...).

  paths.BUILD, paths.TOP, ...     lib.sh's variables of those names
  paths.kernel_image('test'), ... lib.sh's functions of those names
"""
import os
import subprocess

LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'lib.sh')


def lib(script, *args):
    """The output of a bash script run after sourcing lib.sh."""
    return subprocess.run(['bash', '-c', f'. "$0" && {script}', LIB, *args], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.rstrip('\n')


VARIABLES = ('TOP', 'BUILD', 'PATCHES', 'BASE_USED', 'RESULTS', 'TEST_FLAVOURS')
TOP, BUILD, PATCHES, BASE_USED, RESULTS, TEST_FLAVOURS = lib(
    'for v; do printf "%s\\0" "${!v}"; done', *VARIABLES).split('\0')[:len(VARIABLES)]


def kernel_image(flavour):
    return lib('kernel_image "$1"', flavour)


def initramfs_of(flavour):
    return lib('initramfs_of "$1"', flavour)


def extra_initramfs(name):
    return lib('extra_initramfs "$1"', name)


def logs_dir(flavour):
    return lib('logs_dir "$1"', flavour)
