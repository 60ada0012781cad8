// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_vmm: a VMM whose guests keep running across a kexec, their memory
 * in guest_memfd, their vCPUs paused mid-instruction in one kernel and
 * resumed in the next; and the live-update agent that hands it its LUO
 * sessions. Raw KVM ioctls (the LUO selftest library for the sessions):
 * every step a VMM takes is here. Not the KVM selftest library's
 * vcpu_save_state() and vcpu_load_state(): its struct kvm_vm cannot be
 * built around a retrieved VM whose memory is already a running guest's
 * (creating it puts its own memslot 0 at guest physical 0 and loads the
 * test's ELF there), and its guests are 64-bit code of this binary.
 *
 * Two processes, as on a host: the agent owns /dev/liveupdate, creates or
 * retrieves a session when the VMM asks, and passes the session file to
 * the VMM over a Unix socket (SCM_RIGHTS); it holds the session across the
 * kexec. The VMM never opens /dev/liveupdate.
 *
 * VM "a" has one vCPU, VM "b" two. Each VM's memory, all of it (the guest's
 * code, GDT, IDT, page tables, stacks and data), is one 128 MiB
 * guest_memfd (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED) in one
 * memslot at guest physical 0. The guest is guest/inner/guest.c, embedded
 * here: each vCPU rewrites and checks its own buffer all the time and
 * reports on its own serial port, which the VMM emulates (vCPU 0 on COM1,
 * vCPU 1 on COM2). vCPU 1 of VM b also serves probes: it writes a page the
 * VMM names in [112, 128) MiB, which the VMM did not allocate.
 *
 *   gmem_vmm -s 1   start the VMs; a cancelled update: preserve the VMs and
 *                   guest_memfds in a session, make vCPU 1 of b touch a
 *                   missing page (KVM_RUN fails with EPERM and a memory
 *                   fault: the VMM keeps that vCPU paused), close the
 *                   session: the fault is served, the guests run on. Then
 *                   the update: preserve again, the same fault, have each
 *                   VM's boot CPU arm its TSC-deadline timer seconds ahead
 *                   (pending across the pause: deadline_pending_at_pause),
 *                   pause every vCPU where it is, save its state (CPUID, registers,
 *                   segment and control registers, MSRs, XSAVE, XCRs,
 *                   LAPIC, MP state, pending events, debug registers), the
 *                   in-kernel PIC and IOAPIC and the VMM's record in a
 *                   memfd, preserve it; the agent holds the session.
 *   gmem_vmm -s 2   the agent retrieves the session; the VMM retrieves the
 *                   state, the VMs and the guest_memfds, rebuilds the
 *                   irqchip, memslots and vCPUs, loads their state and
 *                   runs them: the held
 *                   vCPU's fault is served now, and the deadline timers
 *                   fire (deadline_fired_after_resume: the TSC deadline
 *                   is loaded again after the LAPIC, which a fresh vCPU
 *                   needs). Then it finishes the
 *                   session and asks every vCPU for its verdict: the guest
 *                   must have gone on from where it was paused
 *                   (<vm>_guest_continued).
 *
 * The blackout is marked with "# blackout: <event>" lines; the host stamps
 * them with its clock (scripts/run.py prints the phases), across the kexec.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/kvm.h>

#include <libliveupdate.h>

#include "vmm_common.h"

#define CANCEL_SESSION	"gmem-vmm-cancelled"
#define SESSION		"gmem-vmm"
#define NR_VMS		2
#define MAX_VCPUS	2
#define MEM_SIZE	(128ul << 20)
#define PROBE_START	(112ul << 20)	/* left unallocated (guest/inner/guest.c) */
#define PROBE_CANCEL	PROBE_START
#define PROBE_UPDATE	(PROBE_START + 4096)
#define TICK		4096		/* rounds between two reports (guest.c) */
#define VMM_INFO_MAGIC	0x494d4d56	/* "VMMI", after the multiboot header */
#define WAIT_S		120		/* for the guest; the harness's limit comes first */
#define TOKEN_STATE	1
#define MAX_MSRS	512
#define MAX_CPUID	256
#define MAX_XSAVE	16384
#define STATE_MAGIC	0x4d4d56564d4d4547ull	/* "GEMMVVMM" */
#define MSR_IA32_TSC	0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

/* The guest image, built from guest/inner/guest.c (see guest/Makefile). */
asm(".section .rodata\n"
    ".balign 16\n"
    "guest_elf:\n"
    ".incbin \"" GUEST_ELF "\"\n"
    "guest_elf_end:\n"
    ".previous\n");
extern const unsigned char guest_elf[], guest_elf_end[];

/* One vCPU's state as KVM gives it, and the VMM's record of its guest. */
struct vcpu_state {
	uint32_t ncpuid, nmsrs, xsave_size;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp_state;
	struct kvm_cpuid_entry2 cpuid[MAX_CPUID];
	struct kvm_msr_entry msrs[MAX_MSRS];
	uint8_t xsave[MAX_XSAVE];
	/* the last report of the guest on this vCPU, and a line cut short */
	uint32_t id, round, line_len;
	uint64_t held_gpa;	/* a memory fault the vCPU is held at, or 0 */
	char line[256];
};

struct vm_state {
	uint64_t vm_token, gmem_token, mem_size, probe_req;
	uint32_t nr_vcpus;
	struct kvm_irqchip irqchip[3];	/* PIC master, PIC slave, IOAPIC */
	struct vcpu_state vcpu[MAX_VCPUS];
};

struct vmm_state {
	uint64_t magic;
	struct vm_state vm[NR_VMS];
};

enum { RUN, PAUSE, QUIT };

struct vcpu {
	struct vm *vm;
	int index, fd;
	struct kvm_run *run;
	pthread_t thread;
	/* under lock */
	int want;		/* what the VMM wants: RUN, PAUSE, QUIT */
	bool paused;		/* the thread waits, nothing in flight */
	bool failed;
	char why[300];		/* the guest's FAIL line, or the exit */
	uint64_t held_gpa;	/* KVM_RUN failed with EPERM at this gpa */
	uint32_t id, round, reports, probes, verdicts, boots;
	uint32_t deadlines_armed, deadlines_fired;	/* the boot CPU's timer */
	uint32_t want_reports;	/* what wait_reports() waits for */
	uint32_t first_id, first_round;	/* the first report after a resume */
	uint64_t last_probe;
	char verdict[200];
	pid_t tid;
	/* the vCPU thread's own */
	char line[256];
	uint32_t line_len;
};

