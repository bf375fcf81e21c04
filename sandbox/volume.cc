#include "sandbox/volume.h"

#include <filesystem>

#include "base/error.h"

namespace kiln::sandbox {

namespace fs = std::filesystem;

// GUESTDIR goes on the guest's kernel command line, so it must be one word: absolute, no
// whitespace, no ':' and no '.'/'..' components.
Volume parse_volume(const std::string& v) {
  auto bad = [&v](const std::string& why) {
    return kiln::Error("-v " + v + ": " + why + " (want HOSTDIR:GUESTDIR[:ro])");
  };
  Volume vol;
  auto c1 = v.find(':');
  if (c1 == std::string::npos || c1 == 0) throw bad("no host directory");
  vol.host = v.substr(0, c1);
  std::string rest = v.substr(c1 + 1);
  if (auto c2 = rest.find(':'); c2 != std::string::npos) {
    std::string opt = rest.substr(c2 + 1);
    if (opt != "ro" && opt != "rw") throw bad("unknown option '" + opt + "' (ro or rw)");
    vol.read_only = opt == "ro";
    rest.resize(c2);
  }
  if (rest.size() < 2 || rest[0] != '/') throw bad("GUESTDIR must be absolute and not /");
  if (rest.find_first_of(" \t\n\r") != std::string::npos || rest.size() > 1024)
    throw bad("GUESTDIR must not contain whitespace");
  for (const auto& part : fs::path(rest))
    if (part == "." || part == "..") throw bad("GUESTDIR must not contain '.' or '..'");
  if (vol.host.find(',') != std::string::npos) throw bad("HOSTDIR must not contain ','");
  if (!fs::is_directory(vol.host)) throw bad("HOSTDIR " + vol.host + " is not a directory");
  vol.guest = rest;
  return vol;
}

}  // namespace kiln::sandbox
