// SPDX-License-Identifier: GPL-2.0
/*
 * qemu_agent: a live-update agent that carries a running QEMU guest over a
 * kexec with LUO, the way a host does it with a VMM it did not write.
 *
 * QEMU is Debian's qemu-system-x86_64, unmodified, run with KVM (nested:
 * the test guest runs under TCG with SVM). Its guest RAM is a memfd of this
 * agent (memory-backend-file, share=on, on /proc/self/fd/<n>); the guest is
 * guest/inner/guest.c, which checks its own memory all the time.
 *
 *   qemu_agent -s 1   start QEMU and the guest; preserve the RAM memfd in
 *                     a LUO session while the guest runs; stop the VM and
 *                     migrate its device state, with the RAM left in place
 *                     (capability x-ignore-shared), into a second memfd
 *                     handed to QEMU with getfd; QEMU exits; preserve the
 *                     state memfd and the agent's own record; a child keeps
 *                     the session open for the kexec.
 *   qemu_agent -s 2   retrieve the session and the memfds; start QEMU with
 *                     the same arguments and -incoming defer; load the state
 *                     from the retrieved memfd; continue the VM; finish
 *                     the session; ask the guest for its verdict.
 *
 * Built as qemu_agent_thp (QEMU_AGENT_THP), the RAM memfd is backed by
 * transparent huge pages: shmem_enabled is "advise" and QEMU advises huge
 * pages on its RAM (align=2M puts its mapping where a huge page can map
 * it); the agent counts them (ShmemHugePages: nothing else in the test
 * guest has shmem huge pages) before the kexec and after the retrieve.
 *
 * The blackout is marked with "# blackout: <event>" lines; the host stamps
 * them with its clock (scripts/run.py prints the phases), across the kexec.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "vmm_common.h"

#ifdef QEMU_AGENT_THP
#define SESSION		"qemu-kexec-thp"
#define THP_CASES	1
#else
#define SESSION		"qemu-kexec"
#define THP_CASES	0
#endif
#define QEMU		"/usr/bin/qemu-system-x86_64"
#define INNER		"/usr/share/qemu-kexec/guest.elf"
#define QMP_SOCK	"/tmp/qemu-agent-qmp.sock"
#define SERIAL_SOCK	"/tmp/qemu-agent-serial.sock"
#define QEMU_LOG	"/tmp/qemu-agent-qemu.log"
#define THP_CONTROL	"/sys/kernel/mm/transparent_hugepage/shmem_enabled"
#define RAM_MIB		128
#define RAM_FD		3		/* the RAM memfd's number in QEMU */
#define TOKEN_RAM	1
#define TOKEN_STATE	2
#define TOKEN_RECORD	3
#define TICK		4096		/* rounds between two reports (guest/inner/guest.c) */
#define WAIT_MS		(600 * 1000)	/* for QEMU or the guest; the harness's limit comes first */

/* What the agent keeps about its VM across the kexec, in a memfd of its own. */
struct record {
	char magic[8];
	uint32_t guest_id;	/* the guest's boot identity */
	uint32_t guest_round;	/* the last round it reported before the stop */
	uint64_t state_bytes;	/* size of the device state QEMU wrote */
	long huge_kib;		/* ShmemHugePages before the kexec */
	uint32_t partial_len;	/* a line the guest was writing at the stop */
	char partial[120];
};

#define RECORD_MAGIC	"qemuagt"

struct chan {
	int fd;
	char buf[65536];
	size_t len;
};

static struct chan qmp, serial;
static pid_t qemu_pid;
/* The case under way: die() reports it failed. */
static const char *current_case;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void show_qemu_log(void)
{
	char line[512];
	FILE *f = fopen(QEMU_LOG, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		ksft_print_msg("qemu: %s", line);
	fclose(f);
}

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(fmt, ap);
	va_end(ap);
	show_qemu_log();
	if (qemu_pid > 0)
		kill(qemu_pid, SIGKILL);
	exit_failed(current_case);
}

/*
 * Read one line (without its newline) from @c; false on EOF or when
 * nothing came for @timeout_ms.
 */