struct vm {
	const char *name;
	uint64_t vm_token, gmem_token;
	int nr_vcpus;
	int vm_fd, gmem_fd;
	uint8_t *mem;
	uint64_t ap_entry, probe_req;
	int uart_in[2];		/* a byte for COM1, COM2 to read, or -1 */
	struct vcpu vcpu[MAX_VCPUS];
};

/* Every vCPU of every VM, in the order they were created. */
static struct vcpu *vcpus[NR_VMS * MAX_VCPUS];
static int nr_vcpus;

static struct vm vms[NR_VMS] = {
	{ .name = "a", .vm_token = 0x10, .gmem_token = 0x11, .nr_vcpus = 1 },
	{ .name = "b", .vm_token = 0x20, .gmem_token = 0x21, .nr_vcpus = 2 },
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static __thread struct kvm_run *self_run;
static int kvm_fd, agent_sock;
static pid_t agent_pid;
static const char *current_case;
static struct vmm_state state;
static struct vcpu_state boot_cpuid;
static bool resumed;	/* the vCPUs run again in the next kernel */

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(fmt, ap);
	va_end(ap);
	exit_failed(current_case);
}

/* The agent: owns /dev/liveupdate, answers the VMM on @sock. */

static void agent_reply(int sock, int status, int fd)
{
	if (send_with_fd(sock, &status, sizeof(status), fd) != sizeof(status))
		exit(1);
}

/*
 * Commands: "create <name>" and "retrieve <name>" (the session, passed
 * back), "close" (cancel: the agent's reference goes), "finish", "hold"
 * (keep the session open for the kexec, detached). The reply is 0 or an
 * errno.
 */
static void __attribute__((noreturn)) agent(int sock)
{
	int luo = luo_open_device(), session = -1, err;
	/* Why /dev/liveupdate did not open: the answer to every command. */
	int open_err = luo < 0 ? errno : 0;
	char cmd[64];
	ssize_t n;

	for (;;) {
		n = recv(sock, cmd, sizeof(cmd) - 1, 0);
		if (n <= 0)
			exit(0);
		cmd[n] = 0;
		if (luo < 0) {
			agent_reply(sock, open_err, -1);
			continue;
		}
		if (!strncmp(cmd, "create ", 7) || !strncmp(cmd, "retrieve ", 9)) {
			session = cmd[0] == 'c' ? luo_create_session(luo, cmd + 7) :
						  luo_retrieve_session(luo, cmd + 9);
			agent_reply(sock, session < 0 ? -session : 0, session);
		} else if (!strcmp(cmd, "close")) {
			agent_reply(sock, close(session) ? errno : 0, -1);
			session = -1;
		} else if (!strcmp(cmd, "finish")) {
			err = luo_session_finish(session);
			agent_reply(sock, -err, -1);
		} else if (!strcmp(cmd, "hold")) {
			agent_reply(sock, 0, -1);
			close(sock);
			setsid();
			close(STDIN_FILENO);
			close(STDOUT_FILENO);
			close(STDERR_FILENO);
			for (;;)
				pause();
		} else {
			agent_reply(sock, EINVAL, -1);
		}
	}
}

static void start_agent(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		die("socketpair: %s", strerror(errno));
	fflush(stdout);
	agent_pid = fork();
	if (agent_pid < 0)
		die("fork: %s", strerror(errno));
	if (!agent_pid) {
		close(sv[0]);
		agent(sv[1]);
	}
	close(sv[1]);
	agent_sock = sv[0];
}

/* Ask the agent; returns its answer (0 or an errno), *@fd the file it sent. */
static int agent_call(const char *cmd, int *fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	int status;
	struct iovec iov = { .iov_base = &status, .iov_len = sizeof(status) };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cmsg;

	if (send(agent_sock, cmd, strlen(cmd), 0) != (ssize_t)strlen(cmd))
		die("agent: send %s: %s", cmd, strerror(errno));
	if (recvmsg(agent_sock, &msg, MSG_CMSG_CLOEXEC) != sizeof(status))
		die("agent: no answer to %s", cmd);
	cmsg = CMSG_FIRSTHDR(&msg);
	if (fd)
		*fd = -1;
	if (fd && cmsg && cmsg->cmsg_type == SCM_RIGHTS)
		memcpy(fd, CMSG_DATA(cmsg), sizeof(int));
	return status;
}

static int session_from_agent(const char *cmd)
{
	char name[64];
	int status, fd;

	status = agent_call(cmd, &fd);
	if (status == ENOENT && !strncmp(cmd, "create", 6))
		ksft_exit_skip("agent: no /dev/liveupdate\n");
	if (status || fd < 0)
		die("agent: %s: %s", cmd, strerror(status));
	if (luo_get_session_name(fd, name, sizeof(name)))
		die("the agent's file is not a LUO session: %s", strerror(errno));
	ksft_print_msg("agent: %s: session \"%s\" passed as fd %d\n", cmd, name, fd);
	return fd;
}

/* The VMM's serial ports and the guest's reports. */

static void handle_line(struct vcpu *v)
{
	unsigned int id, round, addr;
	char *l = v->line;

	l[v->line_len] = 0;
	v->line_len = 0;
	pthread_mutex_lock(&lock);
	if (strstr(l, "FAIL")) {
		v->failed = true;
		snprintf(v->why, sizeof(v->why), "%s", l);
	} else if (sscanf(l, "qguest: verdict ok id=%x round=%u", &id, &round) == 2) {
		snprintf(v->verdict, sizeof(v->verdict), "%s", l + 8);
		v->verdicts++;
	} else if (sscanf(l, "qguest: id=%x probe=%x round=%u", &id, &addr, &round) == 3) {
		v->probes++;
		v->last_probe = addr;
	} else if (sscanf(l, "qguest: id=%x round=%u ok", &id, &round) == 2) {
		if (!v->reports) {
			v->first_id = id;
			v->first_round = round;
		}
		v->id = id;
		v->round = round;
		v->reports++;
	} else if (sscanf(l, "qguest: id=%x deadline armed round=%u", &id, &round) == 2) {
		v->deadlines_armed++;
	} else if (sscanf(l, "qguest: id=%x deadline fired round=%u", &id, &round) == 2) {
		v->deadlines_fired++;
	} else if (sscanf(l, "qguest: boot id=%x", &id) == 1) {
		v->boots++;
	}
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	if (!strstr(l, " round=") || strstr(l, "FAIL") || strstr(l, "probe=") ||
	    strstr(l, "deadline"))
		ksft_print_msg("%s/%d: %s\n", v->vm->name, v->index, l);
}

