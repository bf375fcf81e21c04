#include "image/image_config.h"

#include "base/error.h"
#include "image/json_doc.h"
#include "image/manifest.h"

namespace kiln::image {
namespace {

using V = nlohmann::json::value_t;

constexpr size_t kMaxListEntries = 65536;

std::vector<std::string> string_list(const nlohmann::json& a, const std::string& what) {
  if (a.size() > kMaxListEntries) throw UsageError(what + ": too many entries");
  std::vector<std::string> out;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_string())
      throw UsageError(what + "[" + std::to_string(i) + "]: a string was expected");
    out.push_back(a[i].get<std::string>());
  }
  return out;
}

std::optional<std::vector<std::string>> optional_list(const nlohmann::json& obj, const char* key,
                                                      const std::string& what) {
  const auto* a = optional_field(obj, key, V::array, what);
  if (!a) return std::nullopt;
  return string_list(*a, what + "." + key);
}

}  // namespace

ImageConfig parse_image_config(std::string_view text, const std::string& what) {
  const nlohmann::json j = parse_json_object(text, what);
  ImageConfig c;
  c.os = string_field(j, "os", what);
  c.architecture = string_field(j, "architecture", what);
  if (const auto* cfg = optional_field(j, "config", V::object, what)) {
    const std::string w = what + ".config";
    c.entrypoint = optional_list(*cfg, "Entrypoint", w);
    c.cmd = optional_list(*cfg, "Cmd", w);
    c.env = optional_list(*cfg, "Env", w).value_or(std::vector<std::string>{});
    for (size_t i = 0; i < c.env.size(); ++i)
      if (c.env[i].find('=') == std::string::npos || c.env[i].front() == '=')
        throw UsageError(w + ".Env[" + std::to_string(i) + "]: '" + c.env[i] +
                         "' is not KEY=VALUE");
    c.working_dir = string_field(*cfg, "WorkingDir", w);
    c.user = string_field(*cfg, "User", w);
    c.stop_signal = string_field(*cfg, "StopSignal", w);
    if (const auto* ports = optional_field(*cfg, "ExposedPorts", V::object, w)) {
      if (ports->size() > kMaxListEntries) throw UsageError(w + ".ExposedPorts: too many entries");
      for (const auto& [port, _] : ports->items()) c.exposed_ports.push_back(port);
    }
  }
  if (const auto* rootfs = optional_field(j, "rootfs", V::object, what)) {
    const std::string w = what + ".rootfs";
    const std::string type = string_field(*rootfs, "type", w);
    if (type != "layers") throw UsageError(w + ".type: 'layers' was expected, not '" + type + "'");
    if (const auto* ids = optional_field(*rootfs, "diff_ids", V::array, w)) {
      if (ids->size() > kMaxLayers) throw UsageError(w + ".diff_ids: too many entries");
      const auto list = string_list(*ids, w + ".diff_ids");
      for (size_t i = 0; i < list.size(); ++i)
        c.diff_ids.push_back(parse_digest(list[i], w + ".diff_ids[" + std::to_string(i) + "]"));
    }
  }
  return c;
}

}  // namespace kiln::image
