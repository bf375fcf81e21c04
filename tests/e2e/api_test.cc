// End-to-end tests of the management API against Kiln's own OpenAPI description: every
// endpoint, success and error cases, before boot (everywhere) and after boot (with KVM).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "tests/e2e/api_client.h"
#include "tests/e2e/e820.h"
#include "tests/e2e/kiln_process.h"
#include "tests/support/net_namespace.h"

namespace kiln::e2e {
namespace {

using nlohmann::json;

class ApiTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> extra = {}) {
    socket_ = temp_socket_path("kiln-api");
    std::vector<std::string> args = {"--api-sock", socket_};
    args.insert(args.end(), extra.begin(), extra.end());
    kiln_ = std::make_unique<KilnProcess>(args);
    ASSERT_TRUE(wait_for_socket(socket_, 20)) << kiln_->err();
  }
  void TearDown() override {
    if (kiln_) {
      kiln_->signal(SIGTERM);
      kiln_->wait(20);
    }
  }
  // Sends a request, checks it and the reply against the description, returns the reply.
  ApiResponse call(const std::string& method, const std::string& path, const std::string& tmpl,
                   const json& body = nullptr, bool valid_request = true) {
    if (!body.is_null() && valid_request) {
      // Requests meant to be valid are held to the documented request schema too.
      const std::string m = openapi_.check_request(method, tmpl, body);
      EXPECT_TRUE(m.empty()) << method << " " << path << ": " << m;
    }
    ApiResponse r = api_request(socket_,
                                method == "get"   ? "GET"
                                : method == "put" ? "PUT"
                                                  : "PATCH",
                                path, body.is_null() ? "" : body.dump());
    const std::string mismatch = openapi_.check(method, tmpl, r);
    EXPECT_TRUE(mismatch.empty()) << method << " " << path << " -> " << r.status << " "
                                  << r.raw_body << ": " << mismatch;
    return r;
  }
  std::string fault(const ApiResponse& r) {
    return r.body.is_object() && r.body.contains("fault_message")
               ? r.body["fault_message"].get<std::string>()
               : "";
  }

  OpenApi openapi_;
  std::string socket_;
  std::unique_ptr<KilnProcess> kiln_;
};

