// kiln-oci's runtime configuration file (oci/runtime_config.h): the defaults it sets, and the
// file, line and key each bad one is refused with.
#include "oci/runtime_config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "base/error.h"
#include "tests/support/unix_peer.h"

namespace kiln::oci {
namespace {

class OciRuntimeConfig : public ::testing::Test {
 protected:
  std::string write(const std::string& text) {
    std::ofstream(path_) << text;
    return path_;
  }
  std::string error_of(const std::string& text) {
    sandbox::RunOptions d;
    try {
      apply_runtime_config(d, write(text), true);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "accepted";
  }
  testsupport::TempDir dir_;
  std::string path_ = dir_.path() + "/oci.toml";
};

TEST_F(OciRuntimeConfig, SetsTheDefaults) {
  sandbox::RunOptions d;
  apply_runtime_config(d,
                       write("# kiln-oci\nkernel = \"/k/vmlinux\"\ninitrd = \"/k/agent.cpio\"\n"
                             "vcpus = 2\nmemory_mib = 512\n"),
                       true);
  EXPECT_EQ(d.kernel, "/k/vmlinux");
  EXPECT_EQ(d.initrd, "/k/agent.cpio");
  EXPECT_EQ(d.cpus, 2u);
  EXPECT_EQ(d.memory, 512u);
}

TEST_F(OciRuntimeConfig, WarmIsOffUnlessTheFileTurnsItOn) {
  sandbox::RunOptions d;
  EXPECT_FALSE(apply_runtime_config(d, write("vcpus = 1\n"), true).warm);
  EXPECT_TRUE(apply_runtime_config(d, write("warm = true\n"), true).warm);
}

TEST_F(OciRuntimeConfig, MissingFileIsAnErrorOnlyWhenNamed) {
  sandbox::RunOptions d;
  d.cpus = 7;
  apply_runtime_config(d, dir_.path() + "/none.toml", false);
  EXPECT_EQ(d.cpus, 7u);
  EXPECT_THROW(apply_runtime_config(d, dir_.path() + "/none.toml", true), UsageError);
}

TEST_F(OciRuntimeConfig, BadFilesNameTheLineAndKey) {
  const std::pair<std::string, std::string> cases[] = {
      {"vcpus = 0\n", "oci.toml:1: vcpus: must be an integer from 1 to 254"},
      {"\nmemory_mib = \"256\"\n", "oci.toml:2: memory_mib: must be an integer from 32 to 65536"},
      {"kernel = \"vmlinux\"\n", "kernel: must be an absolute path"},
      {"cpus = 2\n",
       "oci.toml:1: cpus: unknown key (known: kernel, initrd, vcpus, memory_mib, "
       "timings_annotation, warm)"},
      {"[machine]\nvcpus = 2\n", "machine: unknown key"},
      {"vcpus = \n", "TOML error"},
      {"timings_annotation = 1\n", "timings_annotation: must be true or false"},
      {"warm = \"yes\"\n", "oci.toml:1: warm: must be true or false"},
      {"x = " + std::string(100, '[') + std::string(100, ']') + "\n", "nested"},
  };
  for (const auto& [text, want] : cases) {
    std::string e = error_of(text);
    EXPECT_NE(e.find(want), std::string::npos) << text << " -> " << e;
  }
}

}  // namespace
}  // namespace kiln::oci
