#include "agent/boot_config.h"

#include <sstream>
#include <stdexcept>

namespace kiln::agent {

namespace {

// TAG:DIR[:ro]; DIR absolute, without "." or ".." components (it is created in the root).
Volume parse_volume(const std::string& v) {
  auto bad = [&v](const std::string& why) {
    return std::runtime_error("kiln.volume='" + v + "': " + why + " (want TAG:/DIR[:ro])");
  };
  Volume vol;
  auto c1 = v.find(':');
  if (c1 == std::string::npos || c1 == 0) throw bad("no tag");
  vol.tag = v.substr(0, c1);
  std::string rest = v.substr(c1 + 1);
  auto c2 = rest.find(':');
  if (c2 != std::string::npos) {
    if (rest.substr(c2 + 1) != "ro") throw bad("the only option is ro");
    vol.read_only = true;
    rest.resize(c2);
  }
  if (rest.size() < 2 || rest[0] != '/') throw bad("the directory must be absolute, not /");
  std::istringstream parts(rest);
  std::string part;
  while (std::getline(parts, part, '/'))
    if (part == "." || part == "..") throw bad("'.' and '..' are not allowed");
  vol.target = rest;
  return vol;
}

}  // namespace

BootConfig parse_boot_config(const std::string& cmdline) {
  BootConfig c;
  std::istringstream in(cmdline);
  std::string word;
  while (in >> word) {
    if (word.rfind("kiln.", 0) != 0) continue;
    auto eq = word.find('=');
    std::string key = word.substr(0, eq),
                value = eq == std::string::npos ? "" : word.substr(eq + 1);
    if (value.empty()) throw std::runtime_error(key + " needs a value (" + key + "=...)");
    if (key == "kiln.root") {
      c.root = value;
    } else if (key == "kiln.rootfstype") {
      c.rootfstype = value;
    } else if (key == "kiln.rootflags") {
      std::string rest;
      std::istringstream opts(value);
      std::string o;
      while (std::getline(opts, o, ',')) {
        if (o == "ro")
          c.read_only = true;
        else if (o == "rw")
          c.read_only = false;
        else
          rest += (rest.empty() ? "" : ",") + o;
      }
      c.rootflags = rest;
    } else if (key == "kiln.hostname") {
      if (value.size() > 64) throw std::runtime_error("kiln.hostname is longer than 64 bytes");
      c.hostname = value;
    } else if (key == "kiln.port") {
      try {
        size_t end;
        unsigned long p = std::stoul(value, &end);
        if (end != value.size() || p == 0 || p > 0xffffffffUL) throw std::out_of_range("");
        c.port = static_cast<uint32_t>(p);
      } catch (const std::exception&) {
        throw std::runtime_error("kiln.port='" + value + "' is not a port number");
      }
    } else if (key == "kiln.overlay") {
      if (value != "tmpfs") throw std::runtime_error("kiln.overlay='" + value + "': only tmpfs");
      c.overlay = true;
    } else if (key == "kiln.volume") {
      if (c.volumes.size() >= 64) throw std::runtime_error("more than 64 kiln.volume= given");
      c.volumes.push_back(parse_volume(value));
    } else {
      throw std::runtime_error("unknown parameter " + key +
                               " (known: kiln.root, kiln.rootfstype, kiln.rootflags, "
                               "kiln.hostname, kiln.port, kiln.overlay, kiln.volume)");
    }
  }
  if (c.root.empty()) throw std::runtime_error("kiln.root= is missing (e.g. kiln.root=/dev/vda)");
  return c;
}

}  // namespace kiln::agent