TEST_F(ApiTest, EveryPreBootEndpointSucceedsAndFailsAsDescribed) {
  start();
  EXPECT_EQ(call("get", "/", "/").body["state"], "Not started");
  EXPECT_EQ(call("get", "/version", "/version").status, 200);

  EXPECT_EQ(
      call("put", "/machine-config", "/machine-config", {{"vcpu_count", 2}, {"mem_size_mib", 256}})
          .status,
      204);
  EXPECT_EQ(call("patch", "/machine-config", "/machine-config", {{"mem_size_mib", 512}}).status,
            204);
  json mc = call("get", "/machine-config", "/machine-config").body;
  EXPECT_EQ(mc["vcpu_count"], 2);
  EXPECT_EQ(mc["mem_size_mib"], 512);
  auto bad_type = call("put", "/machine-config", "/machine-config",
                       {{"vcpu_count", "two"}, {"mem_size_mib", 256}}, false);
  EXPECT_EQ(bad_type.status, 400);
  EXPECT_NE(fault(bad_type).find("vcpu_count"), std::string::npos) << fault(bad_type);
  auto unknown = call("patch", "/machine-config", "/machine-config", {{"vcpus", 2}}, false);
  EXPECT_EQ(unknown.status, 400);
  auto range =
      call("put", "/machine-config", "/machine-config", {{"vcpu_count", 0}, {"mem_size_mib", 256}});
  EXPECT_EQ(range.status, 400);
  EXPECT_EQ(call("get", "/machine-config", "/machine-config").body["vcpu_count"], 2);  // unchanged

  EXPECT_EQ(call("put", "/boot-source", "/boot-source",
                 {{"kernel_image_path", guest_path("hello")}, {"boot_args", "console=ttyS0"}})
                .status,
            204);
  auto missing = call("put", "/boot-source", "/boot-source", {{"boot_args", "x"}}, false);
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(fault(missing).find("kernel_image_path"), std::string::npos);

  TempFile image(std::string(1 << 16, '\0'));
  json root = {{"drive_id", "rootfs"},
               {"path_on_host", image.path()},
               {"is_root_device", true},
               {"is_read_only", false}};
  EXPECT_EQ(call("put", "/drives/rootfs", "/drives/{drive_id}", root).status, 204);
  root["path_on_host"] = "/nonexistent.img";  // image files are opened when the PUT arrives
  EXPECT_EQ(call("put", "/drives/rootfs", "/drives/{drive_id}", root).status, 400);
  root["path_on_host"] = image.path();
  json other_root = {
      {"drive_id", "data"}, {"path_on_host", image.path()}, {"is_root_device", true}};
  EXPECT_EQ(call("put", "/drives/data", "/drives/{drive_id}", other_root).status, 400);
  EXPECT_EQ(call("put", "/drives/other", "/drives/{drive_id}", root).status, 400);  // id mismatch
  EXPECT_EQ(call("patch", "/drives/rootfs", "/drives/{drive_id}",
                 {{"drive_id", "rootfs"}, {"path_on_host", "/y.img"}})
                .status,
            400);  // not booted

  const std::string net = "/network-interfaces/{iface_id}";
  json eth0 = {{"iface_id", "eth0"},
               {"host_dev_name", "kilntap0"},
               {"guest_mac", "52:54:00:12:34:56"},
               {"rx_rate_limiter", json::object()}};
  EXPECT_EQ(call("put", "/network-interfaces/eth0", net, eth0).status, 204);
  EXPECT_EQ(call("put", "/network-interfaces/eth0", net, eth0).status, 204);  // replaces itself
  auto mismatch = call("put", "/network-interfaces/eth1", net, eth0);
  EXPECT_EQ(mismatch.status, 400);
  EXPECT_NE(fault(mismatch).find("iface_id"), std::string::npos) << fault(mismatch);
  auto same_tap = call("put", "/network-interfaces/eth1", net,
                       {{"iface_id", "eth1"}, {"host_dev_name", "kilntap0"}});
  EXPECT_EQ(same_tap.status, 400);
  EXPECT_NE(
      fault(same_tap).find("Could not create the network device: TAP kilntap0 is already used"),
      std::string::npos)
      << fault(same_tap);
  auto same_mac = call(
      "put", "/network-interfaces/eth1", net,
      {{"iface_id", "eth1"}, {"host_dev_name", "kilntap1"}, {"guest_mac", "52:54:00:12:34:56"}});
  EXPECT_EQ(same_mac.status, 400);
  auto bad_mac = call("put", "/network-interfaces/eth1", net,
                      {{"iface_id", "eth1"}, {"host_dev_name", "kilntap1"}, {"guest_mac", "nope"}});
  EXPECT_EQ(bad_mac.status, 400);
  EXPECT_NE(fault(bad_mac).find("guest_mac"), std::string::npos) << fault(bad_mac);
  EXPECT_EQ(call("put", "/network-interfaces/eth1", net,
                 {{"iface_id", "eth1"}, {"host_dev_name", "kilntap1"}, {"speed", 10}}, false)
                .status,
            400);
  EXPECT_EQ(call("put", "/network-interfaces/eth1", net,
                 {{"iface_id", "eth1"}, {"host_dev_name", "kilntap1"}, {"mtu", 9000}})
                .status,
            204);
  EXPECT_EQ(call("patch", "/network-interfaces/eth0", net, {{"iface_id", "eth0"}}).status,
            400);  // not booted
  EXPECT_EQ(api_request(socket_, "GET", "/network-interfaces/eth0").status, 405);

  EXPECT_EQ(call("put", "/actions", "/actions", {{"action_type", "Reboot"}}, false).status, 400);
  EXPECT_EQ(call("put", "/actions", "/actions", {{"action_type", "SendCtrlAltDel"}}).status, 400);
  EXPECT_EQ(call("put", "/actions", "/actions", {{"action_type", "FlushMetrics"}}).status,
            400);  // a runtime action, as in Firecracker
  EXPECT_EQ(call("patch", "/vm", "/vm", {{"state", "Paused"}}).status, 400);
  EXPECT_EQ(call("patch", "/vm", "/vm", {{"state", "Sleeping"}}, false).status, 400);

  TempFile log(""), metrics(""), serial("");
  EXPECT_EQ(call("put", "/logger", "/logger", {{"log_path", log.path()}, {"level", "Info"}}).status,
            204);
  EXPECT_EQ(call("put", "/logger", "/logger", {{"level", "Loud"}}, false).status, 400);
  EXPECT_EQ(call("put", "/metrics", "/metrics", {{"metrics_path", metrics.path()}}).status, 204);
  EXPECT_EQ(call("put", "/metrics", "/metrics", {{"metrics_path", "/nonexistent/dir/m"}}).status,
            400);
  EXPECT_EQ(call("put", "/entropy", "/entropy", json::object()).status, 204);
  const json limited = {{"rate_limiter", {{"bandwidth", {{"size", 4096}, {"refill_time", 1000}}}}}};
  EXPECT_EQ(call("put", "/entropy", "/entropy", limited).status, 204);
  auto ops = call("put", "/entropy", "/entropy",
                  {{"rate_limiter", {{"ops", {{"size", 10}, {"refill_time", 1000}}}}}});
  EXPECT_EQ(ops.status, 400);
  EXPECT_NE(fault(ops).find("ops"), std::string::npos) << fault(ops);
  auto zero =
      call("put", "/entropy", "/entropy",
           {{"rate_limiter", {{"bandwidth", {{"size", 0}, {"refill_time", 1000}}}}}}, false);
  EXPECT_EQ(zero.status, 400);
  EXPECT_NE(fault(zero).find("size"), std::string::npos) << fault(zero);
  EXPECT_EQ(
      call("put", "/entropy", "/entropy", {{"rate_limiter", {{"bandwidth", 5}}}}, false).status,
      400);
  EXPECT_EQ(call("put", "/serial", "/serial", {{"serial_out_path", serial.path()}}).status, 204);
  EXPECT_EQ(call("put", "/actions", "/actions", {{"action_type", "FlushMetrics"}}).status, 400);

  json config = call("get", "/vm/config", "/vm/config").body;
  EXPECT_EQ(config["machine-config"]["mem_size_mib"], 512);
  EXPECT_EQ(config["drives"][0]["drive_id"], "rootfs");
  EXPECT_EQ(config["boot-source"]["boot_args"], "console=ttyS0");
  ASSERT_EQ(config["network-interfaces"].size(), 2u) << config.dump();
  EXPECT_EQ(config["network-interfaces"][0]["iface_id"], "eth0");
  EXPECT_EQ(config["network-interfaces"][0]["host_dev_name"], "kilntap0");
  EXPECT_EQ(config["network-interfaces"][0]["guest_mac"], "52:54:00:12:34:56");
  EXPECT_EQ(config["network-interfaces"][1]["mtu"], 9000);
  // The last accepted entropy request; the refused ones changed nothing.
  EXPECT_EQ(config["entropy"]["rate_limiter"]["bandwidth"]["size"], 4096) << config.dump();

  // Wrong paths, methods and bodies.
  EXPECT_EQ(api_request(socket_, "GET", "/nope").status, 404);
  EXPECT_EQ(api_request(socket_, "DELETE", "/machine-config").status, 405);
  EXPECT_EQ(api_request(socket_, "PUT", "/machine-config", "{not json").status, 400);
  EXPECT_EQ(api_request(socket_, "PUT", "/machine-config").status, 400);  // no body
  const std::string junk = raw_exchange(socket_, "THIS IS NOT HTTP\r\n\r\n");
  EXPECT_EQ(junk.rfind("HTTP/1.1 400", 0), 0u) << junk;
  EXPECT_NE(junk.find("fault_message"), std::string::npos) << junk;
  EXPECT_EQ(call("get", "/", "/").status, 200);  // still serving
}

