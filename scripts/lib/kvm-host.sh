# Sourced by the test and setup scripts: what this host's /dev/kvm can do for Kiln's tests
# (../shared/docs/kvm-here.md). `kvm_host_kind` prints one word:
#   hardware  /dev/kvm opens and is VMX/SVM KVM (kvm_intel or kvm_amd): guests run directly
#   pvm       /dev/kvm opens but is PVM (kvm_pvm without kvm_intel/kvm_amd): ring-3 port I/O
#             faults and ring 0 is emulated, so the guest suites run in the nested-KVM VM
#   none      /dev/kvm cannot be opened: the guest suites run in the nested-KVM VM
# KILN_KVM_HOST=hardware|pvm|none overrides the probe (to rehearse another host's path).
kvm_host_kind() {
  if [ -n "${KILN_KVM_HOST:-}" ]; then
    echo "$KILN_KVM_HOST"
    return
  fi
  if ! { [ -c /dev/kvm ] &&
    python3 -c 'import os; os.close(os.open("/dev/kvm", os.O_RDWR))' 2>/dev/null; }; then
    echo none
  elif [ -d /sys/module/kvm_pvm ] && [ ! -d /sys/module/kvm_intel ] &&
    [ ! -d /sys/module/kvm_amd ]; then
    echo pvm
  else
    echo hardware
  fi
}

# True when guests run directly on this host.
kvm_runs_guests() { [ "$(kvm_host_kind)" = hardware ]; }
