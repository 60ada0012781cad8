// SPDX-License-Identifier: GPL-2.0
/*
 * luo_demo: the live-update demo that `make` runs.
 *
 *   luo_demo -s 1   create a session, fill memfds with a pattern, preserve
 *                   them, leave a child holding the session for the kexec
 *   luo_demo -s 2   retrieve the session and the memfds, verify every byte,
 *                   finish the session
 *
 * Lines starting with "DEMO " are the timeline the host prints.
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
#include <unistd.h>

#define SESSION		"luo-demo"
#define NR_MEMFDS	4
#define MEMFD_SIZE	(4UL << 20)

static void die(const char *what)
{
	printf("DEMO FAILED: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* The byte at @off of memfd @i: cheap, and different in every page. */
static uint8_t pattern(int i, size_t off)
{
	uint64_t x = (off >> 3) * 0x9e3779b97f4a7c15ULL + i;

	return (uint8_t)((x >> 29) ^ (x >> 7) ^ off);
}

static void *map(int fd)
{
	void *p = mmap(NULL, MEMFD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

static void stage1(int luo)
{
	struct liveupdate_ioctl_create_session cs = { .size = sizeof(cs) };
	int i, fds[NR_MEMFDS];
	size_t off;

	strcpy((char *)cs.name, SESSION);
	if (ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, &cs))
		die("LIVEUPDATE_IOCTL_CREATE_SESSION");
	printf("DEMO stage 1: session '%s' created\n", SESSION);

	for (i = 0; i < NR_MEMFDS; i++) {
		struct liveupdate_session_preserve_fd pf = { .size = sizeof(pf) };
		uint8_t *p;

		fds[i] = memfd_create("luo-demo", 0);
		if (fds[i] < 0 || ftruncate(fds[i], MEMFD_SIZE))
			die("memfd_create/ftruncate");
		p = map(fds[i]);
		for (off = 0; off < MEMFD_SIZE; off++)
			p[off] = pattern(i, off);
		munmap(p, MEMFD_SIZE);

		pf.fd = fds[i];
		pf.token = 100 + i;
		if (ioctl(cs.fd, LIVEUPDATE_SESSION_PRESERVE_FD, &pf))
			die("LIVEUPDATE_SESSION_PRESERVE_FD");
		printf("DEMO stage 1: preserved memfd %d (%lu MiB, token %d)\n",
		       i, MEMFD_SIZE >> 20, 100 + i);
	}
	printf("DEMO stage 1: %d memfds, %lu MiB preserved; requesting kexec\n",
	       NR_MEMFDS, (NR_MEMFDS * MEMFD_SIZE) >> 20);
	fflush(stdout);
	close(luo);

	/* The session lives as long as its fd: keep it open in a child. */
	if (fork() == 0) {
		setsid();
		close(0);
		close(1);
		close(2);
		for (;;)
			pause();
	}
}

static void stage2(int luo)
{
	struct liveupdate_ioctl_retrieve_session rs = { .size = sizeof(rs) };
	struct liveupdate_session_finish fin = { .size = sizeof(fin) };
	size_t off, verified = 0;
	int i;

	strcpy((char *)rs.name, SESSION);
	if (ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &rs))
		die("LIVEUPDATE_IOCTL_RETRIEVE_SESSION");
	printf("DEMO stage 2: session '%s' retrieved\n", SESSION);

	for (i = 0; i < NR_MEMFDS; i++) {
		struct liveupdate_session_retrieve_fd rf = { .size = sizeof(rf) };
		uint8_t *p;

		rf.token = 100 + i;
		if (ioctl(rs.fd, LIVEUPDATE_SESSION_RETRIEVE_FD, &rf))
			die("LIVEUPDATE_SESSION_RETRIEVE_FD");
		p = map(rf.fd);
		for (off = 0; off < MEMFD_SIZE; off++) {
			if (p[off] != pattern(i, off)) {
				printf("DEMO FAILED: memfd %d differs at offset %zu\n", i, off);
				exit(1);
			}
		}
		verified += MEMFD_SIZE;
		munmap(p, MEMFD_SIZE);
		close(rf.fd);
		printf("DEMO stage 2: retrieved memfd %d (token %d), contents intact\n",
		       i, 100 + i);
	}
	printf("DEMO stage 2: verified %zu bytes in %d memfds\n", verified, NR_MEMFDS);
	if (ioctl(rs.fd, LIVEUPDATE_SESSION_FINISH, &fin))
		die("LIVEUPDATE_SESSION_FINISH");
	printf("DEMO stage 2: session finished\n");
}

int main(int argc, char *argv[])
{
	int luo;

	if (argc != 3 || strcmp(argv[1], "-s")) {
		fprintf(stderr, "usage: %s -s 1|2\n", argv[0]);
		return 2;
	}
	luo = open("/dev/liveupdate", O_RDWR);
	if (luo < 0)
		die("/dev/liveupdate");
	if (atoi(argv[2]) == 1)
		stage1(luo);
	else
		stage2(luo);
	return 0;
}