TEST_F(ApiTest, VsockIsConfiguredBeforeBootAndValidated) {
  start();
  json none = call("get", "/vm/config", "/vm/config").body;
  EXPECT_TRUE(none["vsock"].is_null()) << none.dump();
  const char* dir = std::getenv("TMPDIR");
  const std::string uds = std::string(dir && *dir ? dir : "/tmp") + "/kiln-api-vsock.sock";
  EXPECT_EQ(call("put", "/vsock", "/vsock", {{"guest_cid", 3}, {"uds_path", uds}}).status, 204);
  EXPECT_EQ(call("put", "/vsock", "/vsock",
                 {{"guest_cid", 52}, {"uds_path", uds}, {"vsock_id", "vsock0"}})
                .status,
            204);  // a second PUT replaces the device
  json config = call("get", "/vm/config", "/vm/config").body;
  EXPECT_EQ(config["vsock"], json({{"guest_cid", 52}, {"uds_path", uds}, {"vsock_id", "vsock0"}}))
      << config.dump();

  struct Bad {
    json body;
    std::string word;
  } bad[] = {
      {{{"guest_cid", 2}, {"uds_path", uds}}, "guest_cid"},
      {{{"guest_cid", -5}, {"uds_path", uds}}, "guest_cid"},
      {{{"guest_cid", "three"}, {"uds_path", uds}}, "guest_cid"},
      {{{"uds_path", uds}}, "guest_cid"},
      {{{"guest_cid", 3}}, "uds_path"},
      {{{"guest_cid", 3}, {"uds_path", ""}}, "uds_path"},
      {{{"guest_cid", 3}, {"uds_path", "/nonexistent/dir/v.sock"}}, "/nonexistent/dir"},
      {{{"guest_cid", 3}, {"uds_path", uds}, {"cid", 3}}, "cid"},
  };
  for (const Bad& b : bad) {
    auto r = call("put", "/vsock", "/vsock", b.body, false);
    EXPECT_EQ(r.status, 400) << b.body.dump();
    EXPECT_NE(fault(r).find(b.word), std::string::npos) << b.body.dump() << ": " << fault(r);
  }
  // Rejected requests changed nothing.
  EXPECT_EQ(call("get", "/vm/config", "/vm/config").body["vsock"]["guest_cid"], 52);
  EXPECT_EQ(api_request(socket_, "GET", "/vsock").status, 405);
}