/*
 * COM1 (vCPU 0) and COM2 (vCPU 1): the transmitter is always empty, the
 * receiver holds the byte the VMM put there. Other ports read as 0.
 */
static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	int uart = run->io.port >= 0x3f8 && run->io.port < 0x400 ? 0 :
		   run->io.port >= 0x2f8 && run->io.port < 0x300 ? 1 : -1;
	int reg = run->io.port & 7;
	uint32_t i;

	for (i = 0; i < run->io.count; i++, data += run->io.size) {
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			if (uart < 0 || reg)
				continue;
			if (*data == '\n')
				handle_line(v);
			else if (v->line_len < sizeof(v->line) - 1)
				v->line[v->line_len++] = *data;
			continue;
		}
		memset(data, 0, run->io.size);
		if (uart < 0)
			continue;
		if (reg == 5)
			*data = 0x60 | (__atomic_load_n(&v->vm->uart_in[uart], __ATOMIC_ACQUIRE) >= 0);
		else if (!reg)
			*data = __atomic_exchange_n(&v->vm->uart_in[uart], -1, __ATOMIC_ACQ_REL);
	}
}

/* What the guest looked like when it stopped for good. */
static void dump_vcpu(struct vcpu *v)
{
	const Elf32_Ehdr *eh = (const void *)guest_elf;
	const Elf32_Phdr *ph = (const void *)(guest_elf + eh->e_phoff);
	struct kvm_vcpu_events ev;
	struct kvm_sregs sr;
	struct kvm_regs r;
	uint32_t i, off, diff = 0, first = 0;

	if (ioctl(v->fd, KVM_GET_REGS, &r) || ioctl(v->fd, KVM_GET_SREGS, &sr) ||
	    ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev))
		return;
	ksft_print_msg("%s/%d: rip %llx rsp %llx rflags %llx cr0 %llx cr2 %llx cr3 %llx cr4 %llx efer %llx\n",
		       v->vm->name, v->index, r.rip, r.rsp, r.rflags, sr.cr0, sr.cr2, sr.cr3,
		       sr.cr4, sr.efer);
	ksft_print_msg("%s/%d: cs %x/%llx ss %x idt %llx/%x gdt %llx/%x exception %d/%d/%u nmi %d/%d\n",
		       v->vm->name, v->index, sr.cs.selector, sr.cs.base, sr.ss.selector,
		       sr.idt.base, sr.idt.limit, sr.gdt.base, sr.gdt.limit,
		       ev.exception.injected, ev.exception.pending, ev.exception.nr,
		       ev.nmi.injected, ev.nmi.pending);
	/* The image's code and data as loaded: what the guest changed of it. */
	for (i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		for (off = 0; off < ph[i].p_filesz; off++)
			if (v->vm->mem[ph[i].p_paddr + off] != guest_elf[ph[i].p_offset + off] &&
			    !diff++)
				first = ph[i].p_paddr + off;
	}
	ksft_print_msg("%s/%d: %u bytes of the image differ from the file, first at %x\n",
		       v->vm->name, v->index, diff, first);
}

static void kick(int sig)
{
	(void)sig;
	if (self_run)
		self_run->immediate_exit = 1;
}

static void vcpu_stop(struct vcpu *v, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&lock);
	v->failed = true;
	va_start(ap, fmt);
	vsnprintf(v->why, sizeof(v->why), fmt, ap);
	va_end(ap);
	v->want = PAUSE;
	pthread_mutex_unlock(&lock);
}

/*
 * Run the vCPU until the VMM wants it paused. A pause completes what the
 * last exit left in flight (KVM_RUN with immediate_exit: KVM finishes an
 * emulated IN or OUT without running the guest), so that the state that
 * is saved is the guest's whole, and the vCPU stays paused where it is.
 */
static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct kvm_run *run = v->run;
	int r;

	self_run = run;
	v->tid = gettid();
	for (;;) {
		pthread_mutex_lock(&lock);
		if (v->want != RUN) {
			pthread_mutex_unlock(&lock);
			run->immediate_exit = 1;
			r = ioctl(v->fd, KVM_RUN, 0);
			run->immediate_exit = 0;
			pthread_mutex_lock(&lock);
			if (r != -1 || errno != EINTR) {
				v->failed = true;
				snprintf(v->why, sizeof(v->why), "KVM_RUN to pause: %d, %s",
					 r, strerror(errno));
			}
			v->paused = true;
			pthread_cond_broadcast(&cond);
			while (v->want == PAUSE)
				pthread_cond_wait(&cond, &lock);
			v->paused = false;
			if (v->want == QUIT) {
				pthread_mutex_unlock(&lock);
				return NULL;
			}
		}
		pthread_mutex_unlock(&lock);

		r = ioctl(v->fd, KVM_RUN, 0);
		if (r == -1 && errno == EINTR) {
			run->immediate_exit = 0;
			continue;
		}
		if (r == -1 && errno == EPERM && run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
			/*
			 * A page the frozen guest_memfd cannot give: keep this
			 * vCPU where it is until the update is done or cancelled.
			 */
			pthread_mutex_lock(&lock);
			v->held_gpa = run->memory_fault.gpa;
			v->want = PAUSE;
			pthread_mutex_unlock(&lock);
			continue;
		}
		if (r == -1) {
			vcpu_stop(v, "KVM_RUN: %s (exit reason %u)", strerror(errno), run->exit_reason);
			continue;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			handle_io(v);
			break;
		default:
			dump_vcpu(v);
			vcpu_stop(v, "exit reason %u", run->exit_reason);
			break;
		}
	}
}

static void start_vcpus(void)
{
	struct sigaction sa = { .sa_handler = kick };
	int i;

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		die("sigaction: %s", strerror(errno));
	for (i = 0; i < nr_vcpus; i++) {
		vcpus[i]->want = vcpus[i]->held_gpa ? PAUSE : RUN;
		if (pthread_create(&vcpus[i]->thread, NULL, vcpu_thread, vcpus[i]))
			die("pthread_create failed");
	}
}

