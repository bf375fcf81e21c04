// `kiln run --config vm.toml` and `kiln --config-file vm.json`: one configuration model, errors
// naming the file, line (TOML) and key, CLI flags overriding file values.
#include <gtest/gtest.h>

#include <regex>

#include "tests/e2e/kiln_process.h"

namespace kiln::e2e {
namespace {

TEST(ConfigFiles, TomlErrorsNameFileLineAndKey) {
  TempFile toml("[boot-source]\nkernel_image_path = \"" + guest_path("hello") +
                "\"\n\n[machine-config]\nvcpu_count = 1\nmem_size_mib = 128\nturbo = true\n");
  KilnRun r = run_kiln({"run", "--config", toml.path()});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find(toml.path() + ":7"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("turbo"), std::string::npos) << describe(r);

  TempFile wrong_type(
      "[machine-config]\nvcpu_count = \"2\"\nmem_size_mib = 128\n"
      "[boot-source]\nkernel_image_path = \"/k\"\n");
  r = run_kiln({"run", "--config", wrong_type.path()});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find(wrong_type.path() + ":2"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("vcpu_count"), std::string::npos) << describe(r);

  TempFile syntax("[boot-source\nkernel_image_path = 1\n");
  r = run_kiln({"run", "--config", syntax.path()});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find(syntax.path()), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find(" 1 | [boot-source"), std::string::npos) << describe(r);  // the line

  TempFile entropy("[boot-source]\nkernel_image_path = \"" + guest_path("hello") +
                   "\"\n[entropy.rate_limiter.bandwidth]\nsize = 0\nrefill_time = 1000\n");
  r = run_kiln({"run", "--config", entropy.path()});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find(entropy.path() + ":4"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("entropy.rate_limiter.bandwidth: size"), std::string::npos) << describe(r);

  r = run_kiln({"run", "--config", "/nonexistent/vm.toml"});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find("/nonexistent/vm.toml"), std::string::npos) << describe(r);
}

TEST(ConfigFiles, JsonErrorsNameFileAndKey) {
  TempFile json(
      "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"drives\": [{\"drive_id\": "
      "\"rootfs\", \"path_on_host\": \"/r\", \"is_root_device\": \"yes\"}]}");
  KilnRun r = run_kiln({"--config-file", json.path()});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find(json.path()), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("drives[0]: is_root_device"), std::string::npos) << describe(r);

  TempFile broken("{\"boot-source\": ");
  r = run_kiln({"--config-file", broken.path()});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find("not valid JSON"), std::string::npos) << describe(r);
}

// --fs, [[fs]] and "fs": bad shares stop kiln before anything runs (exit 2), naming the key.
TEST(ConfigFiles, FsSharesAreCheckedBeforeBoot) {
  const std::string kernel = guest_path("hello");
  TempFile file("x");
  const std::pair<std::string, std::string> flags[] = {
      {"tag=data,path=/nonexistent/kiln", "--fs tag=data,path=/nonexistent/kiln: path: "},
      {"tag=data,path=" + file.path(), "is not a directory"},
      {"tag=" + std::string(37, 't') + ",path=/tmp", "tag: must be 1 to 36 bytes"},
      {"path=/tmp", "tag=NAME is required"},
      {"tag=data,path=/tmp,cache=maybe", "cache: 'maybe' is not never, auto or always"},
      {"tag=data,path=/tmp,socket=/v.sock", "unknown option 'socket=/v.sock'"},
  };
  for (const auto& [spec, word] : flags) {
    KilnRun r = run_kiln({"run", "--kernel", kernel, "--fs", spec});
    EXPECT_EQ(r.exit_code, 2) << spec << ": " << describe(r);
    EXPECT_NE(r.err.find(word), std::string::npos) << spec << ": " << describe(r);
  }
  KilnRun dup = run_kiln(
      {"run", "--kernel", kernel, "--fs", "tag=data,path=/tmp", "--fs", "tag=data,path=/"});
  EXPECT_EQ(dup.exit_code, 2) << describe(dup);
  EXPECT_NE(dup.err.find("--fs tag=data,path=/: tag: \"data\" is already the tag of share"),
            std::string::npos)
      << describe(dup);

  TempFile toml("[boot-source]\nkernel_image_path = \"" + kernel +
                "\"\n[[fs]]\nfs_id = \"root\"\ntag = \"root\"\npath = \"/nonexistent/kiln\"\n");
  KilnRun t = run_kiln({"run", "--config", toml.path()});
  EXPECT_EQ(t.exit_code, 2) << describe(t);
  EXPECT_NE(t.err.find(toml.path() + ":6: fs[0]: path: /nonexistent/kiln"), std::string::npos)
      << describe(t);

  TempFile json("{\"boot-source\": {\"kernel_image_path\": \"" + kernel +
                "\"}, \"fs\": [{\"fs_id\": \"a\", \"tag\": \"a\", \"path\": \"/tmp\", "
                "\"num_request_queues\": 0}]}");
  KilnRun j = run_kiln({"--config-file", json.path()});
  EXPECT_EQ(j.exit_code, 2) << describe(j);
  EXPECT_NE(j.err.find("fs[0]: num_request_queues: must be between 1 and 16"), std::string::npos)
      << describe(j);
}

