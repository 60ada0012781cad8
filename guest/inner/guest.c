// SPDX-License-Identifier: GPL-2.0
/*
 * The inner guest of the qemu-kexec lane: a multiboot (v1) image that QEMU
 * boots with -kernel and that can tell whether its memory was disturbed.
 *
 * It keeps a buffer of BLOCKS pages whose every word is a function of the
 * word's index, of the round that last rewrote its page and of the boot's
 * identity. Round r rewrites page r % BLOCKS and checks the page that
 * round r + 1 will rewrite, which was written BLOCKS - 1 rounds ago: every
 * page is checked once per pass over the buffer, against the round counter
 * alone. A page lost, zeroed, left stale or changed by anyone else shows
 * as a mismatch. The code and read-only data are checksummed at boot and
 * checked once per pass.
 *
 * On the first serial port (polled, no interrupts):
 *   qguest: boot id=<id> buffer=<KiB> KiB           once, at boot
 *   qguest: id=<id> round=<r> ok                     every TICK rounds
 *   qguest: verdict ok id=<id> round=<r> checked=<KiB> KiB
 *                       when a byte 'v' arrives: a full check, then this
 *   qguest: FAIL <what> id=<id> round=<r> ...        and it stops
 * A guest that was restarted instead of resumed has another id and starts
 * its rounds again from 0.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define COM1		0x3f8
#define PAGE_WORDS	1024
#define BUF_START	0x2000000	/* 32 MiB, above the image and stack */
#define BLOCKS		16384		/* 64 MiB */
#define TICK		4096		/* rounds between two reports */
#define POLL		64		/* rounds between two serial polls */

/* Multiboot v1 header: magic, flags (none: QEMU loads the ELF), checksum. */
__attribute__((section(".multiboot"), used, aligned(4)))
static const u32 multiboot_header[3] = { 0x1badb002, 0, -(0x1badb002u) };

extern u8 stack[16384];
u8 stack[16384] __attribute__((aligned(16)));

asm(".text\n"
    ".globl _start\n"
    "_start:\n"
    "	mov $stack + 16384, %esp\n"
    "	call main\n"
    "1:	cli\n"
    "	hlt\n"
    "	jmp 1b\n");

extern const u8 _text_start[], _rodata_end[];

static inline void outb(u16 port, u8 v)
{
	asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;

	asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline u64 rdtsc(void)
{
	u32 lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

/*
 * Wait until the transmitter is empty before each byte: QEMU's 16550 drops
 * what is written while its output is held up (the reader of its chardev
 * is slow), and the agent must see every report to check that the rounds
 * go on without a gap across the update.
 */
static void puts(const char *s)
{
	while (*s) {
		while (!(inb(COM1 + 5) & 0x40))
			;
		outb(COM1, *s++);
	}
}

static void putx(u32 v)
{
	char buf[9];
	int i;

	for (i = 7; i >= 0; i--, v >>= 4)
		buf[i] = "0123456789abcdef"[v & 15];
	buf[8] = 0;
	puts(buf);
}

static void putu(u32 v)
{
	char buf[11];
	int i = 10;

	buf[i] = 0;
	do {
		buf[--i] = '0' + v % 10;
		v /= 10;
	} while (v);
	puts(buf + i);
}

static u32 id;
static volatile u32 *const buf = (volatile u32 *)BUF_START;

static inline u32 word(u32 index, u32 round)
{
	u32 x = index * 0x9e3779b1u ^ round * 0x85ebca77u ^ id;

	x ^= x >> 15;
	x *= 0x2c1b3c6du;
	x ^= x >> 12;
	return x;
}

static void write_page(u32 round)
{
	u32 first = (round % BLOCKS) * PAGE_WORDS, i;

	for (i = 0; i < PAGE_WORDS; i++)
		buf[first + i] = word(first + i, round);
}

static void fail(const char *what, u32 round, u32 index, u32 got, u32 want)
{
	puts("qguest: FAIL ");
	puts(what);
	puts(" id=");
	putx(id);
	puts(" round=");
	putu(round);
	puts(" word=");
	putx(index);
	puts(" got=");
	putx(got);
	puts(" want=");
	putx(want);
	puts("\n");
	for (;;)
		asm volatile("cli; hlt");
}

/* Check page @block as it must be after round @round. */
static void check_page(u32 block, u32 round)
{
	u32 last = round - (round - block) % BLOCKS;
	u32 first = block * PAGE_WORDS, i;

	for (i = 0; i < PAGE_WORDS; i++) {
		u32 want = word(first + i, last);

		if (buf[first + i] != want)
			fail("memory", round, first + i, buf[first + i], want);
	}
}

static u32 text_sum(void)
{
	const u32 *p = (const u32 *)_text_start;
	u32 sum = 0;

	while ((const u8 *)p < _rodata_end)
		sum = (sum << 5 | sum >> 27) ^ *p++;
	return sum;
}

void main(void);
void main(void)
{
	u32 round, block, code_sum;

	id = (u32)rdtsc() * 0x9e3779b1u | 1;
	code_sum = text_sum();
	puts("qguest: boot id=");
	putx(id);
	puts(" buffer=");
	putu(BLOCKS * 4);
	puts(" KiB\n");

	for (round = 0; round < BLOCKS; round++)
		write_page(round);

	for (round = BLOCKS;; round++) {
		write_page(round);
		check_page((round + 1) % BLOCKS, round);
		if (round % BLOCKS == 0 && text_sum() != code_sum)
			fail("code", round, 0, text_sum(), code_sum);
		if (round % TICK == 0) {
			puts("qguest: id=");
			putx(id);
			puts(" round=");
			putu(round);
			puts(" ok\n");
		}
		if (round % POLL == 0 && (inb(COM1 + 5) & 1) && inb(COM1) == 'v') {
			for (block = 0; block < BLOCKS; block++)
				check_page(block, round);
			if (text_sum() != code_sum)
				fail("code", round, 0, text_sum(), code_sum);
			puts("qguest: verdict ok id=");
			putx(id);
			puts(" round=");
			putu(round);
			puts(" checked=");
			putu(BLOCKS * 4);
			puts(" KiB\n");
		}
	}
}
