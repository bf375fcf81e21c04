#include "api/cli.h"

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <utility>
#include <vector>

#include "api/config_files.h"
#include "api/json_fields.h"
#include "api/utf8.h"
#include "api/vm_json.h"
#include "base/error.h"
#include "base/stop.h"
#include "vmm/vm_config_ops.h"

namespace kiln {

namespace {

// A rate flag's value (--rng=, bw=, ops=, rx_bw=, ...): N `unit` (per second): a bucket of N
// refilled every second (so up to N may go at once). `what` names the flag in the error.
TokenBucketConfig per_second_bucket(const std::string& value, const std::string& what,
                                    const std::string& unit) {
  uint64_t rate = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), rate);
  TokenBucketConfig bucket{rate, 0, 1000};
  // The bounds of a TokenBucket (the API's rate_limiter.bandwidth.size).
  if (ec != std::errc() || end != value.data() + value.size() || validate(bucket))
    throw UsageError(what + ": must be a number of " + unit + " between 1 and 2^63-1");
  return bucket;
}

// --rng or --rng=BYTES_PER_SEC.
EntropyConfig parse_rng_spec(const std::string& spec) {
  EntropyConfig entropy;
  if (spec.empty()) return entropy;
  entropy.bandwidth = per_second_bucket(spec, "--rng=" + spec, "bytes per second");
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
      // An empty id= is an id that is not one (without id=, the drive has none).
      if (auto problem = resource_id_problem(drive.id))
        throw UsageError("--disk " + spec + ": id: " + *problem);
    } else if (part.rfind("bw=", 0) == 0) {
      drive.rate_limiter.bandwidth =
          per_second_bucket(part.substr(3), "--disk " + spec + ": " + part, "bytes per second");
    } else if (part.rfind("ops=", 0) == 0) {
      drive.rate_limiter.ops =
          per_second_bucket(part.substr(4), "--disk " + spec + ": " + part, "requests per second");
    } else {
      throw UsageError("--disk " + spec + ": unknown option '" + part +
                       "' (expected ro, id=NAME, bw=BYTES_PER_SEC or ops=REQUESTS_PER_SEC)");
    }
  }
  // The drive's own rules, as for PUT /drives and the config files.
  if (auto p = validate(drive))
    throw UsageError("--disk " + spec + ": " + (p->field == "drive_id" ? "id" : "path") + ": " +
                     p->problem);
  return drive;
}

BalloonConfig parse_balloon_spec(const std::string& spec, uint64_t memory_mib) {
  const std::string flag = "--balloon " + spec + ": ";
  // A whole decimal number (no sign, no suffix) or nullopt.
  auto number = [](const std::string& s) -> std::optional<uint64_t> {
    uint64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
  };
  BalloonConfig b;
  bool first = true;
  for (const std::string& part : split_commas(spec)) {
    if (std::exchange(first, false)) {
      const auto mib = number(part);
      if (!mib) throw UsageError(flag + "the size '" + part + "' is not a number of MiB");
      b.amount_mib = *mib;
    } else if (part == "deflate_on_oom") {
      b.deflate_on_oom = true;
    } else if (part == "reporting") {
      b.free_page_reporting = true;
    } else if (part.rfind("stats=", 0) == 0) {
      const auto s = number(part.substr(6));
      if (!s || *s == 0 || *s > BalloonConfig::kMaxStatsIntervalS)
        throw UsageError(flag + part + ": must be a number of seconds between 1 and " +
                         std::to_string(BalloonConfig::kMaxStatsIntervalS));
      b.stats_polling_interval_s = static_cast<uint32_t>(*s);
    } else {
      throw UsageError(flag + "unknown option '" + part +
                       "' (expected deflate_on_oom, stats=SECONDS or reporting)");
    }
  }
  if (auto p = validate(b, memory_mib)) throw UsageError(flag + p->field + ": " + p->problem);
  return b;
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
  if (auto p = validate(vsock))
    throw UsageError(flag + (p->field == "guest_cid" ? "cid " : "uds ") + p->problem);
  return vsock;
}