/* Where every vCPU is: for a wait that timed out. */
static void show_vcpus(void)
{
	char path[64], line[256];
	FILE *f;
	int i;

	for (i = 0; i < nr_vcpus; i++) {
		struct vcpu *v = vcpus[i];

		ksft_print_msg("%s/%d: %u reports, last round %u, %s%s\n", v->vm->name, v->index,
			       v->reports, v->round, v->paused ? "paused" : "running",
			       v->held_gpa ? ", held at a memory fault" : "");
		snprintf(path, sizeof(path), "/proc/self/task/%d/stack", v->tid);
		f = fopen(path, "r");
		while (f && fgets(line, sizeof(line), f))
			ksft_print_msg("%s/%d:   %s", v->vm->name, v->index, line);
		if (f)
			fclose(f);
	}
}

static bool wait_for(bool (*cond_fn)(void *), void *arg, int seconds)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += seconds;
	pthread_mutex_lock(&lock);
	while (!(ok = cond_fn(arg)))
		if (pthread_cond_timedwait(&cond, &lock, &ts))
			break;
	if (!ok)
		ok = cond_fn(arg);
	pthread_mutex_unlock(&lock);
	if (!ok)
		show_vcpus();
	return ok;
}

/*
 * Any vCPU failed: report it and stop. After the update, the guest that
 * failed did not continue, whatever step was under way.
 */
static void check_vcpus(void)
{
	static char name[32];
	int i;

	for (i = 0; i < nr_vcpus; i++) {
		struct vcpu *v = vcpus[i];

		if (!v->failed)
			continue;
		if (resumed) {
			snprintf(name, sizeof(name), "%s_guest_continued", v->vm->name);
			current_case = name;
		}
		die("%s/%d: %s", v->vm->name, v->index, v->why);
	}
}

/* Whether every vCPU (@held: held ones too) has @pred, or any failed. */
static bool all_vcpus(bool (*pred)(struct vcpu *v, void *arg), void *arg, bool held)
{
	int i;

	for (i = 0; i < nr_vcpus; i++)
		if (vcpus[i]->failed)
			return true;
	for (i = 0; i < nr_vcpus; i++)
		if ((held || !vcpus[i]->held_gpa) && !pred(vcpus[i], arg))
			return false;
	return true;
}

static bool reported(struct vcpu *v, void *arg)
{
	(void)arg;
	return v->reports >= v->want_reports;
}

static bool reports_reached(void *arg)
{
	return all_vcpus(reported, arg, false);
}

/* Wait until every vCPU that is not held made @more reports from now. */
static void wait_reports(uint32_t more)
{
	int i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < nr_vcpus; i++)
		vcpus[i]->want_reports = vcpus[i]->reports + more;
	pthread_mutex_unlock(&lock);
	if (!wait_for(reports_reached, NULL, WAIT_S))
		die("the guests did not report for %d s", WAIT_S);
	check_vcpus();
}

/* The probe ends either way: held at a fault, or done. */
static bool probe_over(void *arg)
{
	struct vcpu *v = arg;

	return v->failed || (v->held_gpa && v->paused) || v->probes;
}

/* A vCPU that failed pauses too: wait for it as well. */
static bool all_paused(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < nr_vcpus; i++)
		if (!vcpus[i]->paused)
			return false;
	return true;
}

static void pause_all(void)
{
	int i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < nr_vcpus; i++)
		if (vcpus[i]->want == RUN)
			vcpus[i]->want = PAUSE;
	pthread_mutex_unlock(&lock);
	for (i = 0; i < nr_vcpus; i++)
		pthread_kill(vcpus[i]->thread, SIGUSR1);
	if (!wait_for(all_paused, NULL, WAIT_S))
		die("the vCPUs did not pause");
}

static void set_want(struct vcpu *v, int want)
{
	pthread_mutex_lock(&lock);
	v->want = want;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

static void stop_vcpus(void)
{
	int i;

	pause_all();
	for (i = 0; i < nr_vcpus; i++) {
		set_want(vcpus[i], QUIT);
		pthread_join(vcpus[i]->thread, NULL);
	}
}

/* VMs, memory, vCPUs. */

static int kvm_ioctl(int fd, unsigned long req, void *arg, const char *what)
{
	int r = ioctl(fd, req, arg);

	if (r < 0)
		die("%s: %s", what, strerror(errno));
	return r;
}

/* The VM's one memslot: all of its memory, in its guest_memfd. */
static void map_memory(struct vm *vm)
{
	struct kvm_userspace_memory_region2 region = {
		.slot = 0,
		.flags = KVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = 0,
		.memory_size = MEM_SIZE,
		.guest_memfd = vm->gmem_fd,
		.guest_memfd_offset = 0,
	};

	vm->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, vm->gmem_fd, 0);
	if (vm->mem == MAP_FAILED)
		die("mmap guest_memfd: %s", strerror(errno));
	region.userspace_addr = (uintptr_t)vm->mem;
	kvm_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION2, &region, "KVM_SET_USER_MEMORY_REGION2");
	vm->uart_in[0] = vm->uart_in[1] = -1;
}

static void create_vcpu(struct vm *vm, int index)
{
	struct vcpu *v = &vm->vcpu[index];
	int size = kvm_ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, NULL, "KVM_GET_VCPU_MMAP_SIZE");

	v->vm = vm;
	v->index = index;
	vcpus[nr_vcpus++] = v;
	v->fd = kvm_ioctl(vm->vm_fd, KVM_CREATE_VCPU, (void *)(long)index, "KVM_CREATE_VCPU");
	v->run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED)
		die("mmap vCPU: %s", strerror(errno));
}

static void set_cpuid(struct vcpu *v, struct vcpu_state *s)
{
	struct {
		struct kvm_cpuid2 h;
		struct kvm_cpuid_entry2 e[MAX_CPUID];
	} c = { .h.nent = s->ncpuid };

	memcpy(c.e, s->cpuid, s->ncpuid * sizeof(c.e[0]));
	kvm_ioctl(v->fd, KVM_SET_CPUID2, &c, "KVM_SET_CPUID2");
}

/* The CPUID the guests boot with: all that KVM supports. */
static void supported_cpuid(struct vcpu_state *s)
{
	struct {
		struct kvm_cpuid2 h;
		struct kvm_cpuid_entry2 e[MAX_CPUID];
	} c = { .h.nent = MAX_CPUID };

	kvm_ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, &c, "KVM_GET_SUPPORTED_CPUID");
	s->ncpuid = c.h.nent;
	memcpy(s->cpuid, c.e, c.h.nent * sizeof(c.e[0]));
}