TEST_F(ApiTest, FsSharesAreConfiguredBeforeBootAndValidated) {
  start();
  EXPECT_FALSE(call("get", "/vm/config", "/vm/config").body.contains("fs"));  // Firecracker's keys
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/kiln-api-fs-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  const std::string route = "/fs/{fs_id}";
  json share = {{"fs_id", "share0"}, {"tag", "data"}, {"path", dir}, {"cache", "never"}};
  EXPECT_EQ(call("put", "/fs/share0", route, share).status, 204);
  share["read_only"] = true;
  EXPECT_EQ(call("put", "/fs/share0", route, share).status, 204);  // replaces itself
  EXPECT_EQ(call("put", "/fs/share1", route, {{"fs_id", "share1"}, {"tag", "root"}, {"path", dir}})
                .status,
            204);
  struct Bad {
    std::string id;
    json body;
    std::string word;
  } bad[] = {
      {"share2", {{"fs_id", "share2"}, {"tag", "data"}, {"path", dir}}, "tag: \"data\" is already"},
      {"share2", {{"fs_id", "other"}, {"tag", "x"}, {"path", dir}}, "fs_id"},
      {"share2", {{"fs_id", "share2"}, {"tag", std::string(37, 't')}, {"path", dir}}, "tag"},
      {"share2", {{"fs_id", "share2"}, {"tag", "x"}, {"path", "/nonexistent/kiln"}}, "path"},
      {"share2", {{"fs_id", "share2"}, {"tag", "x"}, {"path", dir}, {"cache", "x"}}, "cache"},
      {"share2",
       {{"fs_id", "share2"}, {"tag", "x"}, {"path", dir}, {"queue_size", 1024}},
       "queue_size"},
      {"share2", {{"fs_id", "share2"}, {"tag", "x"}}, "path"},
  };
  for (const Bad& b : bad) {
    auto r = call("put", "/fs/" + b.id, route, b.body, false);
    EXPECT_EQ(r.status, 400) << b.body.dump();
    EXPECT_NE(fault(r).find(b.word), std::string::npos) << b.body.dump() << ": " << fault(r);
  }
  json shown = call("get", "/vm/config", "/vm/config").body["fs"];
  ASSERT_EQ(shown.size(), 2u) << shown.dump();  // the refused requests changed nothing
  EXPECT_EQ(shown[0], json({{"fs_id", "share0"},
                            {"tag", "data"},
                            {"path", dir},
                            {"read_only", true},
                            {"cache", "never"},
                            {"allow_setid_and_devices", false},
                            {"num_request_queues", 1}}));
  EXPECT_EQ(shown[1]["tag"], "root");
  EXPECT_EQ(api_request(socket_, "PATCH", "/fs/share0", share.dump()).status, 405);
  EXPECT_EQ(api_request(socket_, "GET", "/fs/share0").status, 405);
  ::rmdir(dir.c_str());
}

