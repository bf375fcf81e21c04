// An engine's network reaching a microVM (Kata's tc model). In the container's network
// namespace the engine made an interface (a veth whose peer is on its bridge) and gave it an
// address and routes; its port mappings (`-p`) forward to that address. kiln-oci makes a TAP
// beside the interface and redirects every frame both ways with tc (an ingress qdisc and a
// match-all u32 filter with a mirred redirect on each side); the guest's NIC has the interface's
// MAC, and the agent gives it the interface's address, default gateway and MTU. The frames
// never reach the namespace's own IP stack, so the guest answers for the address.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "sandbox/network.h"

namespace kiln::oci {

inline constexpr size_t kMaxEngineLinks = 8;  // the agent takes 8 kiln.net=
// The TAP beside the engine's interface number `i`: tap0_kiln, tap1_kiln, ...
inline std::string tap_name(size_t i) {
  return "tap" + std::to_string(i) + "_kiln";
}
// Whether the guest can take the interface's name (agent/boot_config.h: kiln.net's name=).
bool guest_name_ok(const std::string& name);

struct Connected {
  std::string link, tap;
};

struct EngineLink {
  std::string name, mac;
  int ifindex = 0;
  unsigned mtu = 0;
  std::string address;  // its first IPv4 address ("": none)
  int prefix = 0;
  std::string gateway;  // the IPv4 default route's, if it goes through this link
  // What the guest will not have: further addresses (IPv6 ones too) and other routes.
  std::vector<std::string> left_out;
};

// The interfaces of the calling thread's network namespace other than lo, with their IPv4
// configuration. Throws kiln::Error naming what could not be read.
std::vector<EngineLink> engine_links();

// Makes TAP `tap` (persistent, the link's MTU, up) and redirects every frame between it and
// the link; what an earlier container left in the namespace (the TAP, the ingress qdiscs) is
// replaced. Throws kiln::Error naming the step (tc's modules: sch_ingress, cls_u32,
// act_mirred).
void connect_tap(const EngineLink& link, const std::string& tap);
// Undoes connect_tap (the link's ingress qdisc and its filter, the TAP); what is already gone
// is no error.
void disconnect_tap(const std::string& link, const std::string& tap);

// What `kiln sandbox run --net` gets for a TAP connected to `link`: its MAC and name, so the
// agent finds the NIC and names it as the engine did.
sandbox::SandboxNet guest_net(const EngineLink& link, const std::string& tap);

// Runs `body` in a child that entered network namespace `path` (setns changes only the
// caller's thread, and a child keeps this process clean); false if `path` cannot be entered
// (the engine removed it). Throws kiln::Error with the reason `body` threw.
bool in_netns(const std::string& path, const std::function<void()>& body);
// Moves the calling process (single-threaded) into network namespace `path`.
void enter_netns(const std::string& path);

}  // namespace kiln::oci
