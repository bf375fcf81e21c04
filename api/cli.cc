#include "api/cli.h"

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <utility>
#include <vector>

#include "api/config_files.h"
#include "api/fs_json.h"
#include "api/json_fields.h"
#include "api/utf8.h"
#include "api/vm_json.h"
#include "base/error.h"
#include "base/stop.h"

namespace kiln {

namespace {

// --rng or --rng=BYTES_PER_SEC.
EntropyConfig parse_rng_spec(const std::string& spec) {
  EntropyConfig entropy;
  if (spec.empty()) return entropy;
  uint64_t rate = 0;
  const auto [end, ec] = std::from_chars(spec.data(), spec.data() + spec.size(), rate);
  // The bounds of a TokenBucket's size (PUT /entropy's rate_limiter.bandwidth.size).
  if (ec != std::errc() || end != spec.data() + spec.size() || rate == 0 ||
      rate > TokenBucketConfig::kMaxTokens)
    throw UsageError("--rng=" + spec +
                     ": must be a number of bytes per second between 1 and 2^63-1");
  entropy.bandwidth = TokenBucketConfig{rate, 0, 1000};
  return entropy;
}

// --log-level's names -> the logger level names of Firecracker's API (LoggerConfig::level).
std::string logger_level_name(const std::string& cli_level) {
  if (cli_level == "error") return "Error";
  if (cli_level == "warn") return "Warning";
  if (cli_level == "info") return "Info";
  if (cli_level == "debug") return "Debug";
  if (cli_level == "trace") return "Trace";
  return "Off";
}

// "a,b,c" -> {"a", "b", "c"}; empty parts are kept (the callers name them in their errors).
std::vector<std::string> split_commas(const std::string& spec) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t comma = spec.find(',', start);
    parts.push_back(spec.substr(start, comma == std::string::npos ? comma : comma - start));
    if (comma == std::string::npos) return parts;
    start = comma + 1;
  }
}

constexpr const char* kRunFooter = R"(Console:
  The guest's serial console (COM1, ttyS0) is this terminal. When stdin is a terminal it is put
  in raw mode, so Ctrl-C goes to the guest. Press Ctrl-A then x to stop Kiln; Ctrl-A Ctrl-A
  sends one Ctrl-A to the guest.

Exit status:
  0  the guest reset or powered off (Linux: `reboot`/`poweroff` with reboot=k)
  1  the VM failed (triple fault, KVM error, unhandled exit); the reason is printed
  2  bad flags or files; nothing ran
  3  stopped from the console (Ctrl-A x) or by SIGINT/SIGTERM/SIGHUP)";

}  // namespace

DriveConfig parse_drive_spec(const std::string& spec) {
  DriveConfig drive;
  bool first = true;
  for (const std::string& part : split_commas(spec)) {
    if (std::exchange(first, false)) {
      if (part.empty()) throw UsageError("--disk " + spec + ": the path is empty");
      drive.path = part;
    } else if (part == "ro") {
      drive.read_only = true;
    } else if (part.rfind("id=", 0) == 0) {
      // The API's drive_id rule (PUT /drives, config files): one validator for all front ends.
      drive.id = part.substr(3);
      api::require_utf8("--disk " + spec + ": id", drive.id);
      if (auto problem = api::resource_id_problem(drive.id))
        throw UsageError("--disk " + spec + ": id: " + *problem);
    } else {
      throw UsageError("--disk " + spec + ": unknown option '" + part +
                       "' (expected ro or id=NAME)");
    }
  }
  return drive;
}

VsockConfig parse_vsock_spec(const std::string& spec) {
  const std::string flag = "--vsock " + spec + ": ";
  VsockConfig vsock;
  bool have_cid = false, have_uds = false;
  for (const std::string& part : split_commas(spec)) {
    if (part.rfind("cid=", 0) == 0) {
      const std::string value = part.substr(4);
      size_t used = 0;
      try {
        vsock.guest_cid = std::stoull(value, &used, 10);
      } catch (const std::exception&) {
        used = 0;
      }
      if (value.empty() || used != value.size() || value[0] == '-')
        throw UsageError(flag + "cid '" + value + "' is not a number");
      have_cid = true;
    } else if (part.rfind("uds=", 0) == 0) {
      vsock.uds_path = part.substr(4);
      have_uds = true;
    } else {
      throw UsageError(flag + "unknown option '" + part + "' (expected cid=N,uds=PATH)");
    }
  }
  if (!have_cid) throw UsageError(flag + "cid=N is required");
  if (!have_uds) throw UsageError(flag + "uds=PATH is required");
  if (auto p = api::vsock_problem(vsock))
    throw UsageError(flag + (p->field == "guest_cid" ? "cid " : "uds ") + p->problem);
  return vsock;
}

