// Fixture for the unwinder tests: it stops at a known point, records its
// registers and a copy of its stack, and exits. The Go test unwinds from
// that snapshot offline. Modes: chain (main->a->b->c), stub (c->host, which
// jumps to a stub without CFI in __rseq_failure), sig and sigraw (c->d,
// which faults on its first instruction; the handler takes the snapshot,
// with glibc's __restore_rt or with a restorer that has no CFI).
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct snap {
	uint64_t rip, rsp, rbp, rbx, r12, r13, r14, r15;
	uint64_t ra;        // __builtin_return_address(0) of c in chain mode
	uint64_t fa;        // __builtin_frame_address(0) of c in chain mode
	uint64_t main_addr; // run-time address of main, for the load bias
	uint64_t entry_rbx; // rbx when host was entered
} snap;

static const char *out;
int main(int argc, char **argv);
volatile int sink;

#define SNAP()                                     \
	__asm__ volatile("lea 1f(%%rip), %%rax\n\t"    \
			 "mov %%rax, snap(%%rip)\n\t"   \
			 "mov %%rsp, snap+8(%%rip)\n\t" \
			 "mov %%rbp, snap+16(%%rip)\n\t" \
			 "mov %%rbx, snap+24(%%rip)\n\t" \
			 "mov %%r12, snap+32(%%rip)\n\t" \
			 "mov %%r13, snap+40(%%rip)\n\t" \
			 "mov %%r14, snap+48(%%rip)\n\t" \
			 "mov %%r15, snap+56(%%rip)\n"   \
			 "1:\n" ::: "rax", "memory")

// dump writes the snapshot and the stack from the recorded rsp to the top
// of its mapping. It runs below the recorded rsp, so what it copies is the
// stack as it was at the snapshot.
__attribute__((noipa)) void dump(void)
{
	FILE *m = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long lo, hi, end = 0;
	while (m && fgets(line, sizeof line, m))
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && snap.rsp >= lo && snap.rsp < hi)
			end = hi;
	if (m)
		fclose(m);
	snap.main_addr = (uint64_t)(uintptr_t)&main;
	FILE *f = fopen(out, "wb");
	if (!f || !end)
		_exit(3);
	uint64_t len = end - snap.rsp;
	fwrite(&snap, sizeof snap, 1, f);
	fwrite(&len, sizeof len, 1, f);
	fwrite((void *)(uintptr_t)snap.rsp, 1, len, f);
	fclose(f);
}

void host(void);
void d(void);
void my_restorer(void);

// host has CFI and jumps to a stub that has none; the stub moves rsp, saves
// rbx, takes the snapshot and jumps back. host's CFI at host_back describes
// the stack as the stub leaves it. host clobbers rbx after saving it, so
// the caller's rbx is only on the stack.
__asm__(
	"	.text\n"
	"	.globl host\n"
	"	.type host, @function\n"
	"host:\n"
	"	.cfi_startproc\n"
	"	mov %rbx, snap+88(%rip)\n"
	"	push %rbx\n"
	"	.cfi_def_cfa_offset 16\n"
	"	.cfi_offset rbx, -16\n"
	"	mov $0x1234, %ebx\n"
	"	jmp host_abort_stub\n"
	"host_back:\n"
	"	.cfi_def_cfa_offset 48\n"
	"	pop %rax\n"
	"	.cfi_def_cfa_offset 40\n"
	"	add $24, %rsp\n"
	"	.cfi_def_cfa_offset 16\n"
	"	pop %rbx\n"
	"	.cfi_restore rbx\n"
	"	.cfi_def_cfa_offset 8\n"
	"	ret\n"
	"	.cfi_endproc\n"
	"	.size host, .-host\n"
	"	.pushsection __rseq_failure, \"ax\"\n"
	"	.globl host_abort_stub\n"
	"	.type host_abort_stub, @function\n"
	"host_abort_stub:\n"
	"	sub $24, %rsp\n"
	"	push %rbx\n"
	"	lea host_stub_snap(%rip), %rax\n"
	"	mov %rax, snap(%rip)\n"
	"	mov %rsp, snap+8(%rip)\n"
	"	mov %rbp, snap+16(%rip)\n"
	"	mov %rbx, snap+24(%rip)\n"
	"	mov %r12, snap+32(%rip)\n"
	"	mov %r13, snap+40(%rip)\n"
	"	mov %r14, snap+48(%rip)\n"
	"	mov %r15, snap+56(%rip)\n"
	"	call dump\n"
	"	.globl host_stub_snap\n"
	"host_stub_snap:\n"
	"	jmp host_back\n"
	"	.size host_abort_stub, .-host_abort_stub\n"
	"	.popsection\n"
	// d faults on its first instruction: the interrupted PC is d itself,
	// and PC-1 belongs to whatever precedes it.
	"	.text\n"
	"	.globl d\n"
	"	.type d, @function\n"
	"d:\n"
	"	.cfi_startproc\n"
	"	ud2\n"
	"	ret\n"
	"	.cfi_endproc\n"
	"	.size d, .-d\n"
	// A restorer without CFI right after d: PC-1 falls inside d's FDE.
	"	.globl my_restorer\n"
	"	.type my_restorer, @function\n"
	"my_restorer:\n"
	"	mov $15, %rax\n"
	"	syscall\n"
	"	.size my_restorer, .-my_restorer\n");

__attribute__((noipa)) void handler(int sig)
{
	(void)sig;
	SNAP();
	dump();
	_exit(0);
}

enum { CHAIN, STUB, SIG, SIGRAW };

__attribute__((noipa)) void c(int mode)
{
	if (mode == CHAIN) {
		snap.ra = (uint64_t)(uintptr_t)__builtin_return_address(0);
		snap.fa = (uint64_t)(uintptr_t)__builtin_frame_address(0);
		SNAP();
		dump();
	} else if (mode == STUB) {
		host();
	} else {
		d();
	}
	sink++;
}

__attribute__((noipa)) void b(int mode)
{
	c(mode);
	sink++;
}

__attribute__((noipa)) void a(int mode)
{
	b(mode);
	sink++;
}

struct ksigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	uint64_t mask;
};

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	out = argv[2];
	int mode = CHAIN;
	if (!strcmp(argv[1], "stub"))
		mode = STUB;
	else if (!strcmp(argv[1], "sig"))
		mode = SIG;
	else if (!strcmp(argv[1], "sigraw"))
		mode = SIGRAW;
	if (mode == SIG) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = handler;
		sigaction(SIGILL, &sa, NULL);
	} else if (mode == SIGRAW) {
		struct ksigaction k = {handler, 0x04000000 /* SA_RESTORER */, my_restorer, 0};
		if (syscall(SYS_rt_sigaction, SIGILL, &k, NULL, 8) != 0)
			return 4;
	}
	a(mode);
	sink++;
	return 0;
}
