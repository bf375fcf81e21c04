// <linux/kvm.h> for C++. Recent uapi headers (Debian 12's linux-libc-dev 6.1 among them)
// declare the flexible arrays of kvm_cpuid2, kvm_msrs, ... with __DECLARE_FLEX_ARRAY, which
// wraps the array in a struct next to an empty struct: size 0 in C, size 1 in C++. That makes
// sizeof(kvm_cpuid2) 12 instead of 8, and with it the ioctl numbers (KVM_GET_SUPPORTED_CPUID,
// KVM_SET_MSRS, ...) the kernel does not know. Declare them as plain zero-length arrays, as C
// sees them. Include this header, never <linux/kvm.h> directly.
#pragma once

#include <linux/stddef.h>

#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]

#include <linux/kvm.h>

static_assert(sizeof(kvm_cpuid2) == 8, "kvm_cpuid2 must have its C layout");
static_assert(sizeof(kvm_msrs) == 8, "kvm_msrs must have its C layout");
static_assert(sizeof(kvm_msr_list) == 4, "kvm_msr_list must have its C layout");