TEST_F(ApiTest, HugePagesAreValidatedAndReported) {
  start();
  EXPECT_EQ(call("get", "/machine-config", "/machine-config").body["huge_pages"], "None");
  EXPECT_EQ(call("put", "/machine-config", "/machine-config",
                 {{"vcpu_count", 1}, {"mem_size_mib", 256}, {"huge_pages", "2M"}})
                .status,
            204);
  EXPECT_EQ(call("get", "/machine-config", "/machine-config").body["huge_pages"], "2M");
  // 2 MiB pages need an even size; the refused PATCH changes nothing.
  auto odd = call("patch", "/machine-config", "/machine-config", {{"mem_size_mib", 257}});
  EXPECT_EQ(odd.status, 400);
  EXPECT_NE(fault(odd).find("mem_size_mib"), std::string::npos) << fault(odd);
  EXPECT_EQ(call("get", "/machine-config", "/machine-config").body["mem_size_mib"], 256);
  auto bad = call("patch", "/machine-config", "/machine-config", {{"huge_pages", "1G"}}, false);
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(fault(bad).find("huge_pages"), std::string::npos) << fault(bad);
  EXPECT_EQ(
      call("patch", "/machine-config", "/machine-config", {{"huge_pages", "Transparent"}}).status,
      204);
  EXPECT_EQ(call("get", "/vm/config", "/vm/config").body["machine-config"]["huge_pages"],
            "Transparent");
  // A PUT without the field goes back to the default.
  call("put", "/machine-config", "/machine-config", {{"vcpu_count", 1}, {"mem_size_mib", 256}});
  EXPECT_EQ(call("get", "/machine-config", "/machine-config").body["huge_pages"], "None");
}

