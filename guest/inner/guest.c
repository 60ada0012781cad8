// SPDX-License-Identifier: GPL-2.0
/*
 * The inner guest of the qemu-kexec and demo lanes: a multiboot (v1)
 * image that QEMU boots with -kernel, or that guest/gmem_vmm.c loads into
 * guest_memfd, and that can tell whether its memory or its CPU state was
 * disturbed.
 *
 * It runs in 32-bit protected mode on tables of its own, in its memory: a
 * GDT, an IDT whose every exception is reported as a failure, and a page
 * directory and page tables that map the first 128 MiB onto themselves in
 * 4 KiB pages. A VMM that loses one of them, or a segment or control
 * register, makes it fault at once.
 *
 * Each CPU keeps a buffer of pages whose every word is a function of the
 * word's index, of the round that last rewrote its page and of the CPU's
 * boot identity. Round r rewrites page r % blocks and checks the page that
 * round r + 1 will rewrite, which was written blocks - 1 rounds ago: every
 * page is checked once per pass over the buffer, against the round counter
 * alone. A page lost, zeroed, left stale or changed by anyone else shows
 * as a mismatch. The code, the read-only data and the GDT are checksummed
 * at boot and checked once per pass, as are the page tables; the IDT, the
 * page directory and the control registers every POLL rounds.
 *
 * The boot CPU uses the first serial port (polled, no interrupts) and a
 * 64 MiB buffer at 32 MiB. A second CPU, which a VMM may start at ap_start
 * (found in vmm_info) in flat 32-bit protected mode, waits until the boot
 * CPU has built the tables, loads them and uses the second serial port and
 * a 16 MiB buffer at 96 MiB; it also serves probes: when the VMM writes an
 * address in [112 MiB, 128 MiB) to probe_req, it writes that page (which
 * the VMM left unallocated), reads it back and reports it.
 *
 *   qguest: boot id=<id> buffer=<KiB> KiB           once, at boot
 *   qguest: id=<id> round=<r> ok                     every TICK rounds
 *   qguest: id=<id> probe=<addr> round=<r> ok        a probe done
 *   qguest: verdict ok id=<id> round=<r> checked=<KiB> KiB
 *                       when a byte 'v' arrives: a full check (probed
 *                       pages included), then this
 *   qguest: id=<id> deadline armed round=<r>         when a byte 'd' arrives
 *                       at the boot CPU: it arms its local APIC's timer
 *                       (x2APIC, TSC-deadline mode) DEADLINE_TSC cycles
 *                       ahead and turns interrupts on
 *   qguest: id=<id> deadline fired round=<r>         once that timer fired
 *   qguest: FAIL <what> id=<id> round=<r> ...        and it stops
 * A guest that was restarted instead of resumed has another id and starts
 * its rounds again from 0.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define COM1		0x3f8
#define COM2		0x2f8
#define PAGE_WORDS	1024
#define BSP_BUF		0x2000000	/* 32 MiB, above the image and stacks */
#define BSP_BLOCKS	16384		/* 64 MiB */
#define AP_BUF		0x6000000	/* 96 MiB */
#define AP_BLOCKS	4096		/* 16 MiB */
#define PROBE_START	0x7000000	/* 112 MiB: probes go to [112, 128) MiB */
#define PROBE_END	0x8000000
#define MAX_PROBES	16
#define TICK		4096		/* rounds between two reports */
#define POLL		64		/* rounds between two serial polls */
#define VMM_INFO_MAGIC	0x494d4d56	/* "VMMI" */
#define STACK_SIZE	16384
/*
 * The timer the boot CPU arms on request: far enough ahead that the VMM
 * can pause the guest first (a second or more at the TSC rates of today),
 * close enough that the guest sees it fire soon after it runs again.
 */
#define DEADLINE_TSC	(1ull << 32)
#define TIMER_VECTOR	32
#define SPURIOUS_VECTOR	33
#define NR_VECTORS	34
#define MSR_APIC_BASE	0x1b
#define MSR_TSC_DEADLINE 0x6e0
#define MSR_X2APIC_EOI	0x80b
#define MSR_X2APIC_SVR	0x80f
#define MSR_X2APIC_LVTT	0x832

struct cpu {
	u16 port;
	u32 id;
	volatile u32 *buf;
	u32 blocks;
	u32 nr_probes;
	u32 probe_addr[MAX_PROBES];
	u32 probe_val[MAX_PROBES];
};

static struct cpu bsp = { .port = COM1, .buf = (volatile u32 *)BSP_BUF, .blocks = BSP_BLOCKS };
static struct cpu ap = { .port = COM2, .buf = (volatile u32 *)AP_BUF, .blocks = AP_BLOCKS };

