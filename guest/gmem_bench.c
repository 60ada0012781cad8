// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_bench: what the guest_memfd freeze gate costs, and how long it takes
 * to preserve a guest_memfd with the Live Update Orchestrator.
 *
 * The series puts the folio allocation of a guest_memfd, and fallocate(),
 * in a read section of one global SRCU (the freeze gate). Preserving a
 * guest_memfd sets its frozen flag, waits for a grace period of that SRCU
 * and hands every folio to KHO. With the same binary on the base and on the
 * patched kernel, this measures:
 *
 *  fault        user faults on a fresh guest_memfd mmap()ed MAP_SHARED,
 *               one written byte per page (pages/s);
 *  fallocate    allocating a fresh guest_memfd with fallocate(), in 2 MiB
 *               chunks and in one call, and punching it again, in one call
 *               and in 2 MiB chunks (pages/s);
 *  preserve     LIVEUPDATE_SESSION_PRESERVE_FD of a fully populated memfd,
 *               and the close of its session, which unpreserves it (ns);
 *               on a kernel that can preserve a VM (probed, a SKIP
 *               otherwise), the same for an empty and for a fully populated
 *               guest_memfd, whose VM is preserved first and not timed:
 *               idle; while two processes fault pages into another
 *               guest_memfd, or fallocate() it, and punch them out again
 *               (readers of the gate, which the grace period may wait
 *               for); and while two processes do the same to a memfd (the
 *               same load without readers of the gate: the control).
 *
 * Run it under QEMU with -icount shift=0,sleep=off: CLOCK_MONOTONIC then
 * counts guest instructions (1 ns per instruction), so the figures repeat
 * and compare kernels rather than hosts. Each figure is the median of
 * several runs, after one run that is not counted (first-touch costs).
 * The benchmark and its load all run on one CPU, see setup(): a preserve
 * under load shares that CPU with the load, so compare it with the same
 * preserve under the control load, not with the idle one.
 *
 * Output, for scripts/bench.py, one line per figure:
 *   # BENCH <phase> <metric>=<median> unit=<unit> reps=<R> min=<v> max=<v>
 * with unit pages/s (throughput) or ns (latency), and a line
 *   # BENCH <phase> ratio=<r> unit=ratio
 * for the preserve and unpreserve time of the populated guest_memfd over
 * that of the memfd of the same size, both idle. Results are TAP; a test
 * that fails prints its reason on a "#" line before its "not ok".
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/liveupdate.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest.h"

#define MiB			(1024UL * 1024)

/* The workload, sized for QEMU TCG: see the README before changing it. */
#define FAULT_SIZE		(64 * MiB)
#define FALLOC_SIZE		(64 * MiB)
#define FALLOC_CHUNK		(2 * MiB)
#define PRESERVE_SIZE		(256 * MiB)
#define LOAD_WORKERS		2
#define FAULT_LOAD_SIZE		(2 * MiB)	/* per load worker */
#define FALLOC_LOAD_SIZE	(32 * MiB)	/* per load worker */
#define THROUGHPUT_REPS		5
#define PRESERVE_EMPTY_REPS	7
#define PRESERVE_FULL_REPS	5
#define MAX_REPS		7

static_assert(THROUGHPUT_REPS <= MAX_REPS && PRESERVE_EMPTY_REPS <= MAX_REPS &&
	      PRESERVE_FULL_REPS <= MAX_REPS, "MAX_REPS too small");

static size_t page_size;
static int kvm_fd = -1, luo_fd = -1;
static bool gmem_luo;		/* the kernel preserves a VM and guest_memfd */
static char reason[256];	/* why the running test failed */

