// Firecracker's NetworkInterface objects <-> NetConfig (declared in api/vm_json.h).

#include "api/json_fields.h"
#include "api/vm_json.h"

namespace kiln::api {

namespace {

using nlohmann::json;

constexpr uint64_t kMaxMtu = 65535;

// Kiln has no net rate limiting: a limiter must be absent or {} (checked as a RateLimiter).
void check_rate_limiter(JsonFields& f, const std::string& what, const char* key) {
  auto limiter = f.optional<json>(key);
  if (limiter) refuse_rate_limiter(*limiter, what + "." + key, "network interfaces");
}

}  // namespace

MacAddress parse_guest_mac(const std::string& text, const std::string& what) {
  auto mac = MacAddress::parse(text);
  if (!mac) throw FieldError(what, "guest_mac", "\"" + text + "\" is not a MAC xx:xx:xx:xx:xx:xx");
  return *mac;
}

NetConfig parse_network_interface(const json& body, const std::string& path_id,
                                  const std::string& what) {
  JsonFields f(body, what);
  auto iface_id = f.required<std::string>("iface_id");
  auto host_dev_name = f.required<std::string>("host_dev_name");
  auto guest_mac = f.optional<std::string>("guest_mac");
  auto mtu = f.optional<uint64_t>("mtu");
  check_rate_limiter(f, what, "rx_rate_limiter");
  check_rate_limiter(f, what, "tx_rate_limiter");
  f.reject_unknown();
  check_path_id(what, "iface_id", iface_id, path_id);
  NetConfig net{iface_id, host_dev_name, std::nullopt, std::nullopt};
  check(what, validate(net));  // the id and name, before the MAC and MTU are read
  if (guest_mac) net.guest_mac = parse_guest_mac(*guest_mac, what);
  if (mtu && *mtu > kMaxMtu) throw FieldError(what, "mtu", "must be between 68 and 65535");
  if (mtu) net.mtu = static_cast<uint16_t>(*mtu);
  check(what, validate(net));
  return net;
}

request::PatchNetworkInterface parse_network_interface_patch(const json& body,
                                                             const std::string& path_id) {
  const std::string what = "network-interface";
  JsonFields f(body, what);
  auto iface_id = f.required<std::string>("iface_id");
  check_rate_limiter(f, what, "rx_rate_limiter");
  check_rate_limiter(f, what, "tx_rate_limiter");
  f.reject_unknown();
  check_path_id(what, "iface_id", iface_id, path_id);
  return {iface_id};
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

}  // namespace kiln::api
