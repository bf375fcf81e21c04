// Firecracker's NetworkInterface objects <-> VmConfig::nets (declared in api/vm_json.h).
#include <linux/if.h>

#include <algorithm>

#include "api/json_fields.h"
#include "api/vm_json.h"

namespace kiln::api {

namespace {

using nlohmann::json;

constexpr uint64_t kMinMtu = 68;
constexpr uint64_t kMaxMtu = 65535;

// Kiln has no net rate limiting: a limiter must be absent or {} (checked as a RateLimiter).
void check_rate_limiter(JsonFields& f, const std::string& what, const char* key) {
  auto limiter = f.optional<json>(key);
  if (limiter) refuse_rate_limiter(*limiter, what + "." + key, "network interfaces");
}

}  // namespace

void apply_network_interface(VmConfig& config, const std::string& id, const json& body,
                             const std::string& what) {
  JsonFields f(body, what);
  auto iface_id = f.required<std::string>("iface_id");
  auto host_dev_name = f.required<std::string>("host_dev_name");
  auto guest_mac = f.optional<std::string>("guest_mac");
  auto mtu = f.optional<uint64_t>("mtu");
  check_rate_limiter(f, what, "rx_rate_limiter");
  check_rate_limiter(f, what, "tx_rate_limiter");
  f.reject_unknown();
  check_path_id(what, "iface_id", iface_id, id);
  check_resource_id(what, "iface_id", iface_id);
  if (host_dev_name.empty() || host_dev_name.size() >= IFNAMSIZ ||
      host_dev_name.find_first_of("/ \t\n:") != std::string::npos)
    throw FieldError(what, "host_dev_name",
                     "\"" + host_dev_name + "\" is not a valid interface name (1 to " +
                         std::to_string(IFNAMSIZ - 1) + " characters, no '/', ':' or spaces)");
  NetConfig net{iface_id, host_dev_name, std::nullopt, std::nullopt};
  if (guest_mac) {
    net.guest_mac = MacAddress::parse(*guest_mac);
    if (!net.guest_mac)
      throw FieldError(what, "guest_mac", "\"" + *guest_mac + "\" is not a MAC xx:xx:xx:xx:xx:xx");
    if (net.guest_mac->is_multicast() || net.guest_mac->is_zero())
      throw FieldError(what, "guest_mac", *guest_mac + " is not a unicast address");
  }
  if (mtu) {
    if (*mtu < kMinMtu || *mtu > kMaxMtu)
      throw FieldError(what, "mtu", "must be between 68 and 65535");
    net.mtu = static_cast<uint16_t>(*mtu);
  }
  for (const NetConfig& other : config.nets) {
    if (other.iface_id == id) continue;  // replaced below
    if (other.host_dev_name == net.host_dev_name)
      throw FieldError(what, "host_dev_name",
                       "Could not create the network device: TAP " + net.host_dev_name +
                           " is already used by interface \"" + other.iface_id + "\"");
    if (net.guest_mac && other.guest_mac == net.guest_mac)
      throw FieldError(what, "guest_mac",
                       "The MAC address is already in use: " + net.guest_mac->to_string() +
                           " (by interface \"" + other.iface_id + "\")");
  }
  auto existing = std::find_if(config.nets.begin(), config.nets.end(),
                               [&](const NetConfig& n) { return n.iface_id == id; });
  if (existing != config.nets.end()) {
    *existing = net;
  } else {
    config.nets.push_back(net);
  }
}

void check_network_interface_patch(const VmConfig& config, const std::string& id,
                                   const json& body) {
  const std::string what = "network-interface";
  JsonFields f(body, what);
  auto iface_id = f.required<std::string>("iface_id");
  check_rate_limiter(f, what, "rx_rate_limiter");
  check_rate_limiter(f, what, "tx_rate_limiter");
  f.reject_unknown();
  check_path_id(what, "iface_id", iface_id, id);
  if (std::none_of(config.nets.begin(), config.nets.end(),
                   [&](const NetConfig& n) { return n.iface_id == id; }))
    throw FieldError(what, "iface_id", "no network interface with id \"" + id + "\"");
}

json network_interfaces_json(const VmConfig& config) {
  json nets = json::array();
  for (const NetConfig& n : config.nets) {
    // Firecracker's NetworkInterfaceConfig, every key present.
    nets.push_back({{"iface_id", n.iface_id},
                    {"host_dev_name", n.host_dev_name},
                    {"guest_mac", n.guest_mac ? json(n.guest_mac->to_string()) : json(nullptr)},
                    {"mtu", n.mtu ? json(*n.mtu) : json(nullptr)},
                    {"rx_rate_limiter", nullptr},
                    {"tx_rate_limiter", nullptr}});
  }
  return nets;
}

void apply_network_interfaces(VmConfig& config, const json& list) {
  if (!list.is_array()) throw FieldError("configuration", "network-interfaces", "must be an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const json& n = list[i];
    const std::string id = n.is_object() && n.contains("iface_id") && n["iface_id"].is_string()
                               ? n["iface_id"].get<std::string>()
                               : "";
    const std::string what = "network-interfaces[" + std::to_string(i) + "]";
    if (std::any_of(config.nets.begin(), config.nets.end(),
                    [&](const NetConfig& other) { return other.iface_id == id; }))
      throw FieldError(what, "iface_id", "\"" + id + "\" appears twice");
    apply_network_interface(config, id, n, what);
  }
}

}  // namespace kiln::api