static bool read_line_within(struct chan *c, char *line, size_t size, int timeout_ms)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		ssize_t n;

		if (nl) {
			size_t len = nl - c->buf;

			snprintf(line, size, "%.*s", (int)len, c->buf);
			line[strcspn(line, "\r")] = 0;
			memmove(c->buf, nl + 1, c->len - len - 1);
			c->len -= len + 1;
			return true;
		}
		if (c->len == sizeof(c->buf))
			die("line too long on fd %d", c->fd);
		if (poll(&pfd, 1, timeout_ms) != 1)
			return false;
		n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n <= 0)
			return false;
		c->len += n;
	}
}

static bool read_line(struct chan *c, char *line, size_t size)
{
	return read_line_within(c, line, size, WAIT_MS);
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket: %s", strerror(errno));
	unlink(path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 1))
		die("listen on %s: %s", path, strerror(errno));
	return fd;
}

static int accept_from_qemu(int lfd)
{
	struct pollfd pfd = { .fd = lfd, .events = POLLIN };
	int fd;

	if (poll(&pfd, 1, WAIT_MS) != 1)
		die("QEMU did not connect");
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		die("accept: %s", strerror(errno));
	close(lfd);
	return fd;
}

/*
 * Start QEMU on the RAM memfd @ram_fd. QEMU connects to two sockets of the
 * agent: its QMP monitor and the guest's serial port.
 */