TEST_F(ApiTest, InstanceStartWithBadImageFailsAndStaysConfigurable) {
  start();
  // A missing file is refused when PUT /boot-source arrives (as Firecracker does)...
  auto missing =
      call("put", "/boot-source", "/boot-source", {{"kernel_image_path", "/nonexistent/vmlinux"}});
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(fault(missing).find("/nonexistent/vmlinux"), std::string::npos) << fault(missing);
  // ...a file that is no kernel, at InstanceStart.
  TempFile junk("not a kernel image");
  EXPECT_EQ(
      call("put", "/boot-source", "/boot-source", {{"kernel_image_path", junk.path()}}).status,
      204);
  auto r = call("put", "/actions", "/actions", {{"action_type", "InstanceStart"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(fault(r).find(junk.path()), std::string::npos) << fault(r);
  EXPECT_EQ(call("get", "/", "/").body["state"], "Not started");
}

TEST_F(ApiTest, SocketIsPrivateAndRemovedOnExit) {
  start();
  struct stat st {};
  ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  kiln_->signal(SIGTERM);
  EXPECT_EQ(kiln_->wait(20), 3);
  EXPECT_NE(::access(socket_.c_str(), F_OK), 0);
  kiln_.reset();
}

TEST(ApiSocket, ExistingFileIsRefused) {
  TempFile existing("not a socket");
  KilnRun r = run_kiln({"--api-sock", existing.path()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find(existing.path()), std::string::npos) << r.err;
  std::ifstream f(existing.path());
  std::string content;
  std::getline(f, content);
  EXPECT_EQ(content, "not a socket");  // untouched
}

// ---- After boot (needs KVM) ----

TEST_F(ApiTest, GettingStartedSequenceWithCurlBootsAGuest) {
  KILN_REQUIRE_KVM();
  TempFile disk(std::string(1 << 20, '\0'));
  start();
  auto curl = [&](const std::string& method, const std::string& path, const std::string& body) {
    const std::string cmd = "curl -s -f --unix-socket '" + socket_ + "' -X " + method +
                            " 'http://localhost" + path + "' -H 'Accept: application/json'" +
                            " -H 'Content-Type: application/json' -d '" + body + "'";
    return std::system(cmd.c_str());
  };
  EXPECT_EQ(curl("PUT", "/boot-source",
                 "{\"kernel_image_path\": \"" + guest_path("virtio_blk") +
                     "\", \"boot_args\": \"console=ttyS0 reboot=k panic=1\"}"),
            0);
  EXPECT_EQ(curl("PUT", "/drives/rootfs",
                 "{\"drive_id\": \"rootfs\", \"path_on_host\": \"" + disk.path() +
                     "\", \"is_root_device\": true, \"is_read_only\": false}"),
            0);
  EXPECT_EQ(curl("PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 256}"), 0);
  EXPECT_EQ(curl("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}"), 0);
  EXPECT_EQ(kiln_->wait(120), 0) << kiln_->out() << kiln_->err();
  EXPECT_NE(kiln_->out().find("VBLK dev=0 serial=rootfs"), std::string::npos) << kiln_->out();
  EXPECT_NE(kiln_->out().find("VBLK done devices=1"), std::string::npos) << kiln_->out();
  kiln_.reset();
}

// The KVM VM and vCPU 0 are made in the background while the API configures; the machine the
// guest gets is the one the last machine-config request said (vCPUs, memory), not the first.
TEST_F(ApiTest, MachineConfigChangedWhileThePreparedVmWaitsIsWhatBoots) {
  KILN_REQUIRE_KVM();
  start();
  call("put", "/boot-source", "/boot-source", {{"kernel_image_path", guest_path("e820")}});
  ASSERT_EQ(
      call("put", "/machine-config", "/machine-config", {{"vcpu_count", 2}, {"mem_size_mib", 256}})
          .status,
      204);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the prepared VM is made
  ASSERT_EQ(
      call("patch", "/machine-config", "/machine-config", {{"vcpu_count", 1}, {"mem_size_mib", 96}})
          .status,
      204);
  ASSERT_EQ(call("put", "/actions", "/actions", {{"action_type", "InstanceStart"}}).status, 204)
      << kiln_->err();
  ASSERT_EQ(kiln_->wait(60), 0) << kiln_->out() << kiln_->err();
  const auto entries = parse_e820(kiln_->out());
  ASSERT_FALSE(entries.empty()) << kiln_->out();
  EXPECT_EQ(e820_ram(entries), (96ull << 20) - (0x100000 - 0x9fc00)) << kiln_->out();
  kiln_.reset();
}

TEST_F(ApiTest, RuntimeEndpoints) {
  KILN_REQUIRE_KVM();
  TempFile disk(std::string(1 << 20, '\0')), disk2(std::string(2 << 20, '\0')), metrics("");
  start();
  call("put", "/boot-source", "/boot-source", {{"kernel_image_path", guest_path("serial_in")}});
  call("put", "/drives/data", "/drives/{drive_id}",
       {{"drive_id", "data"}, {"path_on_host", disk.path()}, {"is_root_device", false}});
  call("put", "/metrics", "/metrics", {{"metrics_path", metrics.path()}});
  ASSERT_EQ(call("put", "/actions", "/actions", {{"action_type", "InstanceStart"}}).status, 204)
      << kiln_->err();
  EXPECT_EQ(call("get", "/", "/").body["state"], "Running");

  // Pre-boot-only requests are refused after boot, saying why.
  auto late =
      call("put", "/machine-config", "/machine-config", {{"vcpu_count", 1}, {"mem_size_mib", 128}});
  EXPECT_EQ(late.status, 400);
  EXPECT_NE(fault(late).find("after starting"), std::string::npos) << fault(late);
  EXPECT_EQ(call("put", "/actions", "/actions", {{"action_type", "InstanceStart"}}).status, 400);
  EXPECT_EQ(
      call("put", "/vsock", "/vsock", {{"guest_cid", 3}, {"uds_path", "/tmp/late.sock"}}).status,
      400);

  EXPECT_EQ(call("patch", "/vm", "/vm", {{"state", "Paused"}}).status, 204);
  EXPECT_EQ(call("get", "/", "/").body["state"], "Paused");
  EXPECT_EQ(call("patch", "/vm", "/vm", {{"state", "Resumed"}}).status, 204);
  EXPECT_EQ(call("get", "/", "/").body["state"], "Running");

  EXPECT_EQ(call("patch", "/drives/data", "/drives/{drive_id}",
                 {{"drive_id", "data"}, {"path_on_host", disk2.path()}})
                .status,
            204);
  EXPECT_EQ(call("get", "/vm/config", "/vm/config").body["drives"][0]["path_on_host"],
            disk2.path());
  EXPECT_EQ(call("patch", "/drives/data", "/drives/{drive_id}",
                 {{"drive_id", "data"}, {"path_on_host", "/nonexistent.img"}})
                .status,
            400);
  EXPECT_EQ(call("patch", "/drives/nope", "/drives/{drive_id}",
                 {{"drive_id", "nope"}, {"path_on_host", disk2.path()}})
                .status,
            400);

  EXPECT_EQ(call("put", "/actions", "/actions", {{"action_type", "FlushMetrics"}}).status, 204);
  std::ifstream m(metrics.path());
  std::string line, last;
  while (std::getline(m, line)) last = line;
  const json counters = json::parse(last);
  EXPECT_GT(counters["vcpu"]["exits_io"].get<uint64_t>(), 0u) << last;
  EXPECT_GT(counters["api"]["requests"].get<uint64_t>(), 5u) << last;

  // The guest still runs after all this: it echoes a line, then resets (exit 0).
  for (int i = 0; i < 200 && kiln_->out().find("READY") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  kiln_->write_stdin("after api\n");
  EXPECT_EQ(kiln_->wait(60), 0) << kiln_->out() << kiln_->err();
  EXPECT_NE(kiln_->out().find("GOT:after api"), std::string::npos) << kiln_->out();
  kiln_.reset();
}

TEST_F(ApiTest, NetworkInterfaceWithABadTapFailsInstanceStart) {
  const std::string why = testsupport::in_new_netns([&] {
    start();
    call("put", "/boot-source", "/boot-source", {{"kernel_image_path", guest_path("hello")}});
    call("put", "/network-interfaces/eth0", "/network-interfaces/{iface_id}",
         {{"iface_id", "eth0"}, {"host_dev_name", "lo"}});
    auto r = call("put", "/actions", "/actions", {{"action_type", "InstanceStart"}});
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(fault(r).find("TAP lo: exists but is not a TAP"), std::string::npos) << fault(r);
    EXPECT_EQ(call("get", "/", "/").body["state"], "Not started");
  });
  if (!why.empty()) GTEST_SKIP() << "needs CAP_NET_ADMIN for a network namespace: " << why;
}

TEST_F(ApiTest, NetworkInterfaceEndpointsAfterBoot) {
  KILN_REQUIRE_KVM();
  const std::string why = testsupport::in_new_netns([&] {
    start();
    const std::string net = "/network-interfaces/{iface_id}";
    call("put", "/boot-source", "/boot-source", {{"kernel_image_path", guest_path("serial_in")}});
    call("put", "/network-interfaces/eth0", net,
         {{"iface_id", "eth0"}, {"host_dev_name", "kilntap0"}});
    ASSERT_EQ(call("put", "/actions", "/actions", {{"action_type", "InstanceStart"}}).status, 204)
        << kiln_->err();
    // Rate limiters change at runtime: {} changes nothing, a bucket is set, size 0 removes it.
    EXPECT_EQ(call("patch", "/network-interfaces/eth0", net,
                   {{"iface_id", "eth0"}, {"rx_rate_limiter", json::object()}})
                  .status,
              204);
    EXPECT_EQ(call("patch", "/network-interfaces/eth0", net,
                   {{"iface_id", "eth0"},
                    {"rx_rate_limiter", {{"bandwidth", {{"size", 1000}, {"refill_time", 100}}}}}})
                  .status,
              204);
    json nets = call("get", "/vm/config", "/vm/config").body["network-interfaces"];
    EXPECT_EQ(nets[0]["rx_rate_limiter"]["bandwidth"]["size"], 1000) << nets.dump();
    EXPECT_TRUE(nets[0]["tx_rate_limiter"].is_null()) << nets.dump();
    EXPECT_EQ(call("patch", "/network-interfaces/eth0", net,
                   {{"iface_id", "eth0"},
                    {"rx_rate_limiter", {{"bandwidth", {{"size", 0}, {"refill_time", 100}}}}},
                    {"tx_rate_limiter", {{"ops", {{"size", 10}, {"refill_time", 1000}}}}}})
                  .status,
              204);
    nets = call("get", "/vm/config", "/vm/config").body["network-interfaces"];
    EXPECT_TRUE(nets[0]["rx_rate_limiter"].is_null()) << nets.dump();
    EXPECT_EQ(nets[0]["tx_rate_limiter"]["ops"]["size"], 10) << nets.dump();
    const auto huge =
        call("patch", "/network-interfaces/eth0", net,
             {{"iface_id", "eth0"},
              {"tx_rate_limiter", {{"ops", {{"size", 1}, {"refill_time", uint64_t{1} << 62}}}}}});
    EXPECT_EQ(huge.status, 400);
    EXPECT_NE(fault(huge).find("network-interface.tx_rate_limiter.ops: refill_time"),
              std::string::npos)
        << fault(huge);
    EXPECT_EQ(call("patch", "/network-interfaces/eth9", net, {{"iface_id", "eth9"}}).status, 400);
    EXPECT_EQ(call("patch", "/network-interfaces/eth0", net,
                   {{"iface_id", "eth0"}, {"host_dev_name", "x"}}, false)
                  .status,
              400);
    EXPECT_EQ(call("patch", "/network-interfaces/eth0", net,
                   {{"iface_id", "eth0"}, {"tx_rate_limiter", 5}}, false)
                  .status,
              400);
    auto late = call("put", "/network-interfaces/eth1", net,
                     {{"iface_id", "eth1"}, {"host_dev_name", "kilntap1"}});
    EXPECT_EQ(late.status, 400);
    EXPECT_NE(fault(late).find("after starting"), std::string::npos) << fault(late);
    kiln_->signal(SIGTERM);
    kiln_->wait(20);
    kiln_.reset();
  });
  if (!why.empty()) GTEST_SKIP() << "needs CAP_NET_ADMIN for a network namespace: " << why;
}

// The line of the guest's output that starts with `prefix`, without the prefix.
std::string output_line(const std::string& out, const std::string& prefix) {
  const size_t at = out.find(prefix);
  if (at == std::string::npos) return "";
  const size_t begin = at + prefix.size();
  return out.substr(begin, out.find('\n', begin) - begin);
}

TEST_F(ApiTest, SendCtrlAltDelReachesTheGuestKeyboard) {
  KILN_REQUIRE_KVM();
  start();
  call("put", "/boot-source", "/boot-source", {{"kernel_image_path", guest_path("keyboard")}});
  ASSERT_EQ(call("put", "/actions", "/actions", {{"action_type", "InstanceStart"}}).status, 204);
  ASSERT_TRUE(kiln_->wait_for_output("KBD READY set2", 60)) << kiln_->out() << kiln_->err();
  const std::string probe = kiln_->out();
  EXPECT_EQ(output_line(probe, "selftest:"), " 55");
  EXPECT_EQ(output_line(probe, "reset:"), " fa aa");
  EXPECT_EQ(output_line(probe, "identify:"), " fa ab 83");
  EXPECT_EQ(output_line(probe, "enable:"), " fa");

  EXPECT_EQ(call("put", "/actions", "/actions", {{"action_type", "SendCtrlAltDel"}}).status, 204);
  ASSERT_TRUE(kiln_->wait_for_output("KBD READY set1", 60)) << kiln_->out();
  // Left Ctrl, left Alt, Delete pressed, then released, in scan code set 2; IRQ 1 arrived.
  EXPECT_EQ(output_line(kiln_->out(), "keys set2:"), " 14 11 e0 71 e0 f0 71 f0 11 f0 14");
  EXPECT_NE(output_line(kiln_->out(), "irqs: "), "0");

  // The guest turned on translation: the same keys arrive in set 1.
  EXPECT_EQ(call("put", "/actions", "/actions", {{"action_type", "SendCtrlAltDel"}}).status, 204);
  EXPECT_EQ(kiln_->wait(60), 0) << kiln_->out() << kiln_->err();
  EXPECT_EQ(output_line(kiln_->out(), "keys set1:"), " 1d 38 e0 53 e0 d3 b8 9d");
  const std::string out = kiln_->out();
  EXPECT_NE(output_line(out.substr(out.find("keys set1:")), "irqs: "), "0");
  kiln_.reset();
}

}  // namespace
}  // namespace kiln::e2e
