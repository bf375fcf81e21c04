// The bundle's files read (config.json, a process.json) and the root's workload planned: the
// parts of oci/spec.h that touch more than the JSON.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "base/error.h"
#include "oci/spec.h"
#include "sandbox/workload.h"

namespace kiln::oci {

namespace fs = std::filesystem;

namespace {

constexpr uintmax_t kMaxFile = 4 << 20;

// `path`'s text, at most 4 MiB; UsageError prefixed `what` otherwise.
std::string read_text(const fs::path& path, const std::string& what) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) throw UsageError(what + ": " + ec.message());
  if (size > kMaxFile) throw UsageError(what + ": larger than 4 MiB");
  std::ifstream f(path, std::ios::binary);
  std::ostringstream text;
  text << f.rdbuf();
  if (!f) throw UsageError(what + ": cannot be read");
  return text.str();
}

}  // namespace

sandbox::RunOptions load_resources_update(const std::string& file,
                                          const sandbox::RunOptions& current) {
  if (file != "-") return resources_update(read_text(file, "--resources " + file), current);
  std::string text;
  char buf[65536];
  while (text.size() <= kMaxFile && std::cin.read(buf, sizeof buf).gcount() > 0)
    text.append(buf, static_cast<size_t>(std::cin.gcount()));
  return resources_update(text, current);  // over 4 MiB: refused there
}

agent::Start load_process(const std::string& path) {
  return read_process_text(read_text(path, "--process " + path), path);
}

Bundle load_bundle(const std::string& dir, const sandbox::RunOptions& defaults) {
  std::string abs = fs::absolute(dir).lexically_normal().string();
  fs::path config = fs::path(abs) / "config.json";
  std::error_code ec;
  if (!fs::exists(config, ec)) throw UsageError("--bundle " + dir + ": no config.json");
  Bundle b = read_spec(read_text(config, "config.json"), abs, defaults);
  try {
    b.run.planned = sandbox::directory_workload(b.rootfs, b.read_only, std::move(b.process));
  } catch (const kiln::Error& e) {
    throw UsageError(std::string("config.json: root.path: ") + e.what());
  }
  return b;
}

}  // namespace kiln::oci
