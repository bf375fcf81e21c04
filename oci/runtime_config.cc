#include "oci/runtime_config.h"

#include <toml.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "base/toml_nesting.h"

namespace kiln::oci {

namespace fs = std::filesystem;

RuntimeConfig apply_runtime_config(sandbox::RunOptions& d, const std::string& path, bool required) {
  RuntimeConfig c;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    if (required) throw UsageError("runtime config " + path + ": no such file");
    return c;
  }
  auto size = fs::file_size(path, ec);
  if (ec) throw UsageError("runtime config " + path + ": " + ec.message());
  if (size > 65536) throw UsageError("runtime config " + path + ": larger than 64 KiB");
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) throw UsageError("runtime config " + path + ": cannot be read");
  if (auto line = toml_nesting_exceeded(text.str(), 4))
    throw UsageError("runtime config " + path + ":" + std::to_string(*line) +
                     ": nested: the file holds flat keys only");
  toml::value root;
  try {
    std::istringstream parse(text.str());
    root = toml::parse(parse, path);
  } catch (const toml::exception& e) {
    throw UsageError("runtime config " + path + ": TOML error: " + e.what());
  }
  for (const auto& [key, value] : root.as_table()) {
    std::string at =
        "runtime config " + path + ":" + std::to_string(value.location().line()) + ": " + key;
    if (key == "kernel" || key == "initrd") {
      if (!value.is_string() || value.as_string().str.empty() || value.as_string().str[0] != '/')
        throw UsageError(at + ": must be an absolute path (a string)");
      (key == "kernel" ? d.kernel : d.initrd) = value.as_string().str;
    } else if (key == "vcpus" || key == "memory_mib") {
      bool cpus = key == "vcpus";
      int64_t lo = cpus ? 1 : 32, hi = cpus ? 254 : 65536;
      if (!value.is_integer() || value.as_integer() < lo || value.as_integer() > hi)
        throw UsageError(at + ": must be an integer from " + std::to_string(lo) + " to " +
                         std::to_string(hi));
      (cpus ? d.cpus : d.memory) = static_cast<unsigned>(value.as_integer());
    } else if (key == "timings_annotation" || key == "warm") {
      if (!value.is_boolean()) throw UsageError(at + ": must be true or false");
      (key == "warm" ? c.warm : c.timings_annotation) = value.as_boolean();
    } else {
      throw UsageError(at +
                       ": unknown key (known: kernel, initrd, vcpus, memory_mib, "
                       "timings_annotation, warm)");
    }
  }
  return c;
}

}  // namespace kiln::oci