/* Record why the running test fails; always returns -1. */
static __printf(1, 2) int fail(const char *fmt, ...)
{
	int err = errno;
	size_t len;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	len = strlen(reason);
	snprintf(reason + len, sizeof(reason) - len, ": %s", strerror(err));
	errno = err;
	return -1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* Pages per second, for @bytes done in @ns. */
static uint64_t rate(size_t bytes, uint64_t ns)
{
	return (uint64_t)((double)(bytes / page_size) * 1e9 / (ns ? ns : 1));
}

/* The samples of one figure, reported as their median. */
struct figure {
	const char *phase;
	const char *metric;
	const char *unit;
	unsigned int n;
	uint64_t v[MAX_REPS];
};

#define THROUGHPUT(name) { .phase = (name), .metric = "pages_per_s", .unit = "pages/s" }
#define LATENCY(name)	 { .phase = (name), .metric = "latency", .unit = "ns" }

static void add(struct figure *f, uint64_t v)
{
	if (f->n < MAX_REPS)
		f->v[f->n++] = v;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static uint64_t median(struct figure *f)
{
	qsort(f->v, f->n, sizeof(f->v[0]), cmp_u64);
	return f->n % 2 ? f->v[f->n / 2] :
			  (f->v[f->n / 2 - 1] + f->v[f->n / 2]) / 2;
}

static void report(struct figure *f)
{
	uint64_t m;

	if (!f->n)
		return;
	m = median(f);	/* sorts */
	printf("# BENCH %s %s=%llu unit=%s reps=%u min=%llu max=%llu\n",
	       f->phase, f->metric, (unsigned long long)m, f->unit, f->n,
	       (unsigned long long)f->v[0],
	       (unsigned long long)f->v[f->n - 1]);
}

static int create_vm(void)
{
	int vm = ioctl(kvm_fd, KVM_CREATE_VM, 0 /* KVM_X86_DEFAULT_VM */);

	return vm < 0 ? fail("KVM_CREATE_VM") : vm;
}

static int create_gmem(int vm, size_t size)
{
	struct kvm_create_guest_memfd args = {
		.size = size,
		.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
	};
	int fd = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &args);

	return fd < 0 ? fail("KVM_CREATE_GUEST_MEMFD") : fd;
}

static int create_memfd(size_t size)
{
	int fd = memfd_create("gmem_bench", 0);

	if (fd < 0)
		return fail("memfd_create");
	if (ftruncate(fd, size)) {
		fail("ftruncate");
		close(fd);
		return -1;
	}
	return fd;
}

static char *map(int fd, size_t size)
{
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED) {
		fail("mmap");
		return NULL;
	}
	return p;
}

/* Write one byte to every page of [@p, @p + @size): a fault each. */
static void touch(char *p, size_t size)
{
	size_t off;

	for (off = 0; off < size; off += page_size)
		__atomic_store_n(&p[off], 1, __ATOMIC_RELAXED);
}

/* Map @fd, fault in its first @size bytes and unmap it again. */
static int populate(int fd, size_t size)
{
	char *p = map(fd, size);

	if (!p)
		return -1;
	touch(p, size);
	munmap(p, size);
	return 0;
}

static int falloc(int fd, int mode, size_t off, size_t len)
{
	if (fallocate(fd, mode | FALLOC_FL_KEEP_SIZE, off, len))
		return fail("fallocate(%s, %zu, %zu)",
			    mode & FALLOC_FL_PUNCH_HOLE ? "PUNCH_HOLE" : "0",
			    off, len);
	return 0;
}

/* fallocate() [0, @size) of @fd in @chunk steps; the time taken in @ns. */
static int falloc_timed(int fd, int mode, size_t size, size_t chunk,
			uint64_t *ns)
{
	uint64_t t0 = now_ns();
	size_t off;

	for (off = 0; off < size; off += chunk)
		if (falloc(fd, mode, off, chunk))
			return -1;
	*ns = now_ns() - t0;
	return 0;
}

static int create_session(const char *what)
{
	static unsigned int seq;
	struct liveupdate_ioctl_create_session cs = { .size = sizeof(cs) };

	snprintf((char *)cs.name, sizeof(cs.name), "gmem-bench-%s-%u", what,
		 seq++);
	if (ioctl(luo_fd, LIVEUPDATE_IOCTL_CREATE_SESSION, &cs))
		return fail("LIVEUPDATE_IOCTL_CREATE_SESSION");
	return cs.fd;
}

/* Preserve @fd in @session; errno tells why not. */
static int preserve(int session, int fd, uint64_t token)
{
	struct liveupdate_session_preserve_fd pf = {
		.size = sizeof(pf), .fd = fd, .token = token,
	};

	return ioctl(session, LIVEUPDATE_SESSION_PRESERVE_FD, &pf);
}