/*
 * The guest arms a TSC-deadline timer of its x2APIC before the update
 * (guest/inner/guest.c): KVM emulates both, and the guest must be told.
 */
static void deadline_cpuid(struct vcpu_state *s)
{
	uint32_t i;

	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) <= 0)
		ksft_exit_skip("KVM has no TSC-deadline timer\n");
	for (i = 0; i < s->ncpuid; i++)
		if (s->cpuid[i].function == 1)
			s->cpuid[i].ecx |= 1u << 21 | 1u << 24;	/* x2APIC, TSC_DEADLINE */
}

/* The CPUID the vCPU has, to give it the same after the update. */
static void get_cpuid(struct vcpu *v, struct vcpu_state *s)
{
	struct {
		struct kvm_cpuid2 h;
		struct kvm_cpuid_entry2 e[MAX_CPUID];
	} c = { .h.nent = MAX_CPUID };

	kvm_ioctl(v->fd, KVM_GET_CPUID2, &c, "KVM_GET_CPUID2");
	s->ncpuid = c.h.nent;
	memcpy(s->cpuid, c.e, c.h.nent * sizeof(c.e[0]));
}

/* Load the guest image; find the second CPU's entry and the probe word. */
static uint32_t load_guest(struct vm *vm)
{
	const Elf32_Ehdr *eh = (const void *)guest_elf;
	const Elf32_Phdr *ph = (const void *)(guest_elf + eh->e_phoff);
	const uint32_t *info = NULL;
	uint32_t i, off;

	for (i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		if (ph[i].p_paddr + ph[i].p_memsz > PROBE_START)
			die("guest segment at 0x%x too big", ph[i].p_paddr);
		memcpy(vm->mem + ph[i].p_paddr, guest_elf + ph[i].p_offset, ph[i].p_filesz);
	}
	for (off = 0; off < 8192; off += 4) {
		const uint32_t *w = (const void *)(vm->mem + 0x100000 + off);

		if (w[0] == 0x1badb002 && w[3] == VMM_INFO_MAGIC) {
			info = w;
			break;
		}
	}
	if (!info)
		die("no multiboot header with VMM information in the guest image");
	vm->ap_entry = info[4];
	vm->probe_req = info[5];
	return eh->e_entry;
}

/* CPUID tells each vCPU its APIC ID, which KVM gives vCPU @index. */
static void set_apic_id(struct vcpu_state *c, uint32_t index)
{
	uint32_t i;

	for (i = 0; i < c->ncpuid; i++) {
		if (c->cpuid[i].function == 1)
			c->cpuid[i].ebx = (c->cpuid[i].ebx & 0x00ffffff) | index << 24;
		if (c->cpuid[i].function == 0xb || c->cpuid[i].function == 0x1f)
			c->cpuid[i].edx = index;
	}
}

/* Flat 32-bit protected mode at @entry, as a multiboot loader leaves it. */
static void boot_vcpu(struct vcpu *v, uint32_t entry)
{
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 0xb,
		.present = 1, .db = 1, .s = 1, .g = 1,
	};
	struct kvm_segment data = code;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = entry, .rflags = 2, .rax = 0x2badb002 };
	/* Not waiting for INIT and SIPI: the VMM starts the second CPU itself. */
	struct kvm_mp_state mp_state = { .mp_state = KVM_MP_STATE_RUNNABLE };

	data.selector = 0x10;
	data.type = 0x3;
	kvm_ioctl(v->fd, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.cr0 = 0x11;	/* PE, ET */
	sregs.cr4 = 0;
	sregs.efer = 0;
	kvm_ioctl(v->fd, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
	kvm_ioctl(v->fd, KVM_SET_REGS, &regs, "KVM_SET_REGS");
	kvm_ioctl(v->fd, KVM_SET_MP_STATE, &mp_state, "KVM_SET_MP_STATE");
}

static void create_vm(struct vm *vm, struct vcpu_state *cpuid)
{
	struct kvm_create_guest_memfd gmem = {
		.size = MEM_SIZE,
		.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
	};
	uint32_t entry;
	int i;

	vm->vm_fd = kvm_ioctl(kvm_fd, KVM_CREATE_VM, (void *)KVM_X86_DEFAULT_VM, "KVM_CREATE_VM");
	kvm_ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, NULL, "KVM_CREATE_IRQCHIP");
	vm->gmem_fd = kvm_ioctl(vm->vm_fd, KVM_CREATE_GUEST_MEMFD, &gmem, "KVM_CREATE_GUEST_MEMFD");
	/*
	 * Allocate all the guest may touch before the kexec: once preserved,
	 * the guest_memfd gets no new page. The probe pages stay out.
	 */
	if (fallocate(vm->gmem_fd, FALLOC_FL_KEEP_SIZE, 0, PROBE_START))
		die("fallocate guest_memfd: %s", strerror(errno));
	map_memory(vm);
	entry = load_guest(vm);
	for (i = 0; i < vm->nr_vcpus; i++) {
		create_vcpu(vm, i);
		set_apic_id(cpuid, i);
		set_cpuid(&vm->vcpu[i], cpuid);
		boot_vcpu(&vm->vcpu[i], i ? vm->ap_entry : entry);
	}
}

/* Every MSR KVM saves and restores, as KVM_GET_MSR_INDEX_LIST lists them. */
static void save_msrs(struct vcpu *v, struct vcpu_state *s)
{
	struct {
		struct kvm_msr_list h;
		uint32_t index[MAX_MSRS];
	} list = { .h.nmsrs = MAX_MSRS };
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[MAX_MSRS];
	} msrs = { 0 };
	uint32_t i;
	int r;

	kvm_ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &list, "KVM_GET_MSR_INDEX_LIST");
	for (i = 0; i < list.h.nmsrs; i++)
		msrs.e[i].index = list.index[i];
	msrs.h.nmsrs = list.h.nmsrs;
	/* KVM stops at the first MSR it cannot read (not for this CPUID): drop it. */
	for (;;) {
		r = kvm_ioctl(v->fd, KVM_GET_MSRS, &msrs, "KVM_GET_MSRS");
		if ((uint32_t)r == msrs.h.nmsrs)
			break;
		memmove(&msrs.e[r], &msrs.e[r + 1], (msrs.h.nmsrs - r - 1) * sizeof(msrs.e[0]));
		msrs.h.nmsrs--;
	}
	s->nmsrs = msrs.h.nmsrs;
	memcpy(s->msrs, msrs.e, s->nmsrs * sizeof(s->msrs[0]));
}