void add_disk_spec(VmConfig& config, const std::string& spec) {
  const DriveConfig drive = parse_drive_spec(spec);
  // The API replaces a drive given twice; two flags for one id are a mistake.
  if (!drive.id.empty() && std::any_of(config.drives.begin(), config.drives.end(),
                                       [&](const DriveConfig& d) { return d.id == drive.id; }))
    throw UsageError("--disk " + spec + ": id: drive \"" + drive.id +
                     "\" is already given (by another --disk, --rootfs or the config file)");
  config.drives.push_back(drive);
}

void add_net_spec(VmConfig& config, const std::string& spec) {
  const std::string flag = "--net " + spec;
  NetConfig net;
  net.iface_id = "net" + std::to_string(config.nets.size());
  std::optional<std::string> tap, mac, id, rx_bw, rx_ops, tx_bw, tx_ops;
  for (const std::string& part : split_commas(spec)) {
    const size_t eq = part.find('=');
    const std::string key = part.substr(0, eq),
                      value = eq == std::string::npos ? "" : part.substr(eq + 1);
    if (eq == std::string::npos || value.empty())
      throw UsageError(flag + ": '" + part + "' is not KEY=VALUE (tap=NAME, mac=MAC or id=ID)");
    std::optional<std::string>* slot = key == "tap"      ? &tap
                                       : key == "mac"    ? &mac
                                       : key == "id"     ? &id
                                       : key == "rx_bw"  ? &rx_bw
                                       : key == "rx_ops" ? &rx_ops
                                       : key == "tx_bw"  ? &tx_bw
                                       : key == "tx_ops" ? &tx_ops
                                                         : nullptr;
    if (!slot)
      throw UsageError(flag + ": unknown option '" + key +
                       "' (expected tap=, mac=, id=, rx_bw=, rx_ops=, tx_bw= or tx_ops=)");
    if (*slot) throw UsageError(flag + ": " + key + "= given twice");
    api::require_utf8(flag + ": " + key, value);
    *slot = value;
  }
  if (!tap) throw UsageError(flag + ": tap=NAME is required");
  net.host_dev_name = *tap;
  if (id) net.iface_id = *id;
  if (std::any_of(config.nets.begin(), config.nets.end(),
                  [&](const NetConfig& n) { return n.iface_id == net.iface_id; }))
    throw UsageError(flag + ": id=" + net.iface_id + " is already used by another interface");
  // The interface's own rules and those against the others, as for PUT /network-interfaces;
  // named by the flag's keys, not the API's fields.
  auto fail = [&](const std::string& field, const std::string& problem) {
    const std::string key = field == "host_dev_name" ? "tap" : field == "guest_mac" ? "mac" : "id";
    return UsageError(flag + ": " + key + ": " + problem);
  };
  if (auto p = validate(net)) throw fail(p->field, p->problem);  // id and tap, before mac
  if (mac) {
    net.guest_mac = MacAddress::parse(*mac);
    if (!net.guest_mac) throw fail("guest_mac", "\"" + *mac + "\" is not a MAC xx:xx:xx:xx:xx:xx");
  }
  auto bucket = [&](const std::optional<std::string>& value, const char* key, const char* unit) {
    return value ? std::optional(per_second_bucket(*value, flag + ": " + key + "=" + *value, unit))
                 : std::nullopt;
  };
  net.rx_rate_limiter = {bucket(rx_bw, "rx_bw", "bytes per second"),
                         bucket(rx_ops, "rx_ops", "frames per second")};
  net.tx_rate_limiter = {bucket(tx_bw, "tx_bw", "bytes per second"),
                         bucket(tx_ops, "tx_ops", "frames per second")};
  if (auto p = add_network_interface(config, net)) throw fail(p->field, p->problem);
}