/* Test 1: user faults on a fresh guest_memfd. */
static int test_fault(void)
{
	struct figure f = THROUGHPUT("fault-gmem-64M");
	int vm, fd = -1, rep, ret = -1;
	uint64_t t0;
	char *p;

	vm = create_vm();
	if (vm < 0)
		return -1;
	for (rep = -1; rep < THROUGHPUT_REPS; rep++) {
		fd = create_gmem(vm, FAULT_SIZE);
		if (fd < 0)
			goto out;
		p = map(fd, FAULT_SIZE);
		if (!p)
			goto out;
		t0 = now_ns();
		touch(p, FAULT_SIZE);
		if (rep >= 0)
			add(&f, rate(FAULT_SIZE, now_ns() - t0));
		munmap(p, FAULT_SIZE);
		close(fd);
		fd = -1;
	}
	report(&f);
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	close(vm);
	return ret;
}

/*
 * One round on a fresh guest_memfd of @vm: allocate it all in @alloc_chunk
 * pieces, then punch it all in @punch_chunk pieces, adding the rates to
 * @alloc and @punch unless @warmup.
 */
static int falloc_round(int vm, uint64_t alloc_chunk, uint64_t punch_chunk,
			struct figure *alloc, struct figure *punch, bool warmup)
{
	int fd = create_gmem(vm, FALLOC_SIZE);
	uint64_t a, b;
	int ret = -1;

	if (fd < 0)
		return -1;
	if (falloc_timed(fd, 0, FALLOC_SIZE, alloc_chunk, &a) ||
	    falloc_timed(fd, FALLOC_FL_PUNCH_HOLE, FALLOC_SIZE, punch_chunk, &b))
		goto out;
	if (!warmup) {
		add(alloc, rate(FALLOC_SIZE, a));
		add(punch, rate(FALLOC_SIZE, b));
	}
	ret = 0;
out:
	close(fd);
	return ret;
}

/* Test 2: allocating and punching a fresh guest_memfd with fallocate(). */
static int test_fallocate(void)
{
	struct figure alloc_chunks = THROUGHPUT("falloc-gmem-64M-by-2M");
	struct figure alloc_whole = THROUGHPUT("falloc-gmem-64M-whole");
	struct figure punch_whole = THROUGHPUT("punch-gmem-64M-whole");
	struct figure punch_chunks = THROUGHPUT("punch-gmem-64M-by-2M");
	int vm, rep, ret = -1;

	vm = create_vm();
	if (vm < 0)
		return -1;
	for (rep = -1; rep < THROUGHPUT_REPS; rep++) {
		/* Allocate in chunks, punch in one call; then the other way. */
		if (falloc_round(vm, FALLOC_CHUNK, FALLOC_SIZE, &alloc_chunks,
				 &punch_whole, rep < 0) ||
		    falloc_round(vm, FALLOC_SIZE, FALLOC_CHUNK, &alloc_whole,
				 &punch_chunks, rep < 0))
			goto out;
	}
	report(&alloc_chunks);
	report(&alloc_whole);
	report(&punch_whole);
	report(&punch_chunks);
	ret = 0;
out:
	close(vm);
	return ret;
}

/*
 * Background load for the preserve tests: LOAD_WORKERS processes, each
 * filling its own part of one file, punching it out again and starting
 * over, until told to stop. A fault load fills FAULT_LOAD_SIZE bytes by
 * writing to every page through mmap(), a page per read section of the
 * gate; an fallocate load fills FALLOC_LOAD_SIZE bytes with one
 * fallocate(), all in one read section. The file is a guest_memfd of
 * another VM, or a memfd, whose faults and fallocate() never enter the
 * gate: the control, with the same work otherwise.
 *
 * They are processes rather than threads so that their faults and zaps
 * take none of the locks of the benchmark's mm. They run on the
 * benchmark's CPU (see setup()) and take turns with it: a reader of the
 * gate overlaps a freeze when it was preempted inside its read section.
 */
enum load_kind {
	LOAD_NONE,
	LOAD_GMEM_FAULT,
	LOAD_MEMFD_FAULT,
	LOAD_GMEM_FALLOC,
	LOAD_MEMFD_FALLOC,
	NR_LOADS
};

