# SPDX-License-Identifier: GPL-2.0
# The user-facing targets. The work is done by scripts/, one script per
# concern; see README.md.
#
#   make              build everything and run the live-update demo
#   make demo-qemu    Debian's QEMU keeps a guest running across the kexec
#                     (lane qemu-kexec on the test flavour)
#   make test         run every test lane; non-zero exit on any failure
#                     (ACCEL=kvm: QEMU with -accel kvm -cpu host, not TCG)
#   make bench        benchmarks of bench.conf, base against patched kernel
#                     (BENCH_CONFIG=prod: both without lock debugging)
#   make export       write the tree's commits to patches/
#   make check-series fail unless patches/ and the tree agree
#   make check-patches checkpatch --strict, and every commit builds (W=1)
#   make reset-tree   drop the tree's commits and apply patches/ again
#   make lint         shellcheck and python checks of the harness, and
#                     run.py's verdicts on made-up boots (scripts/test_run.py)
#   make counts       counts of the last results; README.md's that disagree
#   make update-counts rewrite README.md's marked counts from the results
#   make soak         run lanes RUNS times (default 10), with LOAD=cpu=N,mem=SIZE,stall=S
#                     under a background load on the host, and table each
#                     case's pass rate (build/soak/<date>/table.md)
#   make mutants      break the kernel on purpose, one mutant of mutants.conf
#                     at a time (MUTANTS=<file>: another list), and check that
#                     a test kills each; results in build/mutants.tsv
#   make update-mutants rewrite README.md's table of mutants.conf from the results

S := scripts
comma := ,
# Paths and flavours come from scripts/lib.sh, where they are defined.
lib = $(shell bash -c '. $(S)/lib.sh && $(1)')
# A path as the user sees it: relative to here when it is under here.
rel = $(patsubst $(CURDIR)/%,%,$(1))
build := $(call lib,echo "$$BUILD")
headers_flavour := $(call lib,echo "$$HEADERS_FLAVOUR")
test_flavours := $(call lib,echo "$$TEST_FLAVOURS")
FLAVOURS ?= $(test_flavours)
LANES ?=
# QEMU's accelerator for the tests and the demo: tcg, or kvm where /dev/kvm
# works. Benchmarks always use TCG (-icount).
ACCEL ?= tcg

.NOTPARALLEL:
.PHONY: all demo demo-qemu test soak bench deps tree kernel base-kernel test-kernel initramfs export check-series check-patches \
	reset-tree lint counts update-counts mutants update-mutants clean

all: demo

deps:
	@$(S)/deps.sh

tree: deps
	@$(S)/tree.sh sync

kernel: tree
	@for f in $(subst $(comma), ,$(FLAVOURS)); do $(S)/kernel.sh $$f || exit 1; done

initramfs: kernel
	@for f in $(subst $(comma), ,$(FLAVOURS)); do $(S)/initramfs.sh $$f || exit 1; done

demo: FLAVOURS = test
demo: initramfs
	@$(S)/run.py --accel $(ACCEL) --timeline demo
	@echo "# artifacts:"
	@echo "#   kernel:  $(call rel,$(call lib,kernel_image test))"
	@echo "#   series:  patches/ ($$(grep -c . patches/series || true) patches), applied in $(call rel,$(call lib,echo "$$TREE"))"
	@echo "#   logs:    $(call rel,$(call lib,logs_dir test))/"

demo-qemu: FLAVOURS = test
demo-qemu: initramfs
	@$(S)/run.py --accel $(ACCEL) qemu-kexec
	@echo "# QEMU: $$(qemu-system-x86_64 --version | head -1)"
	@echo "# logs: $(call rel,$(call lib,logs_dir test))/qemu-kexec-*"

# The cross-version lanes kexec between the flavour's kernel and the
# unpatched base (flavour "base", built once and put in every initramfs).
base-kernel: tree
	@$(S)/kernel.sh base

test: base-kernel initramfs
	@$(S)/tree.sh check
	@$(S)/run.py --accel $(ACCEL) --flavour $(FLAVOURS) $(LANES)

# Flake hunting (scripts/soak.py): LANES (default: all) on FLAVOURS, RUNS
# times; LOAD=cpu=N,mem=SIZE,stall=S spins N processes, keeps SIZE of
# memory busy and stops run.py for S seconds now and then, meanwhile
# (stopped at the end, or after 4 hours).
RUNS ?= 10
LOAD ?=
soak: base-kernel initramfs
	@$(S)/soak.py --runs $(RUNS) --flavour $(FLAVOURS) --accel $(ACCEL) \
		$(if $(LOAD),--load $(LOAD)) $(LANES)

# The same benchmark binary on the unpatched base and on the patched kernel,
# in one run, with QEMU's instruction-counting clock. BENCH_CONFIG=prod
# compares the two with configs/prod.config (no lock debugging) instead;
# LANES picks some of bench.conf's lanes.
BENCH_CONFIG ?=
bench_pair = $(if $(BENCH_CONFIG),base-$(BENCH_CONFIG)$(comma)$(BENCH_CONFIG),base$(comma)test)
# The test binaries are built against the test kernel's headers, whatever
# the flavours: build it first.
test-kernel: tree
	@$(S)/kernel.sh $(headers_flavour)

bench: FLAVOURS = $(bench_pair)
bench: test-kernel initramfs
	@LANES_CONF=bench.conf $(S)/run.py --icount --flavour $(bench_pair) $(LANES)
	@for lane in $(or $(LANES),$$(LANES_CONF=bench.conf $(S)/lanes.py names)); do \
		BENCH_FLAVOURS=$(bench_pair) $(S)/bench.py $$lane || exit 1; done

export:
	@$(S)/tree.sh export

check-series:
	@$(S)/tree.sh check

check-patches: kernel
	@$(S)/check-patches.sh

reset-tree:
	@$(S)/tree.sh reset

lint:
	shellcheck -x $(S)/*.sh guest/init .ci/run
	python3 -m py_compile $(S)/*.py
	python3 $(S)/test_run.py

# The README's counts are of test and debug, whatever FLAVOURS says.
counts:
	@$(S)/counts.py check

update-counts:
	@$(S)/counts.py update

# Mutation testing (scripts/mutants.py): each mutant is built in its own
# worktree and build directory per flavour under build/mutants/ and booted
# with the flavour's initramfs; not part of `make test`.
MUTANTS ?= mutants.conf
mutants: base-kernel initramfs
	@$(S)/mutants.py --list $(MUTANTS)

update-mutants:
	@$(S)/mutants.py --update-readme

clean:
	rm -rf $(build)/kernel-* $(build)/selftests $(build)/guest $(build)/initramfs-* $(build)/logs \
		$(build)/qemu-files \
		$(build)/results
