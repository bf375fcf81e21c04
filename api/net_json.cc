// Firecracker's NetworkInterface objects <-> NetConfig (declared in api/vm_json.h).

#include "api/json_fields.h"
#include "api/vm_json.h"

namespace kiln::api {

namespace {

using nlohmann::json;

constexpr uint64_t kMaxMtu = 65535;

// rx_rate_limiter / tx_rate_limiter: absent or null changes nothing.
RateLimiterUpdate limiter_update(const std::optional<json>& limiter, const std::string& what,
                                 const char* key) {
  if (!limiter || limiter->is_null()) return {};
  return parse_rate_limiter_update(*limiter, what + "." + key);
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
  auto rx = f.optional<json>("rx_rate_limiter");
  auto tx = f.optional<json>("tx_rate_limiter");
  f.reject_unknown();
  check_path_id(what, "iface_id", iface_id, path_id);
  NetConfig net{iface_id, host_dev_name, std::nullopt, std::nullopt};
  check(what, validate(net));  // the id and name, before the MAC and MTU are read
  if (guest_mac) net.guest_mac = parse_guest_mac(*guest_mac, what);
  if (mtu && *mtu > kMaxMtu) throw FieldError(what, "mtu", "must be between 68 and 65535");
  if (mtu) net.mtu = static_cast<uint16_t>(*mtu);
  check(what, validate(net));
  net.rx_rate_limiter = limiter_update(rx, what, "rx_rate_limiter").applied_to({});
  net.tx_rate_limiter = limiter_update(tx, what, "tx_rate_limiter").applied_to({});
  return net;
}

request::PatchNetworkInterface parse_network_interface_patch(const json& body,
                                                             const std::string& path_id) {
  const std::string what = "network-interface";
  JsonFields f(body, what);
  auto iface_id = f.required<std::string>("iface_id");
  auto rx = f.optional<json>("rx_rate_limiter");
  auto tx = f.optional<json>("tx_rate_limiter");
  f.reject_unknown();
  check_path_id(what, "iface_id", iface_id, path_id);
  return {iface_id, limiter_update(rx, what, "rx_rate_limiter"),
          limiter_update(tx, what, "tx_rate_limiter")};
}

json network_interfaces_json(const VmConfig& config) {
  json nets = json::array();
  for (const NetConfig& n : config.nets) {
    // Firecracker's NetworkInterfaceConfig, every key present.
    nets.push_back({{"iface_id", n.iface_id},
                    {"host_dev_name", n.host_dev_name},
                    {"guest_mac", n.guest_mac ? json(n.guest_mac->to_string()) : json(nullptr)},
                    {"mtu", n.mtu ? json(*n.mtu) : json(nullptr)},
                    {"rx_rate_limiter", rate_limiter_json(n.rx_rate_limiter)},
                    {"tx_rate_limiter", rate_limiter_json(n.tx_rate_limiter)}});
  }
  return nets;
}

}  // namespace kiln::api
