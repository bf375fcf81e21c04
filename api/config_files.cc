#include "api/config_files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <sstream>
#include <toml.hpp>

#include "api/json_fields.h"
#include "api/nesting.h"
#include "api/utf8.h"
#include "api/vm_json.h"
#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::api {

namespace {

using nlohmann::json;

// Configuration files are small; anything bigger is not one.
constexpr size_t kMaxConfigBytes = 1 << 20;

// The whole file, refusing directories and anything over kMaxConfigBytes. Pipes are read (a
// shell's process substitution, <(...), is one).
std::string read_config(const std::string& path) {
  auto fail = [&](int err) { return UsageError(errno_message("config file " + path, err)); };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw fail(errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw fail(errno);
  if (S_ISDIR(st.st_mode)) throw fail(EISDIR);
  auto too_big = [&] {
    return UsageError(
        fmt::format("config file {}: larger than {} MiB; that is not a Kiln "
                    "configuration",
                    path, kMaxConfigBytes >> 20));
  };
  if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > kMaxConfigBytes) throw too_big();
  std::string text;
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw fail(errno);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) throw too_big();
  }
  return text;
}

size_t line_of(std::string_view text, size_t offset) {
  return 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + offset, '\n'));
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
  const std::string text = read_config(path);
  if (auto line = json_nesting_exceeded(text))
    throw UsageError(fmt::format("config file {}:{}: nested more than {} levels deep", path, *line,
                                 kMaxNesting));
  if (auto at = invalid_utf8_at(text))
    throw UsageError(fmt::format("config file {}:{}: not valid UTF-8 (byte {:#04x})", path,
                                 line_of(text, *at), static_cast<unsigned char>(text[*at])));
  const json document = json::parse(text, nullptr, false);
  if (document.is_discarded()) throw UsageError("config file " + path + ": not valid JSON");
  try {
    apply_full_config(config, document);
  } catch (const UsageError& e) {
    throw UsageError("config file " + path + ": " + e.what());
  }
}

void apply_toml_config_file(VmConfig& config, const std::string& path) {
  const std::string text = read_config(path);
  // A TOML file must be UTF-8 (TOML 1.0); toml11 recurses into arrays and inline tables.
  if (auto at = invalid_utf8_at(text))
    throw UsageError(fmt::format("config file {}:{}: not valid UTF-8 (byte {:#04x})", path,
                                 line_of(text, *at), static_cast<unsigned char>(text[*at])));
  if (auto line = toml_nesting_exceeded(text))
    throw UsageError(fmt::format("config file {}:{}: nested more than {} levels deep", path, *line,
                                 kMaxNesting));
  toml::value root;
  try {
    std::istringstream in(text);
    root = toml::parse(in, path);
  } catch (const toml::syntax_error& e) {
    throw UsageError("config file " + path + ": TOML syntax error:\n" + e.what());
  } catch (const toml::exception& e) {
    throw UsageError("config file " + path + ": TOML error: " + e.what());
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
