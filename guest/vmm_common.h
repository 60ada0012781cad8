/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the harness's live-update agents (qemu_agent.c, gmem_vmm.c) share:
 * the blackout marks, and the LUO calls that end the test when they fail.
 * The file that includes this defines die(), which reports the case under
 * way as failed and exits.
 */
#ifndef VMM_COMMON_H
#define VMM_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sys/socket.h>

#include <libliveupdate.h>

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...);

/* die()'s message, as a KTAP diagnostic line. */
static inline void say(const char *fmt, va_list ap)
{
	printf("# ");
	vprintf(fmt, ap);
	printf("\n");
}

/* die()'s end: the case under way, if any, failed; so does the binary. */
static inline void __attribute__((noreturn)) exit_failed(const char *current_case)
{
	if (current_case)
		ksft_test_result_fail("%s\n", current_case);
	ksft_exit_fail();
}

/* Send @len bytes of @buf on @sock, with @fd attached (SCM_RIGHTS) unless -1. */
static inline ssize_t send_with_fd(int sock, const void *buf, size_t len, int fd)
{
	char ctl[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	if (fd >= 0) {
		msg.msg_control = ctl;
		msg.msg_controllen = sizeof(ctl);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return sendmsg(sock, &msg, 0);
}

/* "# blackout: <event>": the host stamps it (scripts/run.py, blackout()). */
static inline void __attribute__((format(printf, 1, 2))) blackout(const char *fmt, ...)
{
	va_list ap;

	printf("# blackout: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* The agent's LUO files are its own: none of them crosses an exec. */
static inline int cloexec(int fd)
{
	if (fd >= 0 && fcntl(fd, F_SETFD, FD_CLOEXEC))
		die("fcntl: %s", strerror(errno));
	return fd;
}

static inline void preserve(int session, int fd, uint64_t token, const char *what)
{
	int err = luo_session_preserve_fd(session, fd, token);

	if (err)
		die("preserve %s: %s", what, strerror(-err));
}

static inline int retrieve(int session, uint64_t token, const char *what)
{
	int fd = cloexec(luo_session_retrieve_fd(session, token));

	if (fd < 0)
		die("retrieve %s: %s", what, strerror(-fd));
	return fd;
}

#endif