static void start_qemu(int ram_fd, bool incoming)
{
	char backend[160];
	int lq = listen_on(QMP_SOCK), ls = listen_on(SERIAL_SOCK);
	char *argv[] = {
		QEMU, "-nodefaults", "-no-user-config", "-display", "none",
		"-accel", "kvm", "-machine", "pc,memory-backend=ram",
		"-m", "128M", "-smp", "1", "-object", backend,
		"-kernel", INNER,
		"-chardev", "socket,id=qmp,path=" QMP_SOCK,
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "socket,id=serial,path=" SERIAL_SOCK,
		"-serial", "chardev:serial",
		incoming ? "-incoming" : NULL, "defer", NULL
	};
	char line[4096];

	snprintf(backend, sizeof(backend),
		 "memory-backend-file,id=ram,size=%dM,mem-path=/proc/self/fd/%d,share=on,align=2M",
		 RAM_MIB, RAM_FD);
	qemu_pid = fork();
	if (qemu_pid < 0)
		die("fork: %s", strerror(errno));
	if (!qemu_pid) {
		int log = open(QEMU_LOG, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (log < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
			_exit(127);
		/* The RAM memfd as RAM_FD, without close-on-exec. */
		if (ram_fd != RAM_FD && dup2(ram_fd, RAM_FD) < 0)
			_exit(127);
		if (fcntl(RAM_FD, F_SETFD, 0))
			_exit(127);
		execv(QEMU, argv);
		_exit(127);
	}
	qmp.fd = accept_from_qemu(lq);
	qmp.len = 0;
	serial.fd = accept_from_qemu(ls);
	serial.len = 0;
	if (!read_line(&qmp, line, sizeof(line)) || !strstr(line, "\"QMP\""))
		die("no QMP greeting from QEMU");
	ksft_print_msg("QMP greeting: %s\n", line);
}

/*
 * Send a QMP command, with @fd attached (SCM_RIGHTS) when it is not -1,
 * and wait for its answer. Events that come first are kept in @events
 * (appended) when it is not NULL.
 */
static void qmp_cmd(const char *cmd, int fd, char *events, size_t events_size)
{
	char line[4096];

	if (send_with_fd(qmp.fd, cmd, strlen(cmd), fd) != (ssize_t)strlen(cmd))
		die("QMP send: %s", strerror(errno));
	for (;;) {
		if (!read_line(&qmp, line, sizeof(line)))
			die("QMP: no answer to %s", cmd);
		if (strstr(line, "\"return\""))
			return;
		if (strstr(line, "\"error\""))
			die("QMP %s: %s", cmd, line);
		if (events && strstr(line, "\"event\""))
			snprintf(events + strlen(events), events_size - strlen(events),
				 "%s\n", line);
	}
}

/* Wait for the MIGRATION event that ends a migration (either side). */
static void wait_migration(char *events, size_t size)
{
	char line[4096];

	for (;;) {
		if (strstr(events, "\"status\": \"completed\""))
			return;
		if (strstr(events, "\"status\": \"failed\""))
			die("migration failed: %s", events);
		if (!read_line(&qmp, line, sizeof(line)))
			die("QMP closed during the migration");
		if (strstr(line, "\"MIGRATION\""))
			snprintf(events + strlen(events), size - strlen(events), "%s\n", line);
	}
}

static void qmp_setup(void)
{
	qmp_cmd("{\"execute\": \"qmp_capabilities\"}", -1, NULL, 0);
	qmp_cmd("{\"execute\": \"migrate-set-capabilities\", \"arguments\": {\"capabilities\": ["
		"{\"capability\": \"x-ignore-shared\", \"state\": true},"
		"{\"capability\": \"events\", \"state\": true}]}}", -1, NULL, 0);
}

static void stop_qemu(void)
{
	int status;

	qmp_cmd("{\"execute\": \"quit\"}", -1, NULL, 0);
	if (waitpid(qemu_pid, &status, 0) != qemu_pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		die("QEMU ended with status %#x", status);
	qemu_pid = 0;
	close(qmp.fd);
	close(serial.fd);
}

/*
 * Read the guest's serial output until a report of round above @after;
 * return that round. The guest's identity must be @id, or is taken from
 * its boot line when @id is 0. With @drain, read only what is there
 * already and return the last round reported (@after if none).
 */
static uint32_t guest_round(uint32_t *id, uint32_t after, bool drain)
{
	char line[512];
	unsigned int got_id, round;

	for (;;) {
		if (!read_line_within(&serial, line, sizeof(line), drain ? 0 : WAIT_MS)) {
			if (drain)
				return after;
			die("the guest stopped reporting");
		}
		if (strncmp(line, "qguest: ", 8))
			continue;
		if (strstr(line, "FAIL"))
			die("guest: %s", line);
		if (sscanf(line, "qguest: boot id=%x", &got_id) == 1) {
			if (*id)
				die("the guest booted again (id %08x, was %08x)", got_id, *id);
			*id = got_id;
			ksft_print_msg("guest: %s\n", line + 8);
			continue;
		}
		if (sscanf(line, "qguest: id=%x round=%u ok", &got_id, &round) != 2)
			continue;
		if (got_id != *id)
			die("guest id %08x, expected %08x", got_id, *id);
		if (drain)
			after = round;
		else if (round > after)
			return round;
	}
}

static long meminfo_kib(const char *field)
{
	char line[256];
	size_t len = strlen(field);
	long kib = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, len) && line[len] == ':')
			kib = strtol(line + len + 1, NULL, 10);
	fclose(f);
	return kib;
}

static int open_luo(void)
{
	int fd = cloexec(luo_open_device());

	if (fd < 0 && errno == ENOENT)
		ksft_exit_skip("no /dev/liveupdate\n");
	if (fd < 0)
		die("open /dev/liveupdate: %s", strerror(errno));
	if (access("/dev/kvm", R_OK | W_OK))
		ksft_exit_skip("no /dev/kvm: %s\n", strerror(errno));
	if (access(QEMU, X_OK))
		ksft_exit_skip("no %s in this initramfs\n", QEMU);
	return fd;
}

static void set_thp(void)
{
#ifdef QEMU_AGENT_THP
	int fd = open(THP_CONTROL, O_WRONLY);

	if (fd < 0 || write(fd, "advise", 6) != 6)
		die("%s: %s", THP_CONTROL, strerror(errno));
	close(fd);
#endif
}

static void stage1(int luo)
{
	char events[8192] = "";
	struct record rec = { .magic = RECORD_MAGIC };
	uint32_t first;
	int ram, state, record, session;
	double t;

	ksft_set_plan(THP_CASES + 4);
	set_thp();
	ram = memfd_create("qemu-ram", MFD_CLOEXEC);
	state = memfd_create("qemu-state", MFD_CLOEXEC);
	record = memfd_create("qemu-agent-record", MFD_CLOEXEC);
	if (ram < 0 || state < 0 || record < 0 || ftruncate(ram, RAM_MIB << 20))
		die("memfd: %s", strerror(errno));

	current_case = "guest_running";
	start_qemu(ram, false);
	qmp_setup();
	first = guest_round(&rec.guest_id, 0, false);
	rec.guest_round = guest_round(&rec.guest_id, first, false);
	ksft_test_result_pass("guest_running (id %08x, round %u)\n",
			      rec.guest_id, rec.guest_round);

	/* The RAM goes into the session while the guest runs: no blackout. */
	current_case = "ram_preserved_while_running";
	session = cloexec(luo_create_session(luo, SESSION));
	if (session < 0)
		die("create session: %s", strerror(-session));
#ifdef QEMU_AGENT_THP
	ksft_print_msg("before the preserve: Shmem %ld KiB, ShmemHugePages %ld KiB\n",
		       meminfo_kib("Shmem"), meminfo_kib("ShmemHugePages"));
#endif
	t = now();
	preserve(session, ram, TOKEN_RAM, "the RAM memfd");
	ksft_test_result_pass("ram_preserved_while_running (%d MiB in %.3f s)\n",
			      RAM_MIB, now() - t);
#ifdef QEMU_AGENT_THP
	/* The preserve allocates the pages the guest never touched. */
	ksft_print_msg("after the preserve: Shmem %ld KiB, ShmemHugePages %ld KiB\n",
		       meminfo_kib("Shmem"), meminfo_kib("ShmemHugePages"));
#endif

	current_case = "state_saved_without_ram";
	blackout("vm stopping");
	qmp_cmd("{\"execute\": \"stop\"}", -1, events, sizeof(events));
	blackout("vm stopped");
	/*
	 * Its vCPU stopped, the guest has written its last report. It may have
	 * been stopped in the middle of a line: the serial stream goes on in
	 * the next QEMU, so keep that start for it.
	 */
	rec.guest_round = guest_round(&rec.guest_id, rec.guest_round, true);
	if (serial.len > sizeof(rec.partial))
		die("%zu bytes of a line at the stop", serial.len);
	memcpy(rec.partial, serial.buf, serial.len);
	rec.partial_len = serial.len;
	qmp_cmd("{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"state\"}}",
		state, events, sizeof(events));
	qmp_cmd("{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"fd:state\"}}",
		-1, events, sizeof(events));
	wait_migration(events, sizeof(events));
	rec.state_bytes = lseek(state, 0, SEEK_END);
	blackout("device state saved (%llu bytes)", (unsigned long long)rec.state_bytes);
	stop_qemu();
	blackout("qemu exited");
	ksft_print_msg("guest: last report before the stop: round %u%s\n", rec.guest_round,
		       serial.len ? " (and the start of another line)" : "");
	ksft_test_result(rec.state_bytes > 0 && rec.state_bytes < (RAM_MIB << 20) / 16,
			 "state_saved_without_ram (%llu bytes for %d MiB of RAM)\n",
			 (unsigned long long)rec.state_bytes, RAM_MIB);

	current_case = "state_preserved";
	rec.huge_kib = meminfo_kib("ShmemHugePages");
	if (pwrite(record, &rec, sizeof(rec), 0) != sizeof(rec))
		die("write the record: %s", strerror(errno));
	preserve(session, state, TOKEN_STATE, "the state memfd");
	preserve(session, record, TOKEN_RECORD, "the agent's record");
	blackout("state preserved");
	ksft_test_result_pass("state_preserved\n");
#ifdef QEMU_AGENT_THP
	ksft_print_msg("ShmemHugePages before the kexec: %ld KiB (%ld huge pages)\n",
		       rec.huge_kib, rec.huge_kib / 2048);
	ksft_test_result(rec.huge_kib >= 2048, "ram_in_huge_pages (%ld)\n", rec.huge_kib / 2048);
#endif

	/* A child keeps the session (and the memfds) open for the kexec. */
	current_case = NULL;
	if (ksft_get_fail_cnt())
		ksft_exit_fail();	/* no kexec after a failed stage 1 */
	daemonize_and_wait();
}

static void stage2(int luo)
{
	char events[8192] = "", line[512];
	struct record rec;
	uint32_t id, round;
	int ram, state, record, session, err;
	struct stat st;

	ksft_set_plan(THP_CASES + 4);
	set_thp();
	current_case = "memfds_retrieved";
	session = cloexec(luo_retrieve_session(luo, SESSION));
	if (session < 0)
		die("retrieve session %s: %s", SESSION, strerror(-session));
	blackout("session retrieved");
	record = retrieve(session, TOKEN_RECORD, "the agent's record");
	if (pread(record, &rec, sizeof(rec), 0) != sizeof(rec) ||
	    memcmp(rec.magic, RECORD_MAGIC, sizeof(rec.magic)))
		die("the agent's record is not there");
	state = retrieve(session, TOKEN_STATE, "the state memfd");
	ram = retrieve(session, TOKEN_RAM, "the RAM memfd");
	blackout("memory retrieved");
	if (fstat(ram, &st))
		die("fstat: %s", strerror(errno));
	ksft_test_result(st.st_size == (off_t)RAM_MIB << 20 &&
			 lseek(state, 0, SEEK_END) == (off_t)rec.state_bytes,
			 "memfds_retrieved (RAM %lld bytes, state %llu bytes)\n",
			 (long long)st.st_size, (unsigned long long)rec.state_bytes);
	lseek(state, 0, SEEK_SET);

#ifdef QEMU_AGENT_THP
	long huge_kib = meminfo_kib("ShmemHugePages");

	ksft_print_msg("ShmemHugePages after the retrieve: %ld KiB (%ld huge pages), before the kexec: %ld KiB\n",
		       huge_kib, huge_kib / 2048, rec.huge_kib);
	ksft_test_result(huge_kib == rec.huge_kib, "huge_pages_kept (%ld of %ld)\n",
			 huge_kib / 2048, rec.huge_kib / 2048);
#endif

	current_case = "qemu_incoming";
	start_qemu(ram, true);
	blackout("qemu started");
	if (rec.partial_len > sizeof(rec.partial))
		die("bad record");
	memcpy(serial.buf, rec.partial, rec.partial_len);
	serial.len = rec.partial_len;
	qmp_setup();
	qmp_cmd("{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"state\"}}",
		state, events, sizeof(events));
	qmp_cmd("{\"execute\": \"migrate-incoming\", \"arguments\": {\"uri\": \"fd:state\"}}",
		-1, events, sizeof(events));
	wait_migration(events, sizeof(events));
	blackout("device state loaded");
	qmp_cmd("{\"execute\": \"cont\"}", -1, events, sizeof(events));
	blackout("vm running");
	ksft_test_result_pass("qemu_incoming\n");

	/* The VM runs: the memfds are the agent's, not LUO's, from now on. */
	current_case = "session_finished";
	err = luo_session_finish(session);
	ksft_test_result(!err, "session_finished%s%s\n", err ? ": " : "",
			 err ? strerror(-err) : "");

	/*
	 * The guest goes on from where it was: same identity, and its first
	 * report is the one that follows its last before the stop.
	 */
	current_case = "qemu_guest_continued";
	id = rec.guest_id;
	round = guest_round(&id, 0, false);
	ksft_print_msg("guest: first report after the resume: round %u (last before the stop: %u)\n",
		       round, rec.guest_round);
	if (write(serial.fd, "v", 1) != 1)
		die("serial write: %s", strerror(errno));
	for (;;) {
		unsigned int vid, vround;

		if (!read_line(&serial, line, sizeof(line)))
			die("no verdict from the guest");
		if (strstr(line, "FAIL") || strstr(line, "boot id="))
			die("guest: %s", line);
		if (sscanf(line, "qguest: verdict ok id=%x round=%u", &vid, &vround) == 2) {
			ksft_print_msg("guest: %s\n", line + 8);
			ksft_test_result(vid == rec.guest_id && round == rec.guest_round + TICK &&
					 vround >= round,
					 "qemu_guest_continued (guest: \"%s\"; its reports: round %u before the stop, %u after)\n",
					 line + 8, rec.guest_round, round);
			break;
		}
	}
#ifdef QEMU_AGENT_THP
	ksft_print_msg("ShmemHugePages with the guest running again: %ld KiB\n",
		       meminfo_kib("ShmemHugePages"));
#endif
	stop_qemu();
	ksft_finished();
}

int main(int argc, char *argv[])
{
	int luo;

	ksft_print_header();
	if (argc != 3 || strcmp(argv[1], "-s") || (strcmp(argv[2], "1") && strcmp(argv[2], "2")))
		ksft_exit_fail_msg("usage: %s -s 1|2\n", argv[0]);
	luo = open_luo();
	if (argv[2][0] == '1')
		stage1(luo);
	else
		stage2(luo);
	return 0;
}