static void save_vcpu(struct vcpu *v, struct vcpu_state *s)
{
	int size = kvm_ioctl(v->vm->vm_fd, KVM_CHECK_EXTENSION, (void *)KVM_CAP_XSAVE2,
			     "KVM_CAP_XSAVE2");

	if (size < (int)sizeof(struct kvm_xsave) || size > MAX_XSAVE)
		die("XSAVE size %d", size);
	s->xsave_size = size;
	get_cpuid(v, s);
	kvm_ioctl(v->fd, KVM_GET_REGS, &s->regs, "KVM_GET_REGS");
	kvm_ioctl(v->fd, KVM_GET_SREGS, &s->sregs, "KVM_GET_SREGS");
	kvm_ioctl(v->fd, KVM_GET_VCPU_EVENTS, &s->events, "KVM_GET_VCPU_EVENTS");
	kvm_ioctl(v->fd, KVM_GET_DEBUGREGS, &s->debugregs, "KVM_GET_DEBUGREGS");
	kvm_ioctl(v->fd, KVM_GET_XCRS, &s->xcrs, "KVM_GET_XCRS");
	kvm_ioctl(v->fd, KVM_GET_XSAVE2, s->xsave, "KVM_GET_XSAVE2");
	kvm_ioctl(v->fd, KVM_GET_LAPIC, &s->lapic, "KVM_GET_LAPIC");
	kvm_ioctl(v->fd, KVM_GET_MP_STATE, &s->mp_state, "KVM_GET_MP_STATE");
	save_msrs(v, s);
	s->id = v->id;
	s->round = v->round;
	s->held_gpa = v->held_gpa;
	s->line_len = v->line_len;
	memcpy(s->line, v->line, sizeof(s->line));
}

static uint64_t saved_msr(const struct vcpu_state *s, uint32_t index);

/*
 * In the order KVM needs: CPUID first, registers last, the LAPIC after the
 * MSRs (IA32_APIC_BASE decides its mode) and the TSC deadline after the
 * LAPIC.
 */
static void load_vcpu(struct vcpu *v, struct vcpu_state *s)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[MAX_MSRS];
	} msrs = { .h.nmsrs = s->nmsrs };
	struct kvm_regs regs;
	int r;

	set_cpuid(v, s);
	kvm_ioctl(v->fd, KVM_SET_XSAVE, s->xsave, "KVM_SET_XSAVE");
	kvm_ioctl(v->fd, KVM_SET_XCRS, &s->xcrs, "KVM_SET_XCRS");
	kvm_ioctl(v->fd, KVM_SET_SREGS, &s->sregs, "KVM_SET_SREGS");
	memcpy(msrs.e, s->msrs, s->nmsrs * sizeof(s->msrs[0]));
	r = kvm_ioctl(v->fd, KVM_SET_MSRS, &msrs, "KVM_SET_MSRS");
	if ((uint32_t)r != s->nmsrs)
		die("KVM_SET_MSRS: MSR 0x%x refused", s->msrs[r].index);
	kvm_ioctl(v->fd, KVM_SET_LAPIC, &s->lapic, "KVM_SET_LAPIC");
	/*
	 * The TSC deadline again, now that the LAPIC's timer is in TSC-deadline
	 * mode: KVM ignored it above, on a LAPIC fresh from KVM_CREATE_VCPU,
	 * and KVM_SET_LAPIC cleared the timer. As QEMU does.
	 */
	msrs.h.nmsrs = 1;
	msrs.e[0].index = MSR_IA32_TSC_DEADLINE;
	msrs.e[0].data = saved_msr(s, MSR_IA32_TSC_DEADLINE);
	if (kvm_ioctl(v->fd, KVM_SET_MSRS, &msrs, "KVM_SET_MSRS") != 1)
		die("KVM_SET_MSRS: the TSC deadline refused");
	kvm_ioctl(v->fd, KVM_SET_MP_STATE, &s->mp_state, "KVM_SET_MP_STATE");
	kvm_ioctl(v->fd, KVM_SET_VCPU_EVENTS, &s->events, "KVM_SET_VCPU_EVENTS");
	kvm_ioctl(v->fd, KVM_SET_DEBUGREGS, &s->debugregs, "KVM_SET_DEBUGREGS");
	kvm_ioctl(v->fd, KVM_SET_REGS, &s->regs, "KVM_SET_REGS");
	kvm_ioctl(v->fd, KVM_GET_REGS, &regs, "KVM_GET_REGS");
	if (regs.rip != s->regs.rip || regs.rsp != s->regs.rsp)
		die("%s/%d: rip 0x%llx rsp 0x%llx after the load, 0x%llx 0x%llx saved",
		    v->vm->name, v->index, regs.rip, regs.rsp, s->regs.rip, s->regs.rsp);
	v->id = s->id;
	v->round = s->round;
	v->held_gpa = s->held_gpa;
	v->line_len = s->line_len;
	memcpy(v->line, s->line, sizeof(v->line));
}

static void preserve_vms(int session)
{
	int i;

	for (i = 0; i < NR_VMS; i++) {
		preserve(session, vms[i].vm_fd, vms[i].vm_token, "VM");
		preserve(session, vms[i].gmem_fd, vms[i].gmem_token, "guest_memfd");
	}
}

/*
 * Make vCPU 1 of VM b write the page at @gpa, which is not allocated: while
 * the guest_memfd is frozen, KVM_RUN fails with EPERM and a memory fault at
 * @gpa, and the VMM holds the vCPU there.
 */
static void probe(uint64_t gpa)
{
	struct vm *vm = &vms[1];
	struct vcpu *v = &vm->vcpu[1];

	pthread_mutex_lock(&lock);
	v->probes = 0;
	pthread_mutex_unlock(&lock);
	__atomic_store_n((uint32_t *)(vm->mem + vm->probe_req), (uint32_t)gpa, __ATOMIC_RELEASE);
}

static void check_held(uint64_t gpa)
{
	struct vcpu *v = &vms[1].vcpu[1];

	if (!wait_for(probe_over, v, WAIT_S))
		die("b/1 did not fault on the probe at 0x%llx", (unsigned long long)gpa);
	check_vcpus();
	if (v->probes)
		die("b/1 wrote 0x%llx, a page the frozen guest_memfd did not have",
		    (unsigned long long)gpa);
	ksft_print_msg("b/1: KVM_RUN failed with EPERM, memory fault at 0x%llx: held\n",
		       (unsigned long long)v->held_gpa);
	if (v->held_gpa != gpa)
		die("b/1: memory fault at 0x%llx, probe at 0x%llx",
		    (unsigned long long)v->held_gpa, (unsigned long long)gpa);
}

