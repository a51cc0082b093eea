/*
 * dirtier: keeps a working set of guest memory dirty at a chosen rate, and
 * proves that the memory it wrote is still what it wrote.
 *
 *   dirtier MIB RATE
 *
 * MIB  size of the working set in MiB (allocated once and kept resident)
 * RATE how many MiB of it to rewrite per second; 0 rewrites as fast as it can
 *
 * Each pass over the working set is a generation. A page of generation G holds,
 * in its first and its last 8 bytes, a value derived from the page number and G,
 * so that page-content sampling (QEMU's calc-dirty-rate) sees every rewritten
 * page as changed. Before rewriting a page for generation G the checker reads it
 * back: it must still hold what generation G-1 wrote there. A page that does not
 * (lost or stale in a migration, say) is reported on the console as
 *
 *   virtops-corruption page=P expected=E found=F
 *
 * at most MAX_REPORTS lines per pass, then a count, and is rewritten as usual.
 * Every page is thus checked once per pass, continuously.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096UL
#define WORDS (PAGE / sizeof(uint64_t))
#define BATCH 64UL /* pages written between two looks at the clock */
#define MAX_REPORTS 8UL

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What generation `gen` writes at both ends of page `page`: never the same for two pages or two generations. */
static uint64_t pattern(uint64_t page, uint64_t gen)
{
	uint64_t x = page * 0x9E3779B97F4A7C15ULL ^ (gen + 1) * 0xC2B2AE3D27D4EB4FULL;

	x ^= x >> 31;
	x *= 0xBF58476D1CE4E5B9ULL;
	return x ^ (x >> 29);
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
	setvbuf(stdout, NULL, _IOLBF, 0);

	unsigned long pages = mib * (1024UL * 1024UL / PAGE);
	volatile uint64_t *buf = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (buf == MAP_FAILED) {
		perror("dirtier: mmap");
		return 1;
	}
	uint64_t gen = 0;
	for (unsigned long p = 0; p < pages; p++) {
		buf[p * WORDS] = pattern(p, gen);
		buf[p * WORDS + WORDS - 1] = pattern(p, gen);
	}

	double pages_per_s = rate * (1024.0 * 1024.0 / PAGE);
	double start = now();
	unsigned long long written = 0;
	unsigned long pos = 0;
	unsigned long bad_this_pass = 0;
	unsigned long long bad_total = 0;
	gen = 1;

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
			uint64_t expected = pattern(pos, gen - 1);
			uint64_t first = buf[pos * WORDS];
			uint64_t last = buf[pos * WORDS + WORDS - 1];
			if (first != expected || last != expected) {
				bad_this_pass++;
				bad_total++;
				if (bad_this_pass <= MAX_REPORTS)
					printf("virtops-corruption page=%lu expected=%016llx found=%016llx\n", pos,
					       (unsigned long long)expected,
					       (unsigned long long)(first != expected ? first : last));
			}
			buf[pos * WORDS] = pattern(pos, gen);
			buf[pos * WORDS + WORDS - 1] = pattern(pos, gen);
			if (++pos == pages) {
				if (bad_this_pass > MAX_REPORTS)
					printf("virtops-corruption pages=%lu in generation %llu (total %llu)\n",
					       bad_this_pass, (unsigned long long)gen, bad_total);
				bad_this_pass = 0;
				pos = 0;
				gen++;
			}
		}
		written += BATCH;
	}
}
