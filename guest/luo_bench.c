// SPDX-License-Identifier: GPL-2.0
/*
 * luo_bench: cost of preserving and unpreserving memfds in one session.
 *
 * For each N, create N one-page memfds, then time preserving all of them
 * into one session and time closing the session (which unpreserves them).
 * Run under QEMU with -icount, the guest clock counts instructions, so the
 * figures repeat from run to run and compare kernels, not machines.
 *
 * Output, one line per N and phase, for scripts/bench.py:
 *   # BENCH <phase> n=<N> total_ns=<T> per_file_ns=<T/N>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/liveupdate.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const int sizes[] = { 1, 100, 1000, 10000 };

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void die(const char *what)
{
	printf("not ok 1 luo_bench # %s: %s\n", what, strerror(errno));
	exit(1);
}

static void report(const char *phase, int n, uint64_t ns)
{
	printf("# BENCH %s n=%d total_ns=%llu per_file_ns=%llu\n", phase, n,
	       (unsigned long long)ns, (unsigned long long)(ns / n));
}

static void run(int luo, int n)
{
	struct liveupdate_ioctl_create_session cs = { .size = sizeof(cs) };
	int *fds = calloc(n, sizeof(*fds));
	uint64_t t0, t1;
	int i;

	if (!fds)
		die("calloc");
	for (i = 0; i < n; i++) {
		fds[i] = memfd_create("bench", 0);
		if (fds[i] < 0 || ftruncate(fds[i], getpagesize()) ||
		    pwrite(fds[i], "x", 1, 0) != 1)
			die("memfd");
	}
	snprintf((char *)cs.name, sizeof(cs.name), "bench-%d", n);
	if (ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &cs))
		die("LIVEUPDATE_IOCTL_CREATE_SESSION");

	t0 = now_ns();
	for (i = 0; i < n; i++) {
		struct liveupdate_session_preserve_fd pf = {
			.size = sizeof(pf), .fd = fds[i], .token = i,
		};

		if (ioctl(cs.fd, LIVEUPDATE_SESSION_PRESERVE_FD, &pf))
			die("LIVEUPDATE_SESSION_PRESERVE_FD");
	}
	t1 = now_ns();
	report("preserve", n, t1 - t0);

	t0 = now_ns();
	close(cs.fd);
	t1 = now_ns();
	report("unpreserve", n, t1 - t0);

	for (i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
}

int main(void)
{
	struct rlimit rl = { 20000, 20000 };
	unsigned int i;
	int luo;

	printf("TAP version 13\n1..1\n");
	if (setrlimit(RLIMIT_NOFILE, &rl))
		die("setrlimit");
	luo = open("/dev/liveupdate", O_RDWR);
	if (luo < 0)
		die("/dev/liveupdate");
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		run(luo, sizes[i]);
	printf("ok 1 luo_bench\n");
	return 0;
}
