// SPDX-License-Identifier: GPL-2.0
/*
 * kexec-file: load a kernel with kexec_file_load(2), or jump into it.
 *
 *   kexec-file load <kernel> <initrd> <cmdline>
 *   kexec-file exec
 *
 * busybox has no kexec applet; this is the little the guest init needs.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <unistd.h>

static int load(const char *kernel, const char *initrd, const char *cmdline)
{
	int kfd = open(kernel, O_RDONLY | O_CLOEXEC);
	int ifd = open(initrd, O_RDONLY | O_CLOEXEC);

	if (kfd < 0 || ifd < 0) {
		perror("kexec-file: open");
		return 1;
	}
	if (syscall(SYS_kexec_file_load, kfd, ifd, strlen(cmdline) + 1,
		    cmdline, 0UL)) {
		perror("kexec-file: kexec_file_load");
		return 1;
	}
	return 0;
}

int main(int argc, char *argv[])
{
	if (argc == 5 && !strcmp(argv[1], "load"))
		return load(argv[2], argv[3], argv[4]);
	if (argc == 2 && !strcmp(argv[1], "exec")) {
		sync();
		reboot(RB_KEXEC);
		perror("kexec-file: reboot(RB_KEXEC)");
		return 1;
	}
	fprintf(stderr, "usage: kexec-file load <kernel> <initrd> <cmdline> | exec\n");
	return 2;
}
