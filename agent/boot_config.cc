#include "agent/boot_config.h"

#include <sys/mount.h>

#include <cctype>
#include <map>
#include <sstream>
#include <stdexcept>

#include "base/text_parse.h"

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

// Six hex pairs with ':' into `out`, lower case; false if `text` is not one.
bool parse_mac(const std::string& text, std::string* out) {
  bool ok = text.size() == 17;
  for (size_t i = 0; ok && i < text.size(); ++i)
    ok = i % 3 == 2 ? text[i] == ':' : std::isxdigit(static_cast<unsigned char>(text[i]));
  if (!ok) return false;
  *out = text;
  for (char& ch : *out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return true;
}

// ADDR/PREFIX[,gw=GW][,mtu=N]
Network parse_network(const std::string& v) {
  auto bad = [&v](const std::string& why) {
    return std::runtime_error("kiln.net='" + v + "': " + why +
                              " (want ADDR/PREFIX[,gw=ADDR][,mtu=N][,mac=MAC,name=NAME])");
  };
  Network n;
  std::istringstream parts(v);
  std::string part;
  bool first = true;
  while (std::getline(parts, part, ',')) {
    if (first) {
      auto slash = part.find('/');
      if (slash == std::string::npos || !is_ipv4(part.substr(0, slash)))
        throw bad("the address must be IPv4 ADDR/PREFIX");
      n.address = part.substr(0, slash);
      long prefix = parse_bounded(part.substr(slash + 1), 0, 32);
      if (prefix < 0) throw bad("the prefix must be 0 to 32");
      n.prefix = static_cast<int>(prefix);
      first = false;
    } else if (part.rfind("gw=", 0) == 0) {
      if (!is_ipv4(part.substr(3))) throw bad("gw must be an IPv4 address");
      n.gateway = part.substr(3);
    } else if (part.rfind("mtu=", 0) == 0) {
      long mtu = parse_bounded(part.substr(4), 68, 65535);
      if (mtu < 0) throw bad("mtu must be 68 to 65535");
      n.mtu = static_cast<uint32_t>(mtu);
    } else if (part.rfind("mac=", 0) == 0) {
      if (!parse_mac(part.substr(4), &n.mac)) throw bad("mac must be six hex pairs with ':'");
    } else if (part.rfind("name=", 0) == 0) {
      n.name = part.substr(5);
      bool ok = !n.name.empty() && n.name.size() < 16 && n.name != "." && n.name != "..";
      for (char ch : n.name)
        ok = ok &&
             (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.');
      if (!ok) throw bad("name must be 1 to 15 letters, digits, '_', '-' or '.'");
    } else {
      throw bad("unknown option '" + part + "'");
    }
  }
  if (first) throw bad("no address");
  if (n.mac.empty() != n.name.empty()) throw bad("mac and name go together");
  return n;
}

// TAG:NAME:FILE[:ro]: NAME one path component, FILE as a volume's DIR.
FileBind parse_bind(const std::string& v) {
  auto bad = [&v](const std::string& why) {
    return std::runtime_error("kiln.bind='" + v + "': " + why + " (want TAG:NAME:/FILE[:ro])");
  };
  std::vector<std::string> parts;
  std::istringstream in(v);
  std::string p;
  while (std::getline(in, p, ':')) parts.push_back(p);
  if (parts.size() < 3 || parts.size() > 4) throw bad("three or four ':'-separated fields");
  if (parts.size() == 4 && parts[3] != "ro") throw bad("the only option is ro");
  FileBind b{parts[0], parts[1], "", parts.size() == 4};
  if (b.tag.empty() || b.tag.find('/') != std::string::npos) throw bad("a bad tag");
  if (b.name.empty() || b.name == "." || b.name == ".." || b.name.find('/') != std::string::npos)
    throw bad("NAME must be one file name");
  try {
    b.target = parse_volume(b.tag + ":" + parts[2]).target;  // the rules of a volume's DIR
  } catch (const std::runtime_error&) {
    throw bad("FILE must be absolute, not /, without '.' or '..'");
  }
  return b;
}

// digits (at most 15), then one of `suffixes` or nothing.
bool is_amount(const std::string& v, const std::string& suffixes) {
  size_t digits = v.find_first_not_of("0123456789");
  if (digits == 0 || v.empty()) return false;
  if (digits == std::string::npos) return v.size() <= 15;
  return digits <= 15 && digits + 1 == v.size() && suffixes.find(v.back()) != std::string::npos;
}

}  // namespace

Tmpfs parse_tmpfs(const std::string& v) {
  auto bad = [&v](const std::string& why) {
    return std::runtime_error("tmpfs '" + v + "': " + why + " (want /DIR[:OPTION,...])");
  };
  // Flags set (true) or cleared (false) by an option, as mount(8) spells them.
  static const std::map<std::string, std::pair<unsigned long, bool>> kFlags = {
      {"ro", {MS_RDONLY, true}},
      {"rw", {MS_RDONLY, false}},
      {"nosuid", {MS_NOSUID, true}},
      {"suid", {MS_NOSUID, false}},
      {"nodev", {MS_NODEV, true}},
      {"dev", {MS_NODEV, false}},
      {"noexec", {MS_NOEXEC, true}},
      {"exec", {MS_NOEXEC, false}},
      {"noatime", {MS_NOATIME, true}},
      {"atime", {MS_NOATIME, false}},
      {"nodiratime", {MS_NODIRATIME, true}},
      {"diratime", {MS_NODIRATIME, false}},
      {"relatime", {MS_RELATIME, true}},
      {"norelatime", {MS_RELATIME, false}},
      {"strictatime", {MS_STRICTATIME, true}},
      {"sync", {MS_SYNCHRONOUS, true}},
      {"async", {MS_SYNCHRONOUS, false}}};
  if (v.find_first_of(" \t\n") != std::string::npos) throw bad("whitespace is not allowed");
  Tmpfs t;
  auto colon = v.find(':');
  t.target = v.substr(0, colon);
  try {
    t.target = parse_volume("t:" + t.target).target;  // the rules of a volume's DIR
  } catch (const std::runtime_error&) {
    throw bad("the directory must be absolute, not /, without '.' or '..'");
  }
  if (colon == std::string::npos) return t;
  if (colon + 1 == v.size()) throw bad("no options after ':'");
  std::istringstream opts(v.substr(colon + 1));
  std::string o;
  int count = 0;
  while (std::getline(opts, o, ',')) {
    if (++count > 16) throw bad("more than 16 options");
    auto eq = o.find('=');
    std::string key = o.substr(0, eq), value = eq == std::string::npos ? "" : o.substr(eq + 1);
    if (auto f = kFlags.find(o); f != kFlags.end()) {
      t.flags = f->second.second ? t.flags | f->second.first : t.flags & ~f->second.first;
      continue;
    }
    if (o == "tmpcopyup") {
      t.copy_up = true;
      continue;
    }
    bool ok = false;
    if (key == "size")
      ok = is_amount(value, "kKmMgG%");
    else if (key == "nr_inodes")
      ok = is_amount(value, "kKmMgG");
    else if (key == "mode")
      ok = !value.empty() && value.size() <= 5 &&
           value.find_first_not_of("01234567") == std::string::npos &&
           std::stol(value, nullptr, 8) <= 07777;
    else if (key == "uid" || key == "gid")
      ok = parse_bounded(value, 0, 999999999) >= 0;
    else
      throw bad("unknown option '" + o + "'");
    if (!ok) throw bad("a bad value in '" + o + "'");
    t.data += (t.data.empty() ? "" : ",") + o;
  }
  return t;
}

BootConfig parse_boot_config(const std::string& cmdline, Source source) {
  BootConfig c;
  std::istringstream in(cmdline);
  std::string word;
  while (in >> word) {
    if (word.rfind("kiln.", 0) != 0) continue;
    auto eq = word.find('=');
    std::string key = word.substr(0, eq),
                value = eq == std::string::npos ? "" : word.substr(eq + 1);
    if (value.empty()) throw std::runtime_error(key + " needs a value (" + key + "=...)");
    if (source == Source::kConfigure && (key == "kiln.warm" || key == "kiln.port"))
      throw std::runtime_error(key + " is a boot parameter: a configure cannot change it");
    if (key == "kiln.warm") {
      if (value != "1") throw std::runtime_error("kiln.warm='" + value + "': only 1");
      c.warm = true;
    } else if (key == "kiln.root") {
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
    } else if (key == "kiln.bind") {
      if (c.binds.size() >= 64) throw std::runtime_error("more than 64 kiln.bind= given");
      c.binds.push_back(parse_bind(value));
    } else if (key == "kiln.tmpfs") {
      if (c.tmpfs.size() >= 64) throw std::runtime_error("more than 64 kiln.tmpfs= given");
      try {
        c.tmpfs.push_back(parse_tmpfs(value));
      } catch (const std::runtime_error& e) {
        throw std::runtime_error(std::string("kiln.") + e.what());
      }
    } else if (key == "kiln.net") {
      if (c.nets.size() >= 8) throw std::runtime_error("more than 8 kiln.net= given");
      c.nets.push_back(parse_network(value));
      const Network& n = c.nets.back();
      for (size_t i = 0; i + 1 < c.nets.size(); ++i)
        if (c.nets[i].name == n.name || (!n.mac.empty() && c.nets[i].mac == n.mac) ||
            (!n.gateway.empty() && !c.nets[i].gateway.empty()))
          throw std::runtime_error("kiln.net='" + value +
                                   "': a second one for the same interface, MAC or default "
                                   "route");
    } else if (key == "kiln.setmac") {
      MacChange m;
      auto comma = value.find(',');
      if (comma == std::string::npos || !parse_mac(value.substr(0, comma), &m.from) ||
          !parse_mac(value.substr(comma + 1), &m.to))
        throw std::runtime_error("kiln.setmac='" + value + "': want OLD_MAC,NEW_MAC");
      if (c.mac_changes.size() >= 8) throw std::runtime_error("more than 8 kiln.setmac= given");
      c.mac_changes.push_back(m);
    } else if (key == "kiln.dns") {
      std::istringstream servers(value);
      std::string a;
      c.dns.clear();
      while (std::getline(servers, a, ',')) {
        if (!is_ipv4(a)) throw std::runtime_error("kiln.dns: '" + a + "' is not an IPv4 address");
        c.dns.push_back(a);
      }
      if (c.dns.empty() || c.dns.size() > 3)
        throw std::runtime_error("kiln.dns: want 1 to 3 addresses");
    } else {
      throw std::runtime_error(
          "unknown parameter " + key +
          " (known: kiln.warm, kiln.root, kiln.rootfstype, kiln.rootflags, "
          "kiln.hostname, kiln.port, kiln.overlay, kiln.volume, kiln.bind, kiln.tmpfs, "
          "kiln.net, "
          "kiln.setmac, kiln.dns)");
    }
  }
  if (c.warm) {
    // Only what the agent itself needs at a warm boot; the workload's come with configure.
    if (!c.root.empty() || !c.volumes.empty() || !c.binds.empty() || !c.tmpfs.empty() ||
        !c.nets.empty() || !c.dns.empty() || !c.mac_changes.empty())
      throw std::runtime_error(
          "kiln.warm=1 takes the root, volumes, binds, tmpfs and networks from the host's "
          "configure, not from the command line");
    return c;
  }
  if (c.root.empty()) throw std::runtime_error("kiln.root= is missing (e.g. kiln.root=/dev/vda)");
  return c;
}

}  // namespace kiln::agent
