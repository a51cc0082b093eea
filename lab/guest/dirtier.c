/*
 * dirtier: keeps a working set of guest memory dirty at a chosen rate, so that
 * lab tests can ask for a guest whose dirty rate is known.
 *
 *   dirtier MIB RATE
 *
 * MIB  size of the working set in MiB (allocated once and kept resident)
 * RATE how many MiB of it to rewrite per second; 0 rewrites as fast as it can
 *
 * One byte per 4 KiB page is enough to dirty the page. Each pass over the working
 * set writes a new value, so page-content sampling (QEMU's calc-dirty-rate) sees
 * every rewritten page as changed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096UL
#define BATCH 64UL /* pages written between two looks at the clock */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: dirtier MIB RATE_MIB_PER_S\n");
		return 2;
	}
	unsigned long mib = strtoul(argv[1], NULL, 10);
	double rate = strtod(argv[2], NULL);
	if (mib == 0)
		return 0;

	unsigned long pages = mib * (1024UL * 1024UL / PAGE);
	unsigned char *buf = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (buf == MAP_FAILED) {
		perror("dirtier: mmap");
		return 1;
	}
	memset(buf, 1, pages * PAGE);

	double pages_per_s = rate * (1024.0 * 1024.0 / PAGE);
	double start = now();
	unsigned long long written = 0;
	unsigned long pos = 0;
	unsigned char value = 2;

	for (;;) {
		if (pages_per_s > 0) {
			double due = (now() - start) * pages_per_s;
			if ((double)written >= due) {
				struct timespec pause = { 0, 2000000 }; /* 2 ms */
				nanosleep(&pause, NULL);
				continue;
			}
		}
		for (unsigned long i = 0; i < BATCH; i++) {
			buf[pos * PAGE] = value;
			if (++pos == pages) {
				pos = 0;
				value++;
			}
		}
		written += BATCH;
	}
}
