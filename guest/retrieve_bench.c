// SPDX-License-Identifier: GPL-2.0
/*
 * retrieve_bench: what a live update costs per GiB of preserved memory, in
 * the next kernel: its boot, and the retrieve of a guest_memfd or of a
 * memfd, the parts of a VM's blackout that grow with the guest.
 *
 * Built once per variant (guest/Makefile), the variant in the name:
 *   retrieve_bench_none           nothing preserved: the boot's baseline
 *   retrieve_bench_memfd_<MiB>    a memfd of <MiB>, every page written
 *   retrieve_bench_gmem_<MiB>     a guest_memfd of <MiB> (MMAP |
 *                                 INIT_SHARED) and its VM, every page
 *                                 written through mmap()
 *
 *   -s 1   create and fill the memory, preserve it in a session with a
 *          record of what it is; a child holds the session for the kexec.
 *   -s 2   first thing, read how long the kernel took to boot up to here
 *          (CLOCK_BOOTTIME); retrieve the session, the VM (a guest_memfd's
 *          retrieve needs it; timed apart), the guest_memfd or the memfd,
 *          each timed; check one word of every page; finish.
 *
 * Run it under QEMU with -icount shift=0,sleep=off: the guest clock then
 * counts instructions (1 ns per instruction), so figures repeat and
 * compare kernels rather than hosts. Output, for scripts/bench.py:
 *   # BENCH <phase> mib=<MiB> ns=<ns>
 * with phase boot-memfd or boot-guest_memfd (the next kernel's boot with
 * that much of it preserved; the baseline reports both at mib=0),
 * retrieve-memfd, retrieve-guest_memfd, retrieve-vm.
 * On a kernel that cannot preserve a VM (the base), the guest_memfd
 * variants skip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <libliveupdate.h>

#define SESSION		"retrieve-bench"
#define TOKEN_RECORD	1
#define TOKEN_VM	2
#define TOKEN_MEM	3
#define SEED		0x9e3779b97f4a7c15ull

struct record {
	char magic[8];
	char kind[8];		/* none, memfd, gmem */
	uint64_t mib;
};

static char kind[8];
static uint64_t mib;

static uint64_t now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void parse_variant(void)
{
	const char *v = VARIANT, *sep = strchr(v, '_');

	snprintf(kind, sizeof(kind), "%.*s", sep ? (int)(sep - v) : (int)strlen(v), v);
	mib = sep ? strtoull(sep + 1, NULL, 10) : 0;
	if (strcmp(kind, "none") && strcmp(kind, "memfd") && strcmp(kind, "gmem"))
		ksft_exit_fail_msg("variant %s: none, memfd_<MiB> or gmem_<MiB>\n", v);
}

static void fill(int fd, uint64_t bytes)
{
	uint64_t *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	uint64_t i;

	if (p == MAP_FAILED)
		ksft_exit_fail_msg("mmap: %s\n", strerror(errno));
	for (i = 0; i < bytes / 4096; i++)
		p[i * 512] = i ^ SEED;
	munmap(p, bytes);
}

static uint64_t check(int fd, uint64_t bytes)
{
	uint64_t *p = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
	uint64_t i, bad = 0;

	if (p == MAP_FAILED)
		ksft_exit_fail_msg("mmap: %s\n", strerror(errno));
	for (i = 0; i < bytes / 4096; i++)
		bad += p[i * 512] != (i ^ SEED);
	munmap(p, bytes);
	return bad;
}

static int create_gmem(int *vm)
{
	struct kvm_create_guest_memfd gmem = {
		.size = mib << 20,
		.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
	};
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), fd;

	if (kvm < 0)
		ksft_exit_skip("no /dev/kvm: %s\n", strerror(errno));
	*vm = ioctl(kvm, KVM_CREATE_VM, KVM_X86_DEFAULT_VM);
	if (*vm < 0)
		ksft_exit_fail_msg("KVM_CREATE_VM: %s\n", strerror(errno));
	fd = ioctl(*vm, KVM_CREATE_GUEST_MEMFD, &gmem);
	if (fd < 0)
		ksft_exit_skip("KVM_CREATE_GUEST_MEMFD (MMAP | INIT_SHARED): %s\n", strerror(errno));
	return fd;
}