static void check_probed(uint64_t gpa)
{
	struct vcpu *v = &vms[1].vcpu[1];

	if (!wait_for(probe_over, v, WAIT_S))
		die("b/1 did not finish the probe at 0x%llx", (unsigned long long)gpa);
	check_vcpus();
	if (!v->probes)
		die("b/1: KVM_RUN failed with EPERM again, memory fault at 0x%llx",
		    (unsigned long long)v->held_gpa);
	if (v->last_probe != gpa)
		die("b/1 probed 0x%llx, not 0x%llx", (unsigned long long)v->last_probe,
		    (unsigned long long)gpa);
}

/*
 * A session from the agent, the VMs and guest_memfds preserved in it, and
 * vCPU 1 of b held at a memory fault at @gpa: the session.
 */
static int preserve_and_probe(const char *cmd, uint64_t gpa)
{
	int session = session_from_agent(cmd);

	preserve_vms(session);
	probe(gpa);
	check_held(gpa);
	return session;
}

static bool deadlines_armed(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < NR_VMS; i++)
		if (!vms[i].vcpu[0].failed && !vms[i].vcpu[0].deadlines_armed)
			return false;
	return true;
}

static bool deadlines_fired(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < NR_VMS; i++)
		if (!vms[i].vcpu[0].failed && !vms[i].vcpu[0].deadlines_fired)
			return false;
	return true;
}

/* The value of MSR @index in @s, or 0 if it was not saved. */
static uint64_t saved_msr(const struct vcpu_state *s, uint32_t index)
{
	uint32_t i;

	for (i = 0; i < s->nmsrs; i++)
		if (s->msrs[i].index == index)
			return s->msrs[i].data;
	return 0;
}

static void resume_held(void)
{
	struct vcpu *v = &vms[1].vcpu[1];

	pthread_mutex_lock(&lock);
	v->held_gpa = 0;
	v->want = RUN;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

static int open_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC), caps;

	if (fd < 0)
		ksft_exit_skip("no /dev/kvm: %s\n", strerror(errno));
	caps = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
	if (caps < 0 || (caps & (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)) !=
	    (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED))
		ksft_exit_skip("guest_memfd cannot be mmap()ed and shared (flags 0x%x)\n", caps);
	return fd;
}

static void stage1(void)
{
	int session, state_fd, i, j;

	ksft_set_plan(7);
	start_agent();
	supported_cpuid(&boot_cpuid);
	deadline_cpuid(&boot_cpuid);
	for (i = 0; i < NR_VMS; i++)
		create_vm(&vms[i], &boot_cpuid);

	current_case = "guests_running";
	start_vcpus();
	wait_reports(1);
	for (i = 0; i < NR_VMS; i++)
		for (j = 0; j < vms[i].nr_vcpus; j++)
			ksft_print_msg("%s/%d: id=%08x round=%u\n", vms[i].name, j,
				       vms[i].vcpu[j].id, vms[i].vcpu[j].round);
	ksft_test_result_pass("guests_running (VM a: 1 vCPU, VM b: 2 vCPUs, memory in guest_memfd)\n");

	/* An update that is cancelled: the guests do not notice. */
	current_case = "cancel_fault_held";
	session = preserve_and_probe("create " CANCEL_SESSION, PROBE_CANCEL);
	wait_reports(1);	/* the others run on the frozen memory */
	ksft_test_result_pass("cancel_fault_held\n");

	current_case = "cancelled_guest_runs";
	close(session);
	if (agent_call("close", NULL))
		die("agent: close failed");
	resume_held();
	check_probed(PROBE_CANCEL);
	wait_reports(1);
	ksft_test_result_pass("cancelled_guest_runs (the fault is served once the session is closed)\n");

	/* The update. */
	current_case = "update_fault_held";
	session = preserve_and_probe("create " SESSION, PROBE_UPDATE);
	ksft_test_result_pass("update_fault_held\n");

	/*
	 * Each VM's boot CPU arms its local APIC's TSC-deadline timer, seconds
	 * ahead: it is pending across the pause, and must fire after the
	 * resume, as the timer of a guest kernel idle in HLT must.
	 */
	current_case = "deadline_pending_at_pause";
	for (i = 0; i < NR_VMS; i++)
		__atomic_store_n(&vms[i].uart_in[0], 'd', __ATOMIC_RELEASE);
	if (!wait_for(deadlines_armed, NULL, WAIT_S))
		die("the guests did not arm their deadline timers");
	check_vcpus();

	current_case = "vcpus_saved";
	blackout("vcpus pausing");
	pause_all();
	blackout("vcpus paused");
	check_vcpus();
	state.magic = STATE_MAGIC;
	for (i = 0; i < NR_VMS; i++) {
		struct vm_state *s = &state.vm[i];

		s->vm_token = vms[i].vm_token;
		s->gmem_token = vms[i].gmem_token;
		s->mem_size = MEM_SIZE;
		s->probe_req = vms[i].probe_req;
		s->nr_vcpus = vms[i].nr_vcpus;
		for (j = 0; j < 3; j++) {
			s->irqchip[j].chip_id = j;
			kvm_ioctl(vms[i].vm_fd, KVM_GET_IRQCHIP, &s->irqchip[j], "KVM_GET_IRQCHIP");
		}
		for (j = 0; j < vms[i].nr_vcpus; j++) {
			save_vcpu(&vms[i].vcpu[j], &s->vcpu[j]);
			ksft_print_msg("%s/%d: paused at rip 0x%llx, last report round %u%s\n",
				       vms[i].name, j, s->vcpu[j].regs.rip, s->vcpu[j].round,
				       s->vcpu[j].held_gpa ? ", held at a memory fault" : "");
		}
	}
	state_fd = memfd_create("gmem-vmm-state", MFD_CLOEXEC);
	if (state_fd < 0 || pwrite(state_fd, &state, sizeof(state), 0) != sizeof(state))
		die("state memfd: %s", strerror(errno));
	blackout("vcpu state saved (%zu bytes)", sizeof(state));
	preserve(session, state_fd, TOKEN_STATE, "state");
	blackout("state preserved");
	ksft_test_result_pass("vcpus_saved (%zu bytes of state)\n", sizeof(state));

	current_case = "deadline_pending_at_pause";
	for (i = 0; i < NR_VMS; i++) {
		const struct vcpu_state *s = &state.vm[i].vcpu[0];
		uint64_t tsc = saved_msr(s, MSR_IA32_TSC);
		uint64_t deadline = saved_msr(s, MSR_IA32_TSC_DEADLINE);

		ksft_print_msg("%s/0: TSC 0x%llx, TSC deadline 0x%llx at the pause\n", vms[i].name,
			       (unsigned long long)tsc, (unsigned long long)deadline);
		if (deadline <= tsc)
			die("%s/0: the deadline timer is not pending at the pause (fired already? a slow host)",
			    vms[i].name);
	}
	ksft_test_result_pass("deadline_pending_at_pause\n");

	current_case = "agent_holds";
	if (agent_call("hold", NULL))
		die("agent: hold failed");
	ksft_test_result_pass("agent_holds\n");
	ksft_finished();
}