void add_fs_spec(VmConfig& config, const std::string& spec) {
  const std::string flag = "--fs " + spec;
  // Flag keys <-> the share object's fields, in which validate() and add_fs() name problems.
  static const std::pair<const char*, const char*> kKeys[] = {
      {"tag", "tag"},
      {"path", "path"},
      {"id", "fs_id"},
      {"ro", "read_only"},
      {"cache", "cache"},
      {"queues", "num_request_queues"},
      {"allow-setid-and-devices", "allow_setid_and_devices"}};
  auto fail = [&](const std::string& field, const std::string& problem) {
    const auto* key = std::find_if(std::begin(kKeys), std::end(kKeys),
                                   [&](const auto& k) { return field == k.second; });
    return UsageError(flag + ": " + (key == std::end(kKeys) ? field : key->first) + ": " + problem);
  };
  FsConfig fs;
  std::vector<std::string> given;
  for (const std::string& part : split_commas(spec)) {
    const size_t eq = part.find('=');
    const std::string key = part.substr(0, eq),
                      value = eq == std::string::npos ? "" : part.substr(eq + 1);
    if (std::none_of(std::begin(kKeys), std::end(kKeys),
                     [&](const auto& k) { return key == k.first; }))
      throw UsageError(flag + ": unknown option '" + part +
                       "' (expected tag=, path=, id=, cache=, queues=, ro or "
                       "allow-setid-and-devices)");
    const bool is_switch = key == "ro" || key == "allow-setid-and-devices";
    if (is_switch != (eq == std::string::npos) || (!is_switch && value.empty()))
      throw UsageError(flag + ": '" + part + "': " +
                       (is_switch ? key + " takes no value" : "expected " + key + "=VALUE"));
    if (std::find(given.begin(), given.end(), key) != given.end())
      throw UsageError(flag + ": " + key + " given twice");
    given.push_back(key);
    if (key != "path") api::require_utf8(flag + ": " + key, value);  // host paths are bytes
    if (key == "tag") {
      fs.tag = value;
    } else if (key == "path") {
      fs.path = value;
    } else if (key == "id") {
      fs.fs_id = value;
    } else if (key == "ro") {
      fs.read_only = true;
    } else if (key == "allow-setid-and-devices") {
      fs.allow_setid_and_devices = true;
    } else if (key == "cache") {
      const char* const kModes[] = {"never", "auto", "always"};  // FsCacheMode's order
      const auto* mode = std::find(std::begin(kModes), std::end(kModes), value);
      if (mode == std::end(kModes))
        throw fail("cache", "'" + value + "' is not never, auto or always");
      fs.cache = static_cast<FsCacheMode>(mode - std::begin(kModes));
    } else {  // queues
      uint64_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size())
        throw fail("num_request_queues", "'" + value + "' is not a number");
      fs.num_request_queues = static_cast<uint32_t>(std::min<uint64_t>(n, UINT32_MAX));
    }
  }
  if (fs.tag.empty()) throw UsageError(flag + ": tag=NAME is required");
  if (fs.path.empty()) throw UsageError(flag + ": path=DIR is required");
  if (fs.fs_id.empty()) fs.fs_id = "fs" + std::to_string(config.fs.size());
  if (std::any_of(config.fs.begin(), config.fs.end(),
                  [&](const FsConfig& s) { return s.fs_id == fs.fs_id; }))
    throw UsageError(flag + ": id=" + fs.fs_id + " is already used by another share");
  // The share's own rules and those against the others, as for PUT /fs/{fs_id}.
  if (auto p = add_fs(config, fs)) throw fail(p->field, p->problem);
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

  request::LoadSnapshot restore;
  auto* restore_opt = app.add_option("--restore", restore.snapshot_path,
                                     "Start from this snapshot's state file (PUT /snapshot/create "
                                     "wrote it) instead of booting; needs --mem");
  auto* mem_opt = app.add_option("--mem", restore.mem_file_path,
                                 "With --restore: the snapshot's memory file (mapped "
                                 "copy-on-write: it is never written)");
  std::string uffd_socket;
  auto* uffd_opt = app.add_option("--uffd", uffd_socket,
                                  "With --restore, instead of --mem: a page-fault handler "
                                  "listening on this Unix socket serves the memory "
                                  "(Firecracker's Uffd backend)");
  bool paused = false;
  app.add_flag("--paused", paused,
               "With --restore: stay paused until PATCH /vm Resumed (the default is to run at "
               "once)");
  app.add_flag("--track-dirty-pages", restore.track_dirty_pages,
               "With --restore: track dirty pages, for Diff snapshots");
  app.add_flag("--clock-realtime", restore.clock_realtime,
               "With --restore: advance the guest's kvmclock by the time since the snapshot");
  std::vector<std::string> net_overrides;
  app.add_option("--net-override", net_overrides,
                 "With --restore: IFACE_ID=TAP puts the snapshot's interface IFACE_ID on another "
                 "TAP (repeatable; each clone needs its own)");
  std::vector<std::string> drive_overrides;
  app.add_option("--drive-override", drive_overrides,
                 "With --restore: DRIVE_ID=PATH restores drive DRIVE_ID on another image of the "
                 "same size (a clone's copy of the disk; repeatable)");
  std::vector<std::string> fs_overrides;
  app.add_option("--fs-override", fs_overrides,
                 "With --restore: FS_ID=DIR restores virtio-fs share FS_ID on another host "
                 "directory (a clone's copy; repeatable)");
  std::string vsock_override;
  app.add_option("--vsock-override", vsock_override,
                 "With --restore: the vsock device's Unix socket path (each clone needs its own)");
  mem_opt->needs(restore_opt);
  uffd_opt->needs(restore_opt);
  mem_opt->excludes(uffd_opt);
  CLI::App* snapshot = app.add_subcommand("snapshot", "Work with snapshot files");
  snapshot->require_subcommand(1);
  CLI::App* rebase = snapshot->add_subcommand(
      "rebase",
      "Merge a Diff snapshot's memory file onto the memory file of the snapshot before it (as "
      "Firecracker's rebase-snap); restore the Diff's state file with the merged file");
  rebase->add_option("--base-file", cmd.rebase_base_file, "The earlier memory file (written)")
      ->required();
  rebase->add_option("--diff-file", cmd.rebase_diff_file, "The Diff snapshot's memory file")
      ->required();
  CLI::App* create = snapshot->add_subcommand(
      "create",
      "Pause a running VM through its API socket and snapshot it (PATCH /vm Paused, PUT "
      "/snapshot/create); it stays paused unless --resume");
  auto& sc = cmd.snapshot_create;
  create->add_option("--api-sock", sc.api_socket, "The VM's API socket")->required();
  create->add_option("--snapshot-path", sc.create.snapshot_path, "The state file to write")
      ->required();
  create->add_option("--mem-file-path", sc.create.mem_file_path, "The memory file to write")
      ->required();
  std::string snapshot_type = "Full";
  create
      ->add_option("--type", snapshot_type,
                   "Full (every page) or Diff (pages written since the last snapshot; needs "
                   "track_dirty_pages)")
      ->check(CLI::IsMember({"Full", "Diff"}))
      ->capture_default_str();
  create->add_flag("--resume", sc.resume, "Resume the VM once the snapshot is written");
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
                  "virtio-blk drive from a raw image: PATH[,ro][,id=NAME][,bw=BYTES_PER_SEC]"
                  "[,ops=REQUESTS_PER_SEC] (repeatable; the guest sees /dev/vda, /dev/vdb, ... "
                  "in order; bw=/ops= rate-limit it, PATCH /drives changes that)");
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
                  "virtio-net device on a host TAP: tap=NAME[,mac=xx:xx:xx:xx:xx:xx][,id=ID]"
                  "[,rx_bw=|tx_bw=BYTES_PER_SEC][,rx_ops=|tx_ops=FRAMES_PER_SEC] (repeatable; the "
                  "TAP is created if missing; without mac= the guest picks one)");
  std::vector<std::string> shares;
  run->add_option("--fs", shares,
                  "Share a host directory over virtio-fs: tag=NAME,path=DIR[,ro][,cache=never|"
                  "auto|always][,id=ID][,queues=N][,allow-setid-and-devices] (repeatable; the "
                  "guest mounts it with 'mount -t virtiofs NAME DIR'; root on it: --cmdline "
                  "'... rootfstype=virtiofs root=NAME rw')");
  std::string balloon;
  auto* balloon_opt = run->add_option(
      "--balloon", balloon,
      "virtio-balloon device: MIB[,deflate_on_oom][,stats=SECONDS][,reporting] (the "
      "guest hands MIB of its memory back to the host; PATCH /balloon changes it; "
      "stats= polls the guest's memory figures, GET /balloon/statistics; reporting: "
      "the guest reports free pages, which go back too)");
  run->add_option("--api-sock", cmd.api_socket, "Also serve the management API on this socket");

  try {
    app.parse(argc, argv);
    VmConfig& c = cmd.config;
    if (rebase->parsed()) {
      cmd.action = CliCommand::Action::kRebase;
      return cmd;
    }
    if (create->parsed()) {
      sc.create.type =
          snapshot_type == "Diff" ? request::SnapshotType::kDiff : request::SnapshotType::kFull;
      cmd.action = CliCommand::Action::kSnapshotCreate;
      return cmd;
    }
    if (run->parsed()) {
      if (!toml_file.empty()) api::apply_toml_config_file(c, toml_file);
      if (kernel->count()) c.kernel_path = flags.kernel_path;
      if (initrd->count()) c.initrd_path = flags.initrd_path;
      if (cmdline->count()) c.cmdline = flags.cmdline;
      // The API's boot_args is a JSON string: a command line is text (host paths may be bytes).
      api::require_utf8("--cmdline", c.cmdline);
      if (cpus->count()) c.vcpus = flags.vcpus;
      if (memory->count() || huge->count()) {
        // Through machine-config's rules (as a PATCH), which check the two together.
        const std::string flag = huge->count() ? "--huge-pages: " : "--memory: ";
        MachineConfigUpdate patch;
        if (memory->count()) patch.memory_mib = flags.memory_mib;
        try {
          if (huge->count()) patch.huge_pages = api::parse_huge_pages(huge_pages, "machine-config");
          api::check("machine-config", apply_machine_config(c, patch, true));
        } catch (const api::FieldError& e) {
          throw UsageError(flag + e.what());
        }
      }
      if (!rootfs.empty()) {
        std::erase_if(c.drives, [](const DriveConfig& d) { return d.is_root; });
        c.drives.insert(c.drives.begin(), DriveConfig{rootfs, false, "rootfs", true});
      }
      for (const std::string& d : disks) add_disk_spec(c, d);
      if (!vsock.empty()) c.vsock = parse_vsock_spec(vsock);
      if (rng_opt->count()) c.entropy = parse_rng_spec(rng);
      if (!console_mode.empty()) set_console(c, api::parse_console({{"mode", console_mode}}));
      for (const std::string& n : nets) add_net_spec(c, n);
      for (const std::string& s : shares) add_fs_spec(c, s);
      if (balloon_opt->count()) c.balloon = parse_balloon_spec(balloon, c.memory_mib);
      if (c.kernel_path.empty())
        throw UsageError("kiln run: --kernel is required (or kernel_image_path in --config)");
      struct stat st {};
      if (::stat(c.kernel_path.c_str(), &st) != 0)
        throw UsageError(errno_message("--kernel " + c.kernel_path));
    } else if (restore_opt->count()) {
      if (!config_file.empty())
        throw UsageError("--restore: the snapshot has its configuration; drop --config-file");
      if (!mem_opt->count() && !uffd_opt->count())
        throw UsageError("--restore: give the memory: --mem FILE or --uffd SOCKET");
      if (uffd_opt->count()) {
        restore.mem_file_path = uffd_socket;
        restore.uffd = true;
      }
      restore.resume_vm = !paused;
      for (const std::string& o : net_overrides) {
        const size_t eq = o.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == o.size() || o.size() - eq - 1 > 15)
          throw UsageError("--net-override " + o + ": expected IFACE_ID=TAP (TAP 1 to 15 bytes)");
        restore.network_overrides.push_back({o.substr(0, eq), o.substr(eq + 1)});
      }
      for (const std::string& o : drive_overrides) {
        const size_t eq = o.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == o.size())
          throw UsageError("--drive-override " + o + ": expected DRIVE_ID=PATH");
        restore.drive_overrides.push_back({o.substr(0, eq), o.substr(eq + 1)});
      }
      for (const std::string& o : fs_overrides) {
        const size_t eq = o.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == o.size())
          throw UsageError("--fs-override " + o + ": expected FS_ID=DIR");
        restore.fs_overrides.push_back({o.substr(0, eq), o.substr(eq + 1)});
      }
      if (!vsock_override.empty()) restore.vsock_uds_path = vsock_override;
      cmd.restore = restore;
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