static void stage1(int luo)
{
	struct record rec = { .magic = "rtrbnch" };
	int session, record, mem = -1, vm = -1, err;

	ksft_set_plan(1);
	snprintf(rec.kind, sizeof(rec.kind), "%s", kind);
	rec.mib = mib;
	session = luo_create_session(luo, SESSION);
	if (session < 0)
		ksft_exit_fail_msg("create session: %s\n", strerror(-session));
	if (!strcmp(kind, "memfd")) {
		mem = memfd_create("retrieve-bench", 0);
		if (mem < 0 || ftruncate(mem, mib << 20))
			ksft_exit_fail_msg("memfd: %s\n", strerror(errno));
	} else if (!strcmp(kind, "gmem")) {
		mem = create_gmem(&vm);
		err = luo_session_preserve_fd(session, vm, TOKEN_VM);
		if (err)
			ksft_exit_skip("this kernel cannot preserve a VM: %s\n", strerror(-err));
	}
	if (mem >= 0) {
		fill(mem, mib << 20);
		err = luo_session_preserve_fd(session, mem, TOKEN_MEM);
		if (err)
			ksft_exit_fail_msg("preserve %s: %s\n", kind, strerror(-err));
	}
	record = memfd_create("retrieve-bench-record", 0);
	if (record < 0 || write(record, &rec, sizeof(rec)) != sizeof(rec))
		ksft_exit_fail_msg("record: %s\n", strerror(errno));
	err = luo_session_preserve_fd(session, record, TOKEN_RECORD);
	if (err)
		ksft_exit_fail_msg("preserve record: %s\n", strerror(-err));
	ksft_test_result_pass("preserved %s %llu MiB\n", kind, (unsigned long long)mib);
	daemonize_and_wait();
}

static int timed_retrieve(int session, uint64_t token, const char *phase)
{
	uint64_t t = now_ns(CLOCK_MONOTONIC);
	int fd = luo_session_retrieve_fd(session, token);

	t = now_ns(CLOCK_MONOTONIC) - t;
	if (fd < 0)
		ksft_exit_fail_msg("retrieve %s: %s\n", phase, strerror(-fd));
	ksft_print_msg("BENCH %s mib=%llu ns=%llu\n", phase, (unsigned long long)mib,
		       (unsigned long long)t);
	return fd;
}

static void stage2(int luo, uint64_t boot_ns)
{
	const char *name = !strcmp(kind, "gmem") ? "guest_memfd" : kind;
	struct record rec;
	int session, record, mem, err;
	uint64_t bad = 0;

	ksft_set_plan(2);
	session = luo_retrieve_session(luo, SESSION);
	if (session < 0)
		ksft_exit_fail_msg("retrieve session: %s\n", strerror(-session));
	record = luo_session_retrieve_fd(session, TOKEN_RECORD);
	if (record < 0 || pread(record, &rec, sizeof(rec), 0) != sizeof(rec) ||
	    strcmp(rec.magic, "rtrbnch") || strcmp(rec.kind, kind) || rec.mib != mib)
		ksft_exit_fail_msg("record: not the one of %s\n", VARIANT);
	if (!strcmp(kind, "none")) {
		ksft_print_msg("BENCH boot-memfd mib=0 ns=%llu\n", (unsigned long long)boot_ns);
		ksft_print_msg("BENCH boot-guest_memfd mib=0 ns=%llu\n", (unsigned long long)boot_ns);
	} else {
		ksft_print_msg("BENCH boot-%s mib=%llu ns=%llu\n", name, (unsigned long long)mib,
			       (unsigned long long)boot_ns);
		if (!strcmp(kind, "gmem"))
			timed_retrieve(session, TOKEN_VM, "retrieve-vm");
		mem = timed_retrieve(session, TOKEN_MEM, !strcmp(kind, "gmem") ?
				     "retrieve-guest_memfd" : "retrieve-memfd");
		bad = check(mem, mib << 20);
	}
	ksft_test_result(!bad, "retrieved %s %llu MiB (%llu pages wrong)\n", kind,
			 (unsigned long long)mib, (unsigned long long)bad);
	err = luo_session_finish(session);
	ksft_test_result(!err, "finished\n");
	ksft_finished();
}

int main(int argc, char *argv[])
{
	/* Before anything else: how long this kernel took to get here. */
	uint64_t boot_ns = now_ns(CLOCK_BOOTTIME);
	int luo;

	ksft_print_header();
	parse_variant();
	if (argc != 3 || strcmp(argv[1], "-s") || (strcmp(argv[2], "1") && strcmp(argv[2], "2")))
		ksft_exit_fail_msg("usage: %s -s 1|2\n", argv[0]);
	luo = luo_open_device();
	if (luo < 0)
		ksft_exit_fail_msg("open /dev/liveupdate: %s\n", strerror(errno));
	if (argv[2][0] == '1')
		stage1(luo);
	else
		stage2(luo, boot_ns);
	return 0;
}
