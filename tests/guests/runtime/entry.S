/*
 * Kiln test-guest runtime: entry points, descriptor tables, page tables, interrupt stubs.
 *
 * Layout (see guest.ld): 0x100000 .text.head = 32-bit entry (Linux 32-bit boot protocol:
 * flat segments, paging off, ESI = boot_params), padded to 0x200 bytes; 0x100200 = 64-bit
 * entry (Linux 64-bit boot protocol: long mode, identity mapped, RSI = boot_params).
 *
 * Ring 0 runs under an instruction emulator on the target machines, so everything here is
 * kept to a handful of simple instructions; tables are static data wherever possible.
 */
#define KCODE 0x08
#define KDATA 0x10

/* ------------------------------------------------------------------ 32-bit entry */
	.section .text.head, "ax"
	.code32
	.globl startup_32
startup_32:
	cli
	cld
	lgdt	gdt_ptr			/* 32-bit lgdt reads limit + low 4 bytes of base */
	movl	$KDATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%cr4, %eax
	orl	$0x20, %eax		/* PAE */
	movl	%eax, %cr4
	movl	$pml4, %eax
	movl	%eax, %cr3
	movl	$0xc0000080, %ecx	/* EFER */
	rdmsr
	orl	$0x100, %eax		/* LME */
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000001, %eax	/* PG | PE */
	movl	%eax, %cr0
	ljmp	$KCODE, $startup_32_to_64

	.code64
startup_32_to_64:
	movl	%esi, %esi		/* upper halves are undefined after the mode switch */
	jmp	startup_64

/* ------------------------------------------------------------------ 64-bit entry */
	.section .text.entry64, "ax"
	.code64
	.globl startup_64
startup_64:				/* must be at 0x100200 (asserted in guest.ld) */
	cli
	cld
	movq	%rsi, rt_boot_params(%rip)
	leaq	kstack_top(%rip), %rsp
	movq	%cr4, %rax
	andq	$~0x300000, %rax	/* no SMEP/SMAP: ring 0 runs code on U=1 pages */
	movq	%rax, %cr4
	leaq	pml4(%rip), %rax
	movq	%rax, %cr3
	lgdt	gdt_ptr(%rip)
	movl	$KDATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	xorl	%eax, %eax
	movl	%eax, %fs
	movl	%eax, %gs
	pushq	$KCODE
	leaq	1f(%rip), %rax
	pushq	%rax
	lretq
1:	movq	rt_boot_params(%rip), %rdi
	call	rt_ring0_main		/* never returns: iretq to ring 3 */
2:	hlt
	jmp	2b

/* ------------------------------------------------------------------ exception stubs */
	.text
.macro EXC vec
exc_\vec:
	.if (\vec != 8) && (\vec != 10) && (\vec != 11) && (\vec != 12) && (\vec != 13) && (\vec != 14) && (\vec != 17) && (\vec != 21) && (\vec != 29) && (\vec != 30)
	pushq	$0			/* no CPU error code: push a dummy */
	.endif
	pushq	$\vec
	jmp	exc_common
.endm

.altmacro
.macro EXC_ALL
	.set i, 0
	.rept 32
	EXC %i
	.set i, i+1
	.endr
.endm
EXC_ALL

exc_common:				/* stack: vec, err, rip, cs, rflags, rsp, ss */
	pushq	%rax
	pushq	%rcx
	pushq	%rdx
	pushq	%rbx
	pushq	%rbp
	pushq	%rsi
	pushq	%rdi
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, %rdi
	andq	$-16, %rsp
	call	rt_exception		/* prints and triple-faults; never returns */
3:	hlt
	jmp	3b

/* ------------------------------------------------------------------ PIC IRQ stubs */
.macro IRQ n
irq_\n:
	incq	rt_irq_count+8*\n(%rip)
	.if \n == 0
	incq	rt_ticks(%rip)
	.endif
	.if \n == 4
	jmp	irq4_serial
	.else
	pushq	%rax
	movb	$0x20, %al		/* non-specific EOI */
	.if \n >= 8
	outb	%al, $0xa0
	.endif
	outb	%al, $0x20
	popq	%rax
	iretq
	.endif
.endm

.macro IRQ_ALL
	.set i, 0
	.rept 16
	IRQ %i
	.set i, i+1
	.endr
.endm
IRQ_ALL

irq4_serial:				/* drain the UART RX into rt_rx_buf (bounded) */
	pushq	%rax
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	movl	$64, %ecx
4:	movw	$0x3fd, %dx		/* LSR */
	inb	%dx, %al
	testb	$1, %al			/* data ready */
	jz	5f
	movw	$0x3f8, %dx		/* RBR */
	inb	%dx, %al
	movl	rt_rx_head(%rip), %esi
	movzbl	%sil, %edx
	movb	%al, rt_rx_buf(%rdx)
	incl	%esi
	movl	%esi, rt_rx_head(%rip)
	decl	%ecx
	jnz	4b
5:	movb	$0x20, %al
	outb	%al, $0x20
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rax
	iretq

/* Handler address tables used by rt.c to build the IDT. */
	.section .rodata
	.align 8
.macro EXC_ENTRY vec
	.quad exc_\vec
.endm
.macro IRQ_ENTRY n
	.quad irq_\n
.endm
	.globl rt_exc_stubs
rt_exc_stubs:
	.set i, 0
	.rept 32
	EXC_ENTRY %i
	.set i, i+1
	.endr
	.globl rt_irq_stubs
rt_irq_stubs:
	.set i, 0
	.rept 16
	IRQ_ENTRY %i
	.set i, i+1
	.endr
.noaltmacro

/* ------------------------------------------------------------------ GDT */
	.data
	.align 16
	.globl rt_gdt
rt_gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff	/* 0x10 kernel data */
	.quad 0x00cff2000000ffff	/* 0x18 user data (DPL 3) */
	.quad 0x00affa000000ffff	/* 0x20 user code, 64-bit (DPL 3) */
	.quad 0, 0			/* 0x28 64-bit TSS, filled in by rt.c */
rt_gdt_end:
	.align 8
	.word 0, 0, 0
gdt_ptr:				/* limit at an address = 6 mod 8 so the base is aligned */
	.word rt_gdt_end - rt_gdt - 1
	.quad rt_gdt

/* ------------------------------------------------------------------ page tables
 * Identity map of the first 4 GiB with 2 MiB pages, P|RW|US (user accessible, so ring 3
 * can touch all RAM and MMIO). Entirely static: no ring-0 work needed to build them. */
	.section .data.pagetables, "aw"
	.align 4096
	.globl pml4
pml4:
	.quad pdpt + 0x7
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x0000 + 0x7
	.quad pd + 0x1000 + 0x7
	.quad pd + 0x2000 + 0x7
	.quad pd + 0x3000 + 0x7
	.fill 508, 8, 0
pd:
	.set addr, 0
	.rept 2048
	.quad addr + 0x87		/* P | RW | US | PS */
	.set addr, addr + 0x200000
	.endr

/* ------------------------------------------------------------------ stacks (.bss) */
	.section .bss
	.align 4096
	.globl kstack_top
kstack:
	.skip 16384
kstack_top:
	.globl ustack_top
ustack:
	.skip 65536
ustack_top:
