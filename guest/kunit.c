// SPDX-License-Identifier: GPL-2.0
/*
 * kunit: the results of the kernel's built-in KUnit suites, as one KTAP
 * test with a result per case ("<suite>.<case>").
 *
 *   kunit [suite...]
 *
 * The suites ran at boot; their results are read from
 * /sys/kernel/debug/kunit/<suite>/results. Without arguments every suite
 * there is reported; a suite named on the command line must be there.
 * A suite that has no results, or none at all, is a failure: a test that
 * did not run has not passed. Exit status 0 when every case passed or was
 * skipped, 1 otherwise.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROOT "/sys/kernel/debug/kunit"
#define MAX_SUITES 64
#define MAX_CASES 1024

struct result {
	char line[512];		/* "ok" or "not ok", the name and directive */
	int ok;
};

static struct result results[MAX_CASES];
static int nresults;

static void add(int ok, const char *fmt, const char *suite, const char *rest)
{
	struct result *r;

	if (nresults == MAX_CASES)
		return;
	r = &results[nresults++];
	r->ok = ok;
	snprintf(r->line, sizeof(r->line), fmt, suite, rest);
}

/*
 * The cases of one suite: the results file's lines at the first level of
 * indentation ("    ok 1 name"); deeper ones are parameters of a case.
 * Diagnostics, at any level, are passed on as KTAP comments.
 */
static int read_suite(const char *suite)
{
	char path[512], line[512];
	int cases = 0;
	FILE *f;

	snprintf(path, sizeof(path), ROOT "/%s/results", suite);
	f = fopen(path, "r");
	if (!f) {
		add(0, "%s%s", suite, " # no results: the suite is not built in");
		return 0;
	}
	while (fgets(line, sizeof(line), f)) {
		const char *p = line + 4;
		int ok;

		line[strcspn(line, "\n")] = '\0';
		if (line[strspn(line, " ")] == '#') {
			printf("# %s:%s\n", suite, line + strspn(line, " ") + 1);
			continue;
		}
		if (strncmp(line, "    ", 4) || p[0] == ' ')
			continue;
		if (!strncmp(p, "ok ", 3))
			ok = 1;
		else if (!strncmp(p, "not ok ", 7))
			ok = 0;
		else
			continue;
		/* Skip "ok", the number and the space after it. */
		p = strchr(p + (ok ? 3 : 7), ' ');
		if (!p)
			continue;
		add(ok, "%s.%s", suite, p + 1);
		cases++;
	}
	fclose(f);
	if (!cases)
		add(0, "%s%s", suite, " # no case ran");

	return cases;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char *argv[])
{
	char *suites[MAX_SUITES];
	int nsuites = 0, failed = 0, i;
	struct dirent *d;
	DIR *dir;

	if (argc > 1) {
		for (i = 1; i < argc && nsuites < MAX_SUITES; i++)
			suites[nsuites++] = argv[i];
	} else {
		dir = opendir(ROOT);
		while (dir && (d = readdir(dir)) && nsuites < MAX_SUITES) {
			if (d->d_name[0] != '.')
				suites[nsuites++] = strdup(d->d_name);
		}
		if (dir)
			closedir(dir);
		qsort(suites, nsuites, sizeof(*suites), by_name);
	}

	printf("KTAP version 1\n");
	if (!nsuites) {
		printf("1..1\nnot ok 1 kunit # no KUnit suite in " ROOT "\n");
		return 1;
	}
	for (i = 0; i < nsuites; i++)
		read_suite(suites[i]);

	printf("1..%d\n", nresults);
	for (i = 0; i < nresults; i++) {
		printf("%s %d %s\n", results[i].ok ? "ok" : "not ok", i + 1,
		       results[i].line);
		failed += !results[i].ok;
	}

	return failed ? 1 : 0;
}
