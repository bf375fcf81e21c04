/*
 * Real-mode setup code for the Kiln test-guest bzImages (reference source; the assembled
 * bytes are embedded in mkbzimage.py as SETUP_STUB, regenerate with:
 *   cc -c bzstub.S -o /tmp/bzstub.o && objcopy -O binary -j .text /tmp/bzstub.o /tmp/bzstub.bin
 * ). Only used by loaders that run the 16-bit setup code (e.g. QEMU -kernel); Kiln enters the
 * 64-bit entry point directly.
 *
 * Byte 0 of this blob lands at file offset 0x200 of the bzImage, where the loader jumps with
 * CS = (setup segment + 0x20), IP = 0, DS = ES = SS = setup segment (= the boot_params copy).
 * Bytes 0x02..0x6b are the setup header and are overwritten by mkbzimage.py.
 * The code: E820 (int 15h) into boot_params, fast A20, flat 32-bit protected mode,
 * ESI = boot_params, jump to the 32-bit entry point at 0x100000 (Linux 32-bit boot protocol).
 * It lives at file offset 0x1000 so the e820_table writes (0x2d0..0xcd0) cannot clobber it.
 */
	.code16
	.text
base:
	.byte	0xeb, tramp - 1f	/* 0x200: short jump over the header */
1:
	.org	0x70
tramp:
	jmp	start
	.org	0xe00			/* file offset 0x1000 */
start:
	cli
	cld
	movw	%cs, %ax
	subw	$0x20, %ax
	movw	%ax, %ds		/* ds:0 = boot_params */
	movw	%ax, %es
	/* E820 */
	xorl	%ebx, %ebx
	xorw	%bp, %bp
	movw	$0x2d0, %di
2:	movl	$0xe820, %eax
	movl	$20, %ecx
	movl	$0x534d4150, %edx	/* 'SMAP' */
	int	$0x15
	jc	3f
	cmpl	$0x534d4150, %eax
	jne	3f
	incw	%bp
	addw	$20, %di
	cmpw	$128, %bp
	jae	3f
	testl	%ebx, %ebx
	jnz	2b
3:	movw	%bp, %ax
	movb	%al, 0x1e8		/* boot_params.e820_entries */
	/* fast A20 */
	inb	$0x92, %al
	orb	$2, %al
	andb	$0xfe, %al
	outb	%al, $0x92
	/* GDT base = linear(cs:gdt) */
	xorl	%eax, %eax
	movw	%ds, %ax
	shll	$4, %eax
	movl	%eax, %esi		/* boot_params linear address */
	addl	$(0x200 + gdt - base), %eax
	movl	%eax, %cs:(gdtr - base + 2)
	lgdtl	%cs:(gdtr - base)
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	ljmpl	$0x08, $0x100000
	.align	8
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x08: flat 32-bit code */
	.quad	0x00cf92000000ffff	/* 0x10: flat data */
gdtr:
	.word	gdtr - gdt - 1
	.long	0			/* patched at run time */