extern u8 stack[STACK_SIZE], ap_stack[STACK_SIZE];
u8 stack[STACK_SIZE] __attribute__((aligned(16)));
u8 ap_stack[STACK_SIZE] __attribute__((aligned(16)));

/* Written by the VMM (a guest physical address), cleared by the AP. */
static volatile u32 probe_req;
/* Set by the boot CPU once the tables below are built. */
static volatile u32 ap_go;

extern const u8 ap_start[], isr_stubs[], timer_isr[], spurious_isr[];

/* The boot CPU's deadline timer: 0 not armed, then DEADLINE_* below. */
#define DEADLINE_ARMED		1
#define DEADLINE_FIRED		2	/* set by timer_isr */
#define DEADLINE_REPORTED	3
extern volatile u32 deadline;
volatile u32 deadline;

/*
 * Multiboot v1 header (magic, flags: none, QEMU loads the ELF; checksum),
 * then what a VMM that starts the second CPU itself needs to know.
 */
__attribute__((section(".multiboot"), used, aligned(4)))
static const u32 multiboot_header[6] = {
	0x1badb002, 0, -(0x1badb002u),
	VMM_INFO_MAGIC, (u32)ap_start, (u32)&probe_req,
};

asm(".text\n"
    ".globl _start\n"
    "_start:\n"
    "	mov $stack + 16384, %esp\n"
    "	call main\n"
    "1:	cli\n"
    "	hlt\n"
    "	jmp 1b\n"
    ".globl ap_start\n"
    "ap_start:\n"
    "	mov $ap_stack + 16384, %esp\n"
    "	call ap_main\n"
    "	jmp 1b\n"
    /* One 16-byte stub per exception vector: push the vector, report. */
    ".balign 16\n"
    ".globl isr_stubs\n"
    "isr_stubs:\n"
    ".irp v,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "	.balign 16\n"
    "	push $\\v\n"
    "	jmp isr_common\n"
    ".endr\n"
    "isr_common:\n"
    "	call exception\n"
    /* The deadline timer: note it, end the interrupt (x2APIC EOI). */
    ".globl timer_isr\n"
    "timer_isr:\n"
    "	push %eax\n"
    "	push %ecx\n"
    "	push %edx\n"
    "	movl $2, deadline\n"
    "	mov $0x80b, %ecx\n"
    "	xor %eax, %eax\n"
    "	xor %edx, %edx\n"
    "	wrmsr\n"
    "	pop %edx\n"
    "	pop %ecx\n"
    "	pop %eax\n"
    "	iret\n"
    ".globl spurious_isr\n"
    "spurious_isr:\n"
    "	iret\n");

/* Accessed bits set: loading a segment must not write to read-only data. */
static const u64 gdt[3] = {
	0,
	0x00cf9b000000ffffull,	/* 0x08: code, flat, 32-bit */
	0x00cf93000000ffffull,	/* 0x10: data, flat */
};

static const struct {
	u16 limit;
	u32 base;
} __attribute__((packed)) gdtr = { sizeof(gdt) - 1, (u32)gdt };

static u64 idt[NR_VECTORS];
static struct {
	u16 limit;
	u32 base;
} __attribute__((packed)) idtr;

#define MAPPED_MIB	128
#define NR_PT		(MAPPED_MIB / 4)
static u32 page_dir[1024] __attribute__((aligned(4096)));
static u32 page_tables[NR_PT][1024] __attribute__((aligned(4096)));

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

static inline void wrmsr(u32 msr, u64 v)
{
	asm volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

static inline u64 rdmsr(u32 msr)
{
	u32 lo, hi;

	asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
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
static void puts(struct cpu *c, const char *s)
{
	while (*s) {
		while (!(inb(c->port + 5) & 0x40))
			;
		outb(c->port, *s++);
	}
}

static void putx(struct cpu *c, u32 v)
{
	char buf[9];
	int i;

	for (i = 7; i >= 0; i--, v >>= 4)
		buf[i] = "0123456789abcdef"[v & 15];
	buf[8] = 0;
	puts(c, buf);
}

static void putu(struct cpu *c, u32 v)
{
	char buf[11];
	int i = 10;

	buf[i] = 0;
	do {
		buf[--i] = '0' + v % 10;
		v /= 10;
	} while (v);
	puts(c, buf + i);
}

static inline u32 word(struct cpu *c, u32 index, u32 round)
{
	u32 x = index * 0x9e3779b1u ^ round * 0x85ebca77u ^ c->id;

	x ^= x >> 15;
	x *= 0x2c1b3c6du;
	x ^= x >> 12;
	return x;
}

static void write_page(struct cpu *c, u32 round)
{
	u32 first = (round % c->blocks) * PAGE_WORDS, i;

	for (i = 0; i < PAGE_WORDS; i++)
		c->buf[first + i] = word(c, first + i, round);
}

static void __attribute__((noreturn)) fail(struct cpu *c, const char *what, u32 round,
					   u32 index, u32 got, u32 want)
{
	puts(c, "qguest: FAIL ");
	puts(c, what);
	puts(c, " id=");
	putx(c, c->id);
	puts(c, " round=");
	putu(c, round);
	puts(c, " word=");
	putx(c, index);
	puts(c, " got=");
	putx(c, got);
	puts(c, " want=");
	putx(c, want);
	puts(c, "\n");
	for (;;)
		asm volatile("cli; hlt");
}

/* Any exception: report the vector and the two words it pushed first. */
void __attribute__((noreturn, used)) exception(u32 vector, u32 w1, u32 w2);
void exception(u32 vector, u32 w1, u32 w2)
{
	u8 *sp = __builtin_frame_address(0);
	struct cpu *c = sp >= ap_stack && sp < ap_stack + STACK_SIZE ? &ap : &bsp;

	fail(c, "exception", 0, vector, w1, w2);
}

/* Check page @block of @c as it must be after round @round. */
static void check_page(struct cpu *c, u32 block, u32 round)
{
	u32 last = round - (round - block) % c->blocks;
	u32 first = block * PAGE_WORDS, i;

	for (i = 0; i < PAGE_WORDS; i++) {
		u32 want = word(c, first + i, last);

		if (c->buf[first + i] != want)
			fail(c, "memory", round, first + i, c->buf[first + i], want);
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

/* 32-bit interrupt gate, present, ring 0, selector 0x08 */
static u64 idt_entry(u32 v)
{
	u32 stub = v == TIMER_VECTOR ? (u32)timer_isr :
		   v == SPURIOUS_VECTOR ? (u32)spurious_isr : (u32)isr_stubs + 16 * v;

	return (stub & 0xffff) | 0x08u << 16 | (u64)0x8e00 << 32 | (u64)(stub >> 16) << 48;
}

/* Present, writable; the CPU sets accessed (0x20) and dirty (0x40). */
static u32 pde(u32 v)
{
	return v < NR_PT ? (u32)page_tables[v] | 0x03 : 0;
}

static u32 pte(u32 v)
{
	return v << 12 | 0x03;
}

static void build_tables(void)
{
	u32 v;

	for (v = 0; v < NR_VECTORS; v++)
		idt[v] = idt_entry(v);
	idtr.limit = sizeof(idt) - 1;
	idtr.base = (u32)idt;
	for (v = 0; v < 1024; v++)
		page_dir[v] = pde(v);
	for (v = 0; v < NR_PT * 1024; v++)
		page_tables[v / 1024][v % 1024] = pte(v);
}

/* The tables and control registers are still as load_tables() left them. */
static void check_tables(struct cpu *c, u32 round)
{
	u32 v, cr0, cr3;

	for (v = 0; v < NR_VECTORS; v++)
		if (idt[v] != idt_entry(v))
			fail(c, "idt", round, v, (u32)idt[v], (u32)idt_entry(v));
	for (v = 0; v < 1024; v++)
		if ((page_dir[v] & ~0x60u) != pde(v))
			fail(c, "page directory", round, v, page_dir[v], pde(v));
	asm volatile("mov %%cr0, %0; mov %%cr3, %1" : "=r"(cr0), "=r"(cr3));
	if ((cr0 & 0x80000001u) != 0x80000001u || cr3 != (u32)page_dir)
		fail(c, "control registers", round, 0, cr0, cr3);
}

/* Every page table entry: once per pass over the buffer. */
static void check_page_tables(struct cpu *c, u32 round)
{
	u32 v;

	for (v = 0; v < NR_PT * 1024; v++)
		if ((page_tables[v / 1024][v % 1024] & ~0x60u) != pte(v))
			fail(c, "page table", round, v, page_tables[v / 1024][v % 1024], pte(v));
}

/* Load the GDT, the IDT and the page directory; turn paging on. */
static void load_tables(void)
{
	u32 r;

	asm volatile("lgdt %1\n\t"
		     "ljmp $0x08, $1f\n"
		     "1:\tmov $0x10, %0\n\t"
		     "mov %0, %%ds\n\t"
		     "mov %0, %%es\n\t"
		     "mov %0, %%fs\n\t"
		     "mov %0, %%gs\n\t"
		     "mov %0, %%ss\n\t"
		     "lidt %2\n\t"
		     "mov %3, %%cr3\n\t"
		     "mov %%cr0, %0\n\t"
		     "or $0x80000000, %0\n\t"	/* PG */
		     "mov %0, %%cr0"
		     : "=&r"(r) : "m"(gdtr), "m"(idtr), "r"(page_dir) : "memory");
}

static void report(struct cpu *c, u32 round)
{
	puts(c, "qguest: id=");
	putx(c, c->id);
	puts(c, " round=");
	putu(c, round);
	puts(c, " ok\n");
}

/* The AP: write the page the VMM asked for, read it back, report it. */
static void probe(struct cpu *c, u32 round)
{
	u32 addr = probe_req;
	u32 val = c->id ^ round;

	if (addr < PROBE_START || addr >= PROBE_END || addr % 4096 || c->nr_probes == MAX_PROBES)
		fail(c, "probe", round, addr, c->nr_probes, 0);
	*(volatile u32 *)addr = val;
	if (*(volatile u32 *)addr != val)
		fail(c, "probe", round, addr, *(volatile u32 *)addr, val);
	c->probe_addr[c->nr_probes] = addr;
	c->probe_val[c->nr_probes++] = val;
	probe_req = 0;
	puts(c, "qguest: id=");
	putx(c, c->id);
	puts(c, " probe=");
	putx(c, addr);
	puts(c, " round=");
	putu(c, round);
	puts(c, " ok\n");
}

static void report_deadline(struct cpu *c, const char *what, u32 round)
{
	puts(c, "qguest: id=");
	putx(c, c->id);
	puts(c, " deadline ");
	puts(c, what);
	puts(c, " round=");
	putu(c, round);
	puts(c, "\n");
}

/*
 * The local APIC in x2APIC mode (no MMIO to map), its timer in TSC-deadline
 * mode, DEADLINE_TSC cycles from now; then interrupts on.
 */
static void arm_deadline(struct cpu *c, u32 round)
{
	wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | 0xc00);	/* EN, EXTD */
	wrmsr(MSR_X2APIC_SVR, 0x100 | SPURIOUS_VECTOR);
	wrmsr(MSR_X2APIC_LVTT, 2 << 17 | TIMER_VECTOR);
	deadline = DEADLINE_ARMED;
	wrmsr(MSR_TSC_DEADLINE, rdtsc() + DEADLINE_TSC);
	asm volatile("sti");
	report_deadline(c, "armed", round);
}

static void __attribute__((noreturn)) run(struct cpu *c)
{
	u32 round, block, code_sum, i;
	u8 cmd;

	c->id = (u32)rdtsc() * 0x9e3779b1u | 1;
	code_sum = text_sum();
	puts(c, "qguest: boot id=");
	putx(c, c->id);
	puts(c, " buffer=");
	putu(c, c->blocks * 4);
	puts(c, " KiB\n");

	for (round = 0; round < c->blocks; round++)
		write_page(c, round);

	for (round = c->blocks;; round++) {
		write_page(c, round);
		check_page(c, (round + 1) % c->blocks, round);
		if (round % c->blocks == 0 && text_sum() != code_sum)
			fail(c, "code", round, 0, text_sum(), code_sum);
		if (round % c->blocks == 0)
			check_page_tables(c, round);
		if (round % TICK == 0)
			report(c, round);
		if (round % POLL)
			continue;
		check_tables(c, round);
		if (c == &ap && probe_req)
			probe(c, round);
		if (c == &bsp && deadline == DEADLINE_FIRED) {
			deadline = DEADLINE_REPORTED;
			report_deadline(c, "fired", round);
		}
		cmd = inb(c->port + 5) & 1 ? inb(c->port) : 0;
		if (c == &bsp && cmd == 'd' && !deadline)
			arm_deadline(c, round);
		if (cmd == 'v') {
			for (block = 0; block < c->blocks; block++)
				check_page(c, block, round);
			if (text_sum() != code_sum)
				fail(c, "code", round, 0, text_sum(), code_sum);
			for (i = 0; i < c->nr_probes; i++)
				if (*(volatile u32 *)c->probe_addr[i] != c->probe_val[i])
					fail(c, "probed page", round, c->probe_addr[i],
					     *(volatile u32 *)c->probe_addr[i], c->probe_val[i]);
			puts(c, "qguest: verdict ok id=");
			putx(c, c->id);
			puts(c, " round=");
			putu(c, round);
			puts(c, " checked=");
			putu(c, c->blocks * 4 + c->nr_probes * 4);
			puts(c, " KiB\n");
		}
	}
}

void main(void);
void main(void)
{
	build_tables();
	load_tables();
	ap_go = 1;
	run(&bsp);
}

void ap_main(void);
void ap_main(void)
{
	while (!ap_go)
		asm volatile("pause");
	load_tables();
	run(&ap);
}
