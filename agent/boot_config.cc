#include "agent/boot_config.h"

#include <sstream>
#include <stdexcept>

namespace kiln::agent {

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
    } else {
      throw std::runtime_error("unknown parameter " + key +
                               " (known: kiln.root, kiln.rootfstype, kiln.rootflags, "
                               "kiln.hostname, kiln.port)");
    }
  }
  if (c.root.empty()) throw std::runtime_error("kiln.root= is missing (e.g. kiln.root=/dev/vda)");
  return c;
}

}  // namespace kiln::agent