static const struct {
	const char *name;
	bool gmem;
	bool falloc;
} loads[NR_LOADS] = {
	[LOAD_NONE]		= { "idle" },
	[LOAD_GMEM_FAULT]	= { "gmem-fault-load", true, false },
	[LOAD_MEMFD_FAULT]	= { "memfd-fault-load", false, false },
	[LOAD_GMEM_FALLOC]	= { "gmem-falloc-load", true, true },
	[LOAD_MEMFD_FALLOC]	= { "memfd-falloc-load", false, true },
};

/* Shared with the workers, in a MAP_SHARED | MAP_ANONYMOUS page. */
struct load_state {
	int stop;
	uint64_t pages[LOAD_WORKERS];	/* filled by each worker */
	int err[LOAD_WORKERS];		/* errno of a failed worker */
};

static struct load_state *load_state;

struct load {
	enum load_kind kind;
	size_t size;		/* per worker */
	int vm, fd;
	pid_t pid[LOAD_WORKERS];
};

static __noreturn void load_worker(const struct load *l, unsigned int i)
{
	struct load_state *st = load_state;
	const int fd = 3;
	char *p = NULL;
	size_t off;

	/*
	 * Keep the load's file only: the benchmark's files must go away
	 * when the benchmark closes them.
	 */
	if (dup2(l->fd, fd) < 0 || close_range(fd + 1, ~0U, 0))
		goto err;
	if (!loads[l->kind].falloc) {
		p = mmap(NULL, l->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			 i * l->size);
		if (p == MAP_FAILED)
			goto err;
	}
	while (!__atomic_load_n(&st->stop, __ATOMIC_RELAXED)) {
		if (loads[l->kind].falloc) {
			if (fallocate(fd, FALLOC_FL_KEEP_SIZE, i * l->size, l->size))
				goto err;
			__atomic_store_n(&st->pages[i],
					 st->pages[i] + l->size / page_size,
					 __ATOMIC_RELAXED);
		} else {
			for (off = 0; off < l->size; off += page_size) {
				__atomic_store_n(&p[off], 1, __ATOMIC_RELAXED);
				__atomic_store_n(&st->pages[i], st->pages[i] + 1,
						 __ATOMIC_RELAXED);
			}
		}
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      i * l->size, l->size))
			goto err;
	}
	_exit(0);
err:
	__atomic_store_n(&st->err[i], errno ? errno : EINVAL, __ATOMIC_RELAXED);
	_exit(1);
}

static uint64_t load_pages(void)
{
	uint64_t sum = 0;
	unsigned int i;

	for (i = 0; i < LOAD_WORKERS; i++)
		sum += __atomic_load_n(&load_state->pages[i], __ATOMIC_RELAXED);
	return sum;
}

/* The first worker error, as a failure of the running test. */
static int load_error(void)
{
	unsigned int i;

	for (i = 0; i < LOAD_WORKERS; i++) {
		errno = __atomic_load_n(&load_state->err[i], __ATOMIC_RELAXED);
		if (errno)
			return fail("load worker %u", i);
	}
	return 0;
}

/* A worker that exited, or -1 if @wait_status is a clean exit. */
static int load_exited(unsigned int i, int wait_status)
{
	if (WIFEXITED(wait_status) && !WEXITSTATUS(wait_status))
		return 0;
	/* The worker's own errno if it has one, else its wait status. */
	if (load_error())
		return -1;
	errno = ECHILD;
	return fail("load worker %u: wait status %#x", i, wait_status);
}

/* Stop the load; -1 if a worker failed. */
static int load_stop(struct load *l)
{
	int status, ret = 0;
	unsigned int i;

	if (l->kind == LOAD_NONE)
		return 0;
	__atomic_store_n(&load_state->stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < LOAD_WORKERS; i++) {
		if (l->pid[i] <= 0)
			continue;
		if (waitpid(l->pid[i], &status, 0) < 0)
			ret = fail("waitpid");
		else if (load_exited(i, status))
			ret = -1;
	}
	close(l->fd);
	if (l->vm >= 0)
		close(l->vm);
	l->kind = LOAD_NONE;
	return ret;
}