static bool verdict_given(struct vcpu *v, void *arg)
{
	(void)arg;
	return v->verdicts;
}

static bool verdicts_in(void *arg)
{
	return all_vcpus(verdict_given, arg, true);
}

static void stage2(void)
{
	int session, state_fd, i, j;

	ksft_set_plan(8);
	start_agent();
	current_case = "session_from_agent";
	session = session_from_agent("retrieve " SESSION);
	blackout("session retrieved");
	ksft_test_result_pass("session_from_agent\n");

	current_case = "memory_retrieved";
	state_fd = retrieve(session, TOKEN_STATE, "state");
	if (pread(state_fd, &state, sizeof(state), 0) != sizeof(state) || state.magic != STATE_MAGIC)
		die("state memfd: short or no magic");
	for (i = 0; i < NR_VMS; i++) {
		/* VM a first, then its guest_memfd; b the other way round. */
		if (!i)
			vms[i].vm_fd = retrieve(session, state.vm[i].vm_token, "VM");
		vms[i].gmem_fd = retrieve(session, state.vm[i].gmem_token, "guest_memfd");
		if (i)
			vms[i].vm_fd = retrieve(session, state.vm[i].vm_token, "VM");
	}
	blackout("memory retrieved");
	ksft_test_result_pass("memory_retrieved\n");

	current_case = "vcpus_loaded";
	for (i = 0; i < NR_VMS; i++) {
		/* The retrieved VM has no irqchip, memslot or vCPU. */
		kvm_ioctl(vms[i].vm_fd, KVM_CREATE_IRQCHIP, NULL, "KVM_CREATE_IRQCHIP");
		for (j = 0; j < 3; j++)
			kvm_ioctl(vms[i].vm_fd, KVM_SET_IRQCHIP, &state.vm[i].irqchip[j],
				  "KVM_SET_IRQCHIP");
		map_memory(&vms[i]);
		vms[i].probe_req = state.vm[i].probe_req;
		for (j = 0; j < vms[i].nr_vcpus; j++) {
			create_vcpu(&vms[i], j);
			load_vcpu(&vms[i].vcpu[j], &state.vm[i].vcpu[j]);
		}
	}
	blackout("vcpu state loaded");
	ksft_test_result_pass("vcpus_loaded\n");

	current_case = "update_fault_served";
	/* The held vCPU runs too: the retrieved guest_memfd is not frozen. */
	resume_held();
	resumed = true;
	start_vcpus();
	blackout("vcpus running");
	check_probed(PROBE_UPDATE);
	ksft_test_result_pass("update_fault_served (b/1 wrote 0x%llx in the next kernel)\n",
			      (unsigned long long)PROBE_UPDATE);

	/* The timers pending at the pause fire now (the guests' TSC went on). */
	current_case = "deadline_fired_after_resume";
	if (!wait_for(deadlines_fired, NULL, WAIT_S))
		die("a deadline timer pending at the pause did not fire within %d s of the resume",
		    WAIT_S);
	check_vcpus();
	ksft_test_result_pass("deadline_fired_after_resume\n");

	current_case = "session_finished";
	wait_reports(2);
	if (agent_call("finish", NULL))
		die("agent: finish failed");
	ksft_test_result_pass("session_finished\n");

	/*
	 * Each vCPU went on from where it was paused: the same identity, and
	 * its first report is the one after its last before the pause; then
	 * the guest checks all of its memory and gives its verdict.
	 */
	for (i = 0; i < NR_VMS; i++)
		for (j = 0; j < vms[i].nr_vcpus; j++)
			__atomic_store_n(&vms[i].uart_in[j], 'v', __ATOMIC_RELEASE);
	if (!wait_for(verdicts_in, NULL, WAIT_S))
		die("no verdict from the guests");
	for (i = 0; i < NR_VMS; i++) {
		char name[32], guest[512] = "";
		bool ok = true;

		snprintf(name, sizeof(name), "%s_guest_continued", vms[i].name);
		for (j = 0; j < vms[i].nr_vcpus; j++) {
			struct vcpu *v = &vms[i].vcpu[j];
			struct vcpu_state *s = &state.vm[i].vcpu[j];
			bool vok = !v->failed && !v->boots && v->first_id == s->id &&
				   v->first_round == s->round + TICK && v->id == s->id;

			ksft_print_msg("%s/%d: %s; reports: round %u before the pause, %u first after (id %08x, %08x)%s%s\n",
				       vms[i].name, j, v->failed ? v->why : v->verdict, s->round,
				       v->first_round, s->id, v->first_id,
				       v->boots ? ", rebooted" : "", vok ? "" : ": FAIL");
			ok &= vok;
			snprintf(guest + strlen(guest), sizeof(guest) - strlen(guest),
				 "%s%s/%d: \"%s\", round %u before the pause, %u after",
				 j ? "; " : "", vms[i].name, j, v->failed ? v->why : v->verdict,
				 s->round, v->first_round);
		}
		ksft_test_result(ok, "%s (%s)\n", name, guest);
	}
	stop_vcpus();
	close(agent_sock);
	waitpid(agent_pid, NULL, 0);
	ksft_finished();
}

int main(int argc, char *argv[])
{
	ksft_print_header();
	if (argc != 3 || strcmp(argv[1], "-s") || (strcmp(argv[2], "1") && strcmp(argv[2], "2")))
		ksft_exit_fail_msg("usage: %s -s 1|2\n", argv[0]);
	kvm_fd = open_kvm();
	if (argv[2][0] == '1')
		stage1();
	else
		stage2();
	return 0;
}
