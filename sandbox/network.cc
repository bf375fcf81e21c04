#include "sandbox/network.h"

#include <net/if.h>
#include <sys/random.h>

#include <cstdint>
#include <cstdio>
#include <sstream>

#include "base/error.h"
#include "base/text_parse.h"

namespace kiln::sandbox {

SandboxNet parse_net(const std::string& v) {
  auto bad = [&v](const std::string& why) {
    return UsageError(
        "--net '" + v.substr(0, 200) + "': " + why +
        " (want tap=NAME[,mac=MAC][,ip=ADDR/PREFIX][,gw=ADDR][,mtu=N][,dns=ADDR]...)");
  };
  SandboxNet n;
  std::istringstream parts(v);
  std::string part;
  while (std::getline(parts, part, ',')) {
    auto eq = part.find('=');
    if (eq == std::string::npos) throw bad("'" + part + "' is not KEY=VALUE");
    std::string key = part.substr(0, eq), value = part.substr(eq + 1);
    if (key == "tap") {
      if (value.empty() || value.size() >= IFNAMSIZ || value.find('/') != std::string::npos)
        throw bad("tap= must be an interface name of 1 to 15 bytes");
      n.tap = value;
    } else if (key == "mac") {
      n.mac = value;  // kiln run checks it and names it
    } else if (key == "ip") {
      auto slash = value.find('/');
      long prefix = slash == std::string::npos ? -1 : parse_bounded(value.substr(slash + 1), 0, 32);
      if (prefix < 0 || !is_ipv4(value.substr(0, slash)))
        throw bad("ip= must be an IPv4 ADDR/PREFIX (prefix 0 to 32)");
      n.address = value.substr(0, slash);
      n.prefix = static_cast<int>(prefix);
    } else if (key == "gw") {
      if (!is_ipv4(value)) throw bad("gw= must be an IPv4 address");
      n.gateway = value;
    } else if (key == "mtu") {
      long mtu = parse_bounded(value, 68, 65535);
      if (mtu < 0) throw bad("mtu= must be 68 to 65535");
      n.mtu = static_cast<unsigned>(mtu);
    } else if (key == "dns") {
      if (!is_ipv4(value)) throw bad("dns= must be an IPv4 address");
      if (n.dns.size() == 3) throw bad("at most 3 dns=");
      n.dns.push_back(value);
    } else {
      throw bad("unknown key '" + key + "'");
    }
  }
  if (n.tap.empty()) throw bad("tap=NAME is required");
  if (n.address.empty() && (!n.gateway.empty() || n.mtu)) throw bad("gw= and mtu= need ip=");
  return n;
}

std::string random_mac() {
  uint8_t b[6];
  if (getrandom(b, sizeof b, 0) != static_cast<ssize_t>(sizeof b)) throw_errno("getrandom");
  b[0] = static_cast<uint8_t>((b[0] & 0xfe) | 0x02);  // unicast, locally administered
  char text[18];
  std::snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
                b[5]);
  return text;
}

std::vector<std::string> SandboxNet::vm_args() const {
  return {"--net", "tap=" + tap + (mac.empty() ? "" : ",mac=" + mac)};
}

std::string SandboxNet::cmdline() const {
  std::string c;
  if (!address.empty()) {
    c += " kiln.net=" + address + "/" + std::to_string(prefix);
    if (!gateway.empty()) c += ",gw=" + gateway;
    if (mtu) c += ",mtu=" + std::to_string(mtu);
    if (!name.empty()) c += ",mac=" + mac + ",name=" + name;
  }
  for (size_t i = 0; i < dns.size(); ++i) c += (i ? "," : " kiln.dns=") + dns[i];
  return c;
}

}  // namespace kiln::sandbox