/*
 * Start the load of @kind, and return once every worker is past its first
 * round, so that the load runs in full when the caller starts its clock.
 */
static int load_start(struct load *l, enum load_kind kind)
{
	unsigned int i;

	memset(load_state, 0, sizeof(*load_state));
	memset(l, 0, sizeof(*l));
	l->vm = -1;
	l->fd = -1;
	if (kind == LOAD_NONE)
		return 0;
	l->size = loads[kind].falloc ? FALLOC_LOAD_SIZE : FAULT_LOAD_SIZE;
	if (loads[kind].gmem) {
		/* Of another VM: nothing of the load is in the session. */
		l->vm = create_vm();
		if (l->vm < 0)
			return -1;
		l->fd = create_gmem(l->vm, LOAD_WORKERS * l->size);
	} else {
		l->fd = create_memfd(LOAD_WORKERS * l->size);
	}
	if (l->fd < 0) {
		if (l->vm >= 0)
			close(l->vm);
		return -1;
	}
	l->kind = kind;
	for (i = 0; i < LOAD_WORKERS; i++) {
		l->pid[i] = fork();
		if (!l->pid[i])
			load_worker(l, i);
		if (l->pid[i] < 0) {
			fail("fork");
			load_stop(l);
			return -1;
		}
	}
	for (i = 0; i < LOAD_WORKERS; i++) {
		while (__atomic_load_n(&load_state->pages[i], __ATOMIC_RELAXED) <
		       l->size / page_size) {
			int status;

			if (waitpid(l->pid[i], &status, WNOHANG) == l->pid[i]) {
				l->pid[i] = 0;	/* reaped */
				load_exited(i, status);
				load_stop(l);
				return -1;
			}
			usleep(1000);
		}
	}
	return 0;
}

/* What is preserved: a memfd, or a guest_memfd and its VM. */
struct target {
	const char *name;
	int vm;		/* -1 for a memfd */
	int fd;
};

/*
 * One preserve of @t under @load_kind: time LIVEUPDATE_SESSION_PRESERVE_FD
 * of @t->fd, and the close of the session, which unpreserves it. The VM of
 * a guest_memfd is preserved first, untimed. Neither preserve nor
 * unpreserve changes what @t holds, so the next run finds it as it was.
 */
static int preserve_once(const struct target *t, enum load_kind load_kind,
			 uint64_t *preserve_ns, uint64_t *unpreserve_ns,
			 uint64_t *load_done)
{
	struct load load = { .kind = LOAD_NONE };
	uint64_t t0, t1, t2, pages;
	int session, ret = -1;

	if (load_start(&load, load_kind))
		return -1;
	session = create_session(t->name);
	if (session < 0)
		goto out;
	if (t->vm >= 0 && preserve(session, t->vm, 1)) {
		fail("LIVEUPDATE_SESSION_PRESERVE_FD(VM)");
		goto out;
	}

	pages = load_pages();
	t0 = now_ns();
	if (preserve(session, t->fd, 2)) {
		fail("LIVEUPDATE_SESSION_PRESERVE_FD(%s)", t->name);
		goto out;
	}
	t1 = now_ns();
	close(session);
	session = -1;
	t2 = now_ns();
	*load_done = load_pages() - pages;
	*preserve_ns = t1 - t0;
	*unpreserve_ns = t2 - t1;
	ret = 0;
out:
	if (session >= 0)
		close(session);
	if (load_stop(&load))
		ret = -1;
	return ret;
}

/* Medians of the last preserve_series(), for the guest_memfd/memfd ratio. */
static uint64_t last_preserve, last_unpreserve;

/*
 * Run preserve_once() @reps times, after one run that is not counted, and
 * report the preserve and unpreserve figures as "<t->name>-<load>".
 */
