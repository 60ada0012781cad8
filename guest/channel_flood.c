// SPDX-License-Identifier: GPL-2.0
/*
 * The results channel under pressure (lane "channel"): in each stage of a
 * kexec lane, write 512 KiB of diagnostic lines as fast as the channel takes
 * them, then one result, and exit; guest/init then writes its markers and
 * kexecs (stage 1) or powers off (stage 2). A channel that drops what the
 * host does not read in time, or what is still in flight at the kexec,
 * loses the result or a marker after the flood whenever the host's reader
 * falls behind (make soak LOAD=stall=<s> stops it on purpose), and the lane
 * fails: each stage's plan is one result, and each marker is numbered.
 *
 *   channel_flood -s <stage>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINES		1024
#define LINE_BYTES	512	/* "# flood <i>/<n> " and padding, newline included */

int main(int argc, char **argv)
{
	char line[LINE_BYTES + 1];
	int stage = 0, i, n;

	if (argc == 3 && !strcmp(argv[1], "-s"))
		stage = atoi(argv[2]);
	if (stage != 1 && stage != 2) {
		fprintf(stderr, "usage: %s -s 1|2\n", argv[0]);
		return 2;
	}
	/* Unbuffered stdio would make a write per line: the same here. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("KTAP version 1\n1..1\n");
	for (i = 1; i <= LINES; i++) {
		n = snprintf(line, sizeof(line), "# flood %d/%d stage %d ", i, LINES, stage);
		memset(line + n, 'a' + i % 26, LINE_BYTES - 1 - n);
		line[LINE_BYTES - 1] = '\n';
		line[LINE_BYTES] = '\0';
		if (fputs(line, stdout) == EOF) {
			printf("not ok 1 flood_stage_%d # write failed at line %d\n", stage, i);
			return 1;
		}
	}
	printf("ok 1 flood_stage_%d (%d lines, %d bytes)\n", stage, LINES, LINES * LINE_BYTES);
	return 0;
}