void add_net_spec(VmConfig& config, const std::string& spec) {
  const std::string flag = "--net " + spec;
  nlohmann::json iface = nlohmann::json::object();
  std::string id = "net" + std::to_string(config.nets.size());
  for (const std::string& part : split_commas(spec)) {
    const size_t eq = part.find('=');
    const std::string key = part.substr(0, eq),
                      value = eq == std::string::npos ? "" : part.substr(eq + 1);
    if (eq == std::string::npos || value.empty())
      throw UsageError(flag + ": '" + part + "' is not KEY=VALUE (tap=NAME, mac=MAC or id=ID)");
    const char* field = key == "tap"   ? "host_dev_name"
                        : key == "mac" ? "guest_mac"
                        : key == "id"  ? "iface_id"
                                       : nullptr;
    if (!field)
      throw UsageError(flag + ": unknown option '" + key + "' (expected tap=, mac= or id=)");
    if (iface.contains(field)) throw UsageError(flag + ": " + key + "= given twice");
    api::require_utf8(flag + ": " + key, value);
    iface[field] = value;
  }
  if (!iface.contains("host_dev_name")) throw UsageError(flag + ": tap=NAME is required");
  if (iface.contains("iface_id")) id = iface["iface_id"];
  iface["iface_id"] = id;
  if (std::any_of(config.nets.begin(), config.nets.end(),
                  [&](const NetConfig& n) { return n.iface_id == id; }))
    throw UsageError(flag + ": id=" + id + " is already used by another interface");
  try {
    api::apply_network_interface(config, id, iface, "--net");
  } catch (const api::FieldError& e) {
    // Name the flag's keys, not the JSON fields.
    const std::string& f = e.field();
    const std::string key = f == "host_dev_name" ? "tap" : f == "guest_mac" ? "mac" : "id";
    const std::string prefix = "--net: " + f + ": ";
    const std::string what = e.what();
    throw UsageError(flag + ": " + key + ": " + what.substr(std::min(prefix.size(), what.size())));
  }
}

void add_fs_spec(VmConfig& config, const std::string& spec) {
  const std::string flag = "--fs " + spec;
  // Flag keys <-> the fields of the share object (api/fs_json.cc checks them).
  static const std::pair<const char*, const char*> kKeys[] = {
      {"tag", "tag"},
      {"path", "path"},
      {"id", "fs_id"},
      {"ro", "read_only"},
      {"cache", "cache"},
      {"queues", "num_request_queues"},
      {"allow-setid-and-devices", "allow_setid_and_devices"}};
  nlohmann::json share = nlohmann::json::object();
  for (const std::string& part : split_commas(spec)) {
    const size_t eq = part.find('=');
    const std::string key = part.substr(0, eq),
                      value = eq == std::string::npos ? "" : part.substr(eq + 1);
    const auto* known = std::find_if(std::begin(kKeys), std::end(kKeys),
                                     [&](const auto& k) { return key == k.first; });
    if (known == std::end(kKeys))
      throw UsageError(flag + ": unknown option '" + part +
                       "' (expected tag=, path=, id=, cache=, queues=, ro or "
                       "allow-setid-and-devices)");
    const bool is_switch = key == "ro" || key == "allow-setid-and-devices";
    if (is_switch != (eq == std::string::npos) || (!is_switch && value.empty()))
      throw UsageError(flag + ": '" + part + "': " +
                       (is_switch ? key + " takes no value" : "expected " + key + "=VALUE"));
    if (share.contains(known->second)) throw UsageError(flag + ": " + key + " given twice");
    if (is_switch) {
      share[known->second] = true;
    } else if (key == "queues") {
      uint64_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size())
        throw UsageError(flag + ": queues: '" + value + "' is not a number");
      share[known->second] = n;
    } else {
      if (key != "path") api::require_utf8(flag + ": " + key, value);  // host paths are bytes
      share[known->second] = value;
    }
  }
  for (const char* required : {"tag", "path"})
    if (!share.contains(required))
      throw UsageError(flag + ": " + required + "=" + (required[0] == 't' ? "NAME" : "DIR") +
                       " is required");
  if (!share.contains("fs_id")) share["fs_id"] = "fs" + std::to_string(config.fs.size());
  const std::string id = share["fs_id"];
  if (std::any_of(config.fs.begin(), config.fs.end(),
                  [&](const FsConfig& s) { return s.fs_id == id; }))
    throw UsageError(flag + ": id=" + id + " is already used by another share");
  try {
    api::apply_fs(config, id, share, "--fs");
  } catch (const api::FieldError& e) {
    const auto* key = std::find_if(std::begin(kKeys), std::end(kKeys),
                                   [&](const auto& k) { return e.field() == k.second; });
    const std::string prefix = "--fs: " + e.field() + ": ";
    const std::string what = e.what();
    throw UsageError(flag + ": " + (key == std::end(kKeys) ? e.field() : key->first) + ": " +
                     what.substr(std::min(prefix.size(), what.size())));
  }
}