static int preserve_series(const struct target *t, enum load_kind load_kind,
			   int reps)
{
	char pname[64], uname[64];
	struct figure pf = LATENCY(pname);
	struct figure uf = LATENCY(uname);
	uint64_t p, u, done, load_total = 0;
	int rep;

	snprintf(pname, sizeof(pname), "preserve-%s-%s", t->name,
		 loads[load_kind].name);
	snprintf(uname, sizeof(uname), "unpreserve-%s-%s", t->name,
		 loads[load_kind].name);
	for (rep = -1; rep < reps; rep++) {
		if (preserve_once(t, load_kind, &p, &u, &done))
			return -1;
		if (rep < 0)
			continue;
		add(&pf, p);
		add(&uf, u);
		load_total += done;
	}
	if (load_kind != LOAD_NONE)
		printf("# %s: the load filled %llu pages during each preserve and unpreserve\n",
		       pname, (unsigned long long)(load_total / reps));
	last_preserve = median(&pf);
	last_unpreserve = median(&uf);
	report(&pf);
	report(&uf);
	return 0;
}

static uint64_t memfd_preserve, memfd_unpreserve;

/* Test 3: a populated memfd, the reference for test 5. */
static int test_preserve_memfd(void)
{
	struct target t = { .name = "memfd-256M", .vm = -1 };
	int ret = -1;

	t.fd = create_memfd(PRESERVE_SIZE);
	if (t.fd < 0)
		return -1;
	if (!populate(t.fd, PRESERVE_SIZE) &&
	    !preserve_series(&t, LOAD_NONE, PRESERVE_FULL_REPS)) {
		memfd_preserve = last_preserve;
		memfd_unpreserve = last_unpreserve;
		ret = 0;
	}
	close(t.fd);
	return ret;
}

/*
 * Tests 4 and 5: a guest_memfd of PRESERVE_SIZE bytes with @populated of
 * them faulted in, idle and under each load.
 */
static int preserve_gmem(const char *name, size_t populated, int reps)
{
	struct target t = { .name = name };
	enum load_kind k;
	int ret = -1;

	t.vm = create_vm();
	if (t.vm < 0)
		return -1;
	t.fd = create_gmem(t.vm, PRESERVE_SIZE);
	if (t.fd < 0 || (populated && populate(t.fd, populated)))
		goto out;
	for (k = LOAD_NONE; k < NR_LOADS; k++) {
		if (preserve_series(&t, k, reps))
			goto out;
		if (populated && k == LOAD_NONE && memfd_preserve) {
			printf("# BENCH preserve-%s-over-memfd ratio=%.3f unit=ratio\n",
			       name, (double)last_preserve / memfd_preserve);
			printf("# BENCH unpreserve-%s-over-memfd ratio=%.3f unit=ratio\n",
			       name, (double)last_unpreserve / memfd_unpreserve);
		}
	}
	ret = 0;
out:
	if (t.fd >= 0)
		close(t.fd);
	close(t.vm);
	return ret;
}

/* Test 4: an empty guest_memfd: the freeze and its grace period. */
static int test_preserve_gmem_empty(void)
{
	return preserve_gmem("gmem-empty", 0, PRESERVE_EMPTY_REPS);
}

/* Test 5: a populated guest_memfd, and how it compares with a memfd. */
static int test_preserve_gmem_full(void)
{
	return preserve_gmem("gmem-256M", PRESERVE_SIZE, PRESERVE_FULL_REPS);
}

/*
 * Can this kernel preserve a VM? The base kernel has no handler for it:
 * PRESERVE_FD fails with ENOENT there.
 */
static int probe_gmem_luo(void)
{
	int vm, session, ret = -1;

	vm = create_vm();
	if (vm < 0)
		return -1;
	session = create_session("probe");
	if (session < 0)
		goto out;
	if (!preserve(session, vm, 1))
		gmem_luo = true;
	if (gmem_luo || errno == ENOENT)
		ret = 0;
	else
		fail("LIVEUPDATE_SESSION_PRESERVE_FD(VM)");
	close(session);
out:
	close(vm);
	return ret;
}

enum {
	NEED_KVM	= 1 << 0,
	NEED_LUO	= 1 << 1,
	NEED_GMEM_LUO	= 1 << 2,	/* preservation of a VM and guest_memfd */
};

/*
 * Open what a test needs, if not yet done. Return 0 when it can run, 1 to
 * skip it (the kernel cannot preserve a VM), -1 if it fails (see reason).
 */
