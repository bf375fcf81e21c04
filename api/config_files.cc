#include "api/config_files.h"

#include <fstream>
#include <optional>
#include <sstream>
#include <toml.hpp>

#include "api/json_fields.h"
#include "api/vm_json.h"
#include "vmm/error.h"

namespace kiln::api {

namespace {

using nlohmann::json;

std::string read_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(errno_message("config file " + path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

json to_json(const toml::value& v) {
  switch (v.type()) {
    case toml::value_t::boolean:
      return v.as_boolean();
    case toml::value_t::integer:
      if (v.as_integer() < 0) return static_cast<int64_t>(v.as_integer());
      return static_cast<uint64_t>(v.as_integer());
    case toml::value_t::floating:
      return v.as_floating();
    case toml::value_t::string:
      return v.as_string().str;
    case toml::value_t::array: {
      json a = json::array();
      for (const toml::value& e : v.as_array()) a.push_back(to_json(e));
      return a;
    }
    case toml::value_t::table: {
      json o = json::object();
      for (const auto& [key, e] : v.as_table()) o[key] = to_json(e);
      return o;
    }
    default:
      return toml::format(v);  // dates and times: no Kiln key takes one
  }
}

// The TOML value a FieldError points at. The object is a dotted path whose parts may carry an
// index: "machine-config", "drives[1]", "entropy.rate_limiter.bandwidth"; then the field.
const toml::value* locate(const toml::value& root, const FieldError& e) {
  const toml::value* v = &root;
  std::istringstream parts(e.object() == "configuration" ? "" : e.object());
  std::string part;
  while (std::getline(parts, part, '.')) {
    std::optional<size_t> index;
    if (auto bracket = part.find('['); bracket != std::string::npos) {
      index = std::stoul(part.substr(bracket + 1));
      part = part.substr(0, bracket);
    }
    if (!v->is_table() || !v->as_table().count(part)) return nullptr;
    v = &v->as_table().at(part);
    if (index) {
      if (!v->is_array() || *index >= v->as_array().size()) return nullptr;
      v = &v->as_array()[*index];
    }
  }
  if (!e.field().empty() && v->is_table() && v->as_table().count(e.field()))
    v = &v->as_table().at(e.field());
  return v;
}

}  // namespace

void apply_json_config_file(VmConfig& config, const std::string& path) {
  const json document = json::parse(read_config(path), nullptr, false);
  if (document.is_discarded()) throw UsageError("config file " + path + ": not valid JSON");
  try {
    apply_full_config(config, document);
  } catch (const UsageError& e) {
    throw UsageError("config file " + path + ": " + e.what());
  }
}

void apply_toml_config_file(VmConfig& config, const std::string& path) {
  toml::value root;
  try {
    read_config(path);  // a clear error for a missing or unreadable file
    root = toml::parse(path);
  } catch (const toml::syntax_error& e) {
    throw UsageError("config file " + path + ": TOML syntax error:\n" + e.what());
  }
  try {
    apply_full_config(config, to_json(root));
  } catch (const FieldError& e) {
    const toml::value* at = locate(root, e);
    const std::string line = at ? ":" + std::to_string(at->location().line()) : "";
    throw UsageError("config file " + path + line + ": " + e.what());
  }
}

}  // namespace kiln::api