CliCommand parse_cli(int argc, const char* const* argv) {
  CliCommand cmd;
  CLI::App app{"Kiln: a KVM virtual machine monitor for microVMs", "kiln"};
  app.set_version_flag("--version", std::string("kiln ") + KILN_VERSION);
  app.require_subcommand(0, 1);
  app.footer(
      "Without a subcommand: --api-sock PATH serves the Firecracker-compatible API and boots on\n"
      "PUT /actions InstanceStart; --config-file vm.json boots that configuration at once.");
  CLI::Option* log_level_opt =
      app.add_option("--log-level", cmd.log_level, "Log level: error, warn, info, debug, trace")
          ->check(CLI::IsMember({"off", "error", "warn", "info", "debug", "trace"}))
          ->capture_default_str();
  std::string config_file;
  app.add_option("--api-sock", cmd.api_socket,
                 "Serve the management API on this Unix socket (created with mode 0600)");
  app.add_option("--config-file", config_file,
                 "Boot from Firecracker's JSON configuration (boot-source, machine-config, "
                 "drives, ...)");

  CLI::App* run =
      app.add_subcommand("run", "Boot a guest kernel with its console on this terminal");
  run->footer(kRunFooter);
  VmConfig flags;
  std::string toml_file;
  run->add_option("--config", toml_file,
                  "TOML configuration file ([boot-source], [machine-config], [[drives]]); "
                  "flags given here override its values");
  auto* kernel =
      run->add_option("--kernel", flags.kernel_path,
                      "Guest kernel: an ELF vmlinux or a bzImage (64-bit boot protocol >= 2.12)");
  auto* initrd =
      run->add_option("--initrd", flags.initrd_path, "Initial ramdisk loaded next to the kernel");
  auto* cmdline =
      run->add_option("--cmdline", flags.cmdline, "Kernel command line")->capture_default_str();
  auto* cpus = run->add_option("--cpus", flags.vcpus,
                               "Number of vCPUs (1 to 254, what the MP table describes, and at "
                               "most the host's KVM limit)")
                   ->check(CLI::Range(1u, 1024u))
                   ->capture_default_str();
  auto* memory = run->add_option("--memory", flags.memory_mib, "Guest RAM in MiB (16 to 1048576)")
                     ->check(CLI::Range(uint64_t{16}, uint64_t{1} << 20))
                     ->capture_default_str();
  std::string huge_pages;
  auto* huge = run->add_option("--huge-pages", huge_pages,
                               "Back guest RAM with None (4 KiB pages, the default), Transparent "
                               "(transparent huge pages) or 2M (hugetlbfs pages reserved on the "
                               "host beforehand; --memory a multiple of 2)");
  std::vector<std::string> disks;
  std::string rootfs;
  run->add_option("--disk", disks,
                  "virtio-blk drive from a raw image: PATH[,ro][,id=NAME] (repeatable; the "
                  "guest sees /dev/vda, /dev/vdb, ... in order)");
  run->add_option("--rootfs", rootfs,
                  "Root file system image: becomes the first drive (/dev/vda) and adds "
                  "'root=/dev/vda rw' to the command line");
  std::string vsock;
  run->add_option("--vsock", vsock,
                  "virtio-vsock device: cid=N,uds=PATH (guest CID >= 3; host clients connect to "
                  "PATH and write 'CONNECT <port>\\n'; guest connections to port P reach "
                  "PATH_P)");
  std::string rng;
  auto* rng_opt = run->add_option("--rng", rng,
                                  "Add a virtio-rng entropy device; --rng=BYTES_PER_SEC caps "
                                  "the bytes it hands out per second")
                      ->expected(0, 1);
  std::string console_mode;
  run->add_option("--console", console_mode,
                  "Which device carries the console: serial (ttyS0, default), virtio "
                  "(virtio-console, hvc0; the default command line then says console=hvc0) or "
                  "none")
      ->check(CLI::IsMember({"serial", "virtio", "none"}));
  std::vector<std::string> nets;
  run->add_option("--net", nets,
                  "virtio-net device on a host TAP: tap=NAME[,mac=xx:xx:xx:xx:xx:xx][,id=ID] "
                  "(repeatable; the TAP is created if missing; without mac= the guest picks one)");
  std::vector<std::string> shares;
  run->add_option("--fs", shares,
                  "Share a host directory over virtio-fs: tag=NAME,path=DIR[,ro][,cache=never|"
                  "auto|always][,id=ID][,queues=N][,allow-setid-and-devices] (repeatable; the "
                  "guest mounts it with 'mount -t virtiofs NAME DIR'; root on it: --cmdline "
                  "'... rootfstype=virtiofs root=NAME rw')");
  run->add_option("--api-sock", cmd.api_socket, "Also serve the management API on this socket");

  try {
    app.parse(argc, argv);
    VmConfig& c = cmd.config;
    if (run->parsed()) {
      if (!toml_file.empty()) api::apply_toml_config_file(c, toml_file);
      if (kernel->count()) c.kernel_path = flags.kernel_path;
      if (initrd->count()) c.initrd_path = flags.initrd_path;
      if (cmdline->count()) c.cmdline = flags.cmdline;
      // The API's boot_args is a JSON string: a command line is text (host paths may be bytes).
      api::require_utf8("--cmdline", c.cmdline);
      if (cpus->count()) c.vcpus = flags.vcpus;
      if (memory->count() || huge->count()) {
        // Through the API's machine-config rules, which check the two together.
        nlohmann::json patch = nlohmann::json::object();
        if (memory->count()) patch["mem_size_mib"] = flags.memory_mib;
        if (huge->count()) patch["huge_pages"] = huge_pages;
        try {
          api::apply_machine_config(c, patch, true);
        } catch (const api::FieldError& e) {
          throw UsageError(std::string(huge->count() ? "--huge-pages: " : "--memory: ") + e.what());
        }
      }
      if (!rootfs.empty()) {
        std::erase_if(c.drives, [](const DriveConfig& d) { return d.is_root; });
        c.drives.insert(c.drives.begin(), DriveConfig{rootfs, false, "rootfs", true});
      }
      for (const std::string& d : disks) c.drives.push_back(parse_drive_spec(d));
      if (!vsock.empty()) c.vsock = parse_vsock_spec(vsock);
      if (rng_opt->count()) c.entropy = parse_rng_spec(rng);
      if (!console_mode.empty()) api::apply_console(c, {{"mode", console_mode}});
      for (const std::string& n : nets) add_net_spec(c, n);
      for (const std::string& s : shares) add_fs_spec(c, s);
      if (c.kernel_path.empty())
        throw UsageError("kiln run: --kernel is required (or kernel_image_path in --config)");
      struct stat st {};
      if (::stat(c.kernel_path.c_str(), &st) != 0)
        throw UsageError(errno_message("--kernel " + c.kernel_path));
    } else if (!config_file.empty()) {
      api::apply_json_config_file(c, config_file);
    } else if (!cmd.api_socket.empty()) {
      cmd.start_now = false;
    } else {
      throw CLI::CallForHelp();
    }
    // Given on the command line, --log-level is the VM's logger level too (over a config
    // file's), so the level the user asked for still holds once the VM starts.
    if (log_level_opt->count()) c.logger.level = logger_level_name(cmd.log_level);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help, version or the error
    cmd.action = CliCommand::Action::kExit;
    cmd.exit_code = rc == 0 ? 0 : kExitUsage;
    return cmd;
  } catch (const std::exception& e) {  // UsageError, and anything a library throws on odd input
    std::cerr << "kiln: " << e.what() << "\n";
    cmd.action = CliCommand::Action::kExit;
    cmd.exit_code = kExitUsage;
    return cmd;
  }
  cmd.action = CliCommand::Action::kRun;
  return cmd;
}

}  // namespace kiln
