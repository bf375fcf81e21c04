// The guest's network as the kernel command line asks (agent/boot_config.h): lo always, each
// kiln.net interface, /etc/resolv.conf with kiln.dns. Throws std::runtime_error naming the step.
#pragma once

#include <string>
#include <vector>

#include "agent/boot_config.h"

namespace kiln::agent {

void bring_up_lo();
// eth0, or the interface with n.mac renamed n.name, up with the address, netmask, MTU and
// default route; waits up to 5 s for the device.
void configure_link(const Network& n);
// The interface with MAC `c.from` takes MAC `c.to` (it must be down); waits up to 5 s for it.
void change_mac(const MacChange& c);
// /run/kiln/resolv.conf with `servers`, bind-mounted on the root's /etc/resolv.conf (made
// empty first if missing), so the workload's root is not written.
void install_resolv_conf(const std::vector<std::string>& servers);

}  // namespace kiln::agent