TEST(ConfigFiles, TomlBootsAndFlagsOverrideIt) {
  KILN_REQUIRE_KVM();
  TempFile toml("[boot-source]\nkernel_image_path = \"" + guest_path("cmdline") +
                "\"\nboot_args = \"from-toml\"\n[machine-config]\nvcpu_count = 2\n"
                "mem_size_mib = 64\n");
  KilnRun file_only = run_kiln({"run", "--config", toml.path()});
  ASSERT_EQ(file_only.exit_code, 0) << describe(file_only);
  EXPECT_NE(file_only.out.find("CMDLINE:from-toml"), std::string::npos) << describe(file_only);
  KilnRun overridden = run_kiln({"run", "--config", toml.path(), "--cmdline", "from-flag"});
  ASSERT_EQ(overridden.exit_code, 0) << describe(overridden);
  EXPECT_NE(overridden.out.find("CMDLINE:from-flag"), std::string::npos) << describe(overridden);
}

TEST(ConfigFiles, FirecrackerJsonBoots) {
  KILN_REQUIRE_KVM();
  TempFile disk(std::string(1 << 20, '\0'));
  TempFile json("{\"boot-source\": {\"kernel_image_path\": \"" + guest_path("virtio_blk") +
                "\", \"boot_args\": \"console=ttyS0\"}, \"drives\": [{\"drive_id\": \"rootfs\", "
                "\"path_on_host\": \"" +
                disk.path() +
                "\", \"is_root_device\": true, "
                "\"is_read_only\": false}], \"machine-config\": {\"vcpu_count\": 1, "
                "\"mem_size_mib\": 128}}");
  KilnRun r = run_kiln({"--config-file", json.path()});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("VBLK dev=0 serial=rootfs"), std::string::npos) << describe(r);
}

// machine-config's track_dirty_pages turns on KVM's dirty log: the pages the guest wrote are
// counted when it stops (and without it nothing is logged).
TEST(ConfigFiles, TrackDirtyPagesLogsWrittenGuestPages) {
  KILN_REQUIRE_KVM();
  const std::string kernel = guest_path("hello");
  for (bool track : {true, false}) {
    TempFile json("{\"boot-source\": {\"kernel_image_path\": \"" + kernel +
                  "\"}, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 64, "
                  "\"track_dirty_pages\": " +
                  (track ? "true" : "false") + "}}");
    KilnRun r = run_kiln({"--log-level", "info", "--config-file", json.path()});
    ASSERT_EQ(r.exit_code, 0) << describe(r);
    std::smatch m;
    const bool logged = std::regex_search(
        r.err, m, std::regex("dirty page tracking: (\\d+) of (\\d+) guest pages written"));
    ASSERT_EQ(logged, track) << describe(r);
    if (!track) continue;
    EXPECT_GT(std::stoul(m[1]), 0u) << describe(r);  // the guest's stack, at least
    EXPECT_LT(std::stoul(m[1]), std::stoul(m[2])) << describe(r);
    EXPECT_EQ(std::stoul(m[2]), 64u * 256) << describe(r);  // 64 MiB of 4 KiB pages
  }
}

}  // namespace
}  // namespace kiln::e2e