static int ready(unsigned int needs)
{
	static bool probed;

	if ((needs & NEED_KVM) && kvm_fd < 0) {
		kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
		if (kvm_fd < 0)
			return fail("/dev/kvm");
	}
	if ((needs & NEED_LUO) && luo_fd < 0) {
		luo_fd = open("/dev/liveupdate", O_RDWR | O_CLOEXEC);
		if (luo_fd < 0)
			return fail("/dev/liveupdate");
	}
	if (!(needs & NEED_GMEM_LUO))
		return 0;
	if (!probed) {
		if (probe_gmem_luo())
			return -1;
		probed = true;
		printf("# preserving a VM and a guest_memfd: %s\n",
		       gmem_luo ? "supported" : "not supported (ENOENT)");
	}
	return gmem_luo ? 0 : 1;
}

static const struct test {
	const char *name;
	int (*fn)(void);
	unsigned int needs;
} tests[] = {
	{ "fault",		 test_fault,		   NEED_KVM },
	{ "fallocate",		 test_fallocate,	   NEED_KVM },
	{ "preserve_memfd",	 test_preserve_memfd,	   NEED_LUO },
	{ "preserve_gmem_empty", test_preserve_gmem_empty,
	  NEED_KVM | NEED_LUO | NEED_GMEM_LUO },
	{ "preserve_gmem_256M",	 test_preserve_gmem_full,
	  NEED_KVM | NEED_LUO | NEED_GMEM_LUO },
};

#define NR_TESTS ARRAY_SIZE(tests)

/*
 * Under QEMU -icount the kernel replaces the tsc-early clocksource with the
 * refined tsc about five seconds of guest time after boot, and switches
 * with stop_machine(). If both vCPUs are busy then, the switch takes tens
 * of seconds of guest time, RCU reports stalls and the figures of that
 * time are lost: wait for it, at most 30 s of guest time, which an idle
 * guest under sleep=off goes through in a moment.
 */
static void settle_clocksource(void)
{
	const char *path = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
	uint64_t t0 = now_ns();
	char name[32] = "";
	int i, fd;
	ssize_t n;

	for (i = 0; i < 300; i++) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return;
		n = read(fd, name, sizeof(name) - 1);
		close(fd);
		name[n > 0 ? n - 1 : 0] = '\0';
		if (strcmp(name, "tsc-early"))
			break;
		usleep(100000);
	}
	printf("# clocksource %s after %llu ms of guest time\n", name,
	       (unsigned long long)((now_ns() - t0) / 1000000));
}

/*
 * Before the tests: the load's shared state, the CPU, the clocksource.
 *
 * Everything runs on the first CPU of the benchmark's affinity mask. Under
 * -icount, QEMU runs the vCPUs in turn, and one keeps running for a long
 * stretch of guest time while the other waits: with the benchmark spinning
 * on one vCPU and the load on the other, the load faulted in no page in
 * 300 ms of guest time, and a 100 ms usleep() of the benchmark took 2 s.
 * On one CPU, the guest's scheduler interleaves them as it should.
 */
static int setup(void)
{
	cpu_set_t set;
	int cpu;

	page_size = getpagesize();
	load_state = mmap(NULL, sizeof(*load_state), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (load_state == MAP_FAILED)
		return fail("mmap(MAP_SHARED | MAP_ANONYMOUS)");
	if (sched_getaffinity(0, sizeof(set), &set))
		return fail("sched_getaffinity");
	for (cpu = 0; cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &set); cpu++)
		;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return fail("sched_setaffinity(%d)", cpu);
	printf("# benchmark and load on CPU %d\n", cpu);
	settle_clocksource();
	return 0;
}

int main(void)
{
	bool set_up, failed = false;
	unsigned int i;
	int ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n1..%zu\n", NR_TESTS);
	set_up = !setup();

	for (i = 0; i < NR_TESTS; i++) {
		const struct test *t = &tests[i];

		/* Without setup, every test fails with its reason. */
		ret = set_up ? ready(t->needs) : -1;
		if (ret > 0) {
			printf("ok %u %s # SKIP this kernel cannot preserve a VM\n",
			       i + 1, t->name);
			continue;
		}
		if (!ret && !t->fn()) {
			printf("ok %u %s\n", i + 1, t->name);
			continue;
		}
		printf("# %s: %s\nnot ok %u %s\n", t->name, reason, i + 1, t->name);
		failed = true;
	}
	return failed ? 1 : 0;
}
