// `kiln sandbox run --net tap=NAME[,mac=MAC][,ip=ADDR/PREFIX][,gw=ADDR][,mtu=N][,dns=ADDR]...`:
// one virtio-net device on a host TAP (kiln run's --net) and what the agent sets on eth0
// (kiln.net=, kiln.dns=: agent/boot_config.h). Without ip=, eth0 stays down for the workload
// to configure. The TAP's host side (its address, routing, NAT) is the caller's.
#pragma once

#include <string>
#include <vector>

namespace kiln::sandbox {

struct SandboxNet {
  std::string tap, mac;
  std::string address;  // IPv4, with prefix
  int prefix = 24;
  std::string gateway;
  unsigned mtu = 0;
  std::vector<std::string> dns;
  // The guest interface's name (kiln-oci: the engine's): the agent finds the NIC by `mac` and
  // renames it. Empty: it is eth0.
  std::string name;

  std::vector<std::string> vm_args() const;  // for kiln run
  std::string cmdline() const;               // for the agent (" kiln.net=..."), or ""
};

// A random locally administered unicast MAC ("02:..." style), lower case.
std::string random_mac();

// kiln::UsageError naming --net and the key when `v` is not one.
SandboxNet parse_net(const std::string& v);

}  // namespace kiln::sandbox
