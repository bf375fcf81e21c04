// Bad input of every kind gets exit status 2 (or HTTP 400) and one clear line naming the flag
// or file, never a crash, a hang or a dead API: over-long paths, directories and FIFOs where
// files belong, text that is not UTF-8, configuration nested thousands deep, boot images
// bigger than guest RAM.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/e2e/api_client.h"
#include "tests/e2e/kiln_process.h"

namespace kiln::e2e {
namespace {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* dir = std::getenv("TMPDIR");
    std::string tmpl = std::string(dir && *dir ? dir : "/tmp") + "/kiln-input-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Exit 2, the message on one line, containing `words`.
void expect_usage_error(const KilnRun& r, const std::vector<std::string>& words) {
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << describe(r);
  ASSERT_FALSE(r.err.empty()) << describe(r);
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << describe(r);
  for (const std::string& w : words)
    EXPECT_NE(r.err.find(w), std::string::npos) << w << "\n" << describe(r);
}

std::string nested(size_t depth, char open, char close) {
  return std::string(depth, open) + std::string(depth, close);
}

TEST(CliInput, OverlongKernelPath) {
  const std::string path = "/" + std::string(5000, 'a');
  expect_usage_error(run_kiln({"run", "--kernel", path}, {}, 30),
                     {"kiln: --kernel /aaaa", "File name too long"});
}

TEST(CliInput, ConfigIsADirectory) {
  TempDir dir;
  expect_usage_error(run_kiln({"run", "--config", dir.path()}, {}, 30),
                     {"config file " + dir.path(), "Is a directory"});
  expect_usage_error(run_kiln({"--config-file", dir.path()}, {}, 30),
                     {"config file " + dir.path(), "Is a directory"});
}

TEST(CliInput, TomlNestedTwentyThousandDeep) {
  TempFile toml("[boot-source]\nkernel_image_path = \"/k\"\nx = " + nested(20000, '[', ']') + "\n");
  expect_usage_error(run_kiln({"run", "--config", toml.path()}, {}, 30),
                     {"config file " + toml.path() + ":3: nested more than 32 levels deep"});
  std::string dotted = "a";
  for (int i = 0; i < 100000; ++i) dotted += ".b";
  TempFile keys(dotted + " = 1\n");
  expect_usage_error(run_kiln({"run", "--config", keys.path()}, {}, 30),
                     {"config file " + keys.path() + ":1: nested more than 32 levels deep"});
}

TEST(CliInput, JsonConfigNestedDeep) {
  TempFile json("{\"boot-source\": " + nested(500000, '[', ']') + "}");
  expect_usage_error(run_kiln({"--config-file", json.path()}, {}, 30),
                     {"config file " + json.path() + ":1: nested more than 32 levels deep"});
}

TEST(CliInput, ConfigFileTooBig) {
  TempFile toml("# " + std::string(2 << 20, 'x') + "\n");
  expect_usage_error(run_kiln({"run", "--config", toml.path()}, {}, 30),
                     {"config file " + toml.path(), "larger than 1 MiB"});
}

TEST(CliInput, TextThatIsNotUtf8) {
  expect_usage_error(
      run_kiln({"run", "--kernel", guest_path("hello"), "--cmdline", "x=\xe9"}, {}, 30),
      {"--cmdline: not valid UTF-8 (byte 0xe9 at offset 2)"});
  expect_usage_error(
      run_kiln({"run", "--kernel", guest_path("hello"), "--disk", "/dev/null,id=d\xe9"}, {}, 30),
      {"--disk", "id: not valid UTF-8"});
  TempFile toml("[boot-source]\nkernel_image_path = \"" + guest_path("hello") +
                "\"\nboot_args = \"x=\xe9\"\n");
  expect_usage_error(run_kiln({"run", "--config", toml.path()}, {}, 30),
                     {"config file " + toml.path() + ":3: not valid UTF-8 (byte 0xe9)"});
}

// A FIFO as initrd or kernel is refused at once: nothing blocks waiting for a writer.
TEST(CliInput, FifoKernelOrInitrdIsRefusedWithoutHanging) {
  TempDir dir;
  const std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_usage_error(run_kiln({"run", "--kernel", guest_path("hello"), "--initrd", fifo}, {}, 30),
                     {"initrd " + fifo + ": not a regular file"});
  expect_usage_error(run_kiln({"run", "--kernel", fifo}, {}, 30),
                     {"kernel " + fifo + ": not a regular file"});
}

// The initrd's size is checked against guest RAM before it is read: a sparse 4 GiB initrd for
// 128 MiB of RAM is refused without Kiln ever holding it in memory.
TEST(CliInput, InitrdBiggerThanRamIsRefusedBeforeReading) {
  TempFile initrd("initrd");
  ASSERT_EQ(::truncate(initrd.path().c_str(), off_t{4} << 30), 0);
  const KilnRun r = run_kiln(
      {"run", "--kernel", guest_path("hello"), "--initrd", initrd.path(), "--memory", "128"}, {},
      60);
  expect_usage_error(r, {"initrd " + initrd.path() + " (4 GiB) does not fit"});
  ASSERT_GT(r.max_rss_kib, 0);
  EXPECT_LT(r.max_rss_kib, 256 * 1024) << "peak RSS " << r.max_rss_kib << " KiB";
}

std::string socket_path(const TempDir& dir) {
  return dir.path() + "/api.sock";
}

// A body nested thousands deep gets 400 and the API goes on answering.
// A reader that went away (`kiln run ... 2>&1 | head -1`, a closed log pipe) must not kill
// Kiln with SIGPIPE: writes fail with EPIPE and Kiln goes on to its own exit status. The child
// starts with SIGPIPE at its default (this test process ignores it, and exec would pass that on).
TEST(CliInput, ClosedStderrPipeIsNotFatal) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);  // nobody will read
  const std::string bin = kiln_binary();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(fds[1], 2);
    ::execl(bin.c_str(), bin.c_str(), "run", "--kernel", "/nonexistent/kernel", nullptr);
    ::_exit(127);
  }
  ::close(fds[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(WIFSIGNALED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

TEST(ApiInput, DeeplyNestedBodyIs400) {
  TempDir dir;
  const std::string sock = socket_path(dir);
  KilnProcess kiln({"--api-sock", sock});
  ASSERT_TRUE(wait_for_socket(sock, 20)) << kiln.err();
  const ApiResponse r = api_request(sock, "PUT", "/machine-config",
                                    "{\"vcpu_count\": " + nested(30000, '[', ']') + "}");
  EXPECT_EQ(r.status, 400) << r.raw_body;
  EXPECT_NE(r.raw_body.find("nested more than 32 levels deep"), std::string::npos) << r.raw_body;
  EXPECT_EQ(api_request(sock, "GET", "/").status, 200);
  kiln.signal(SIGTERM);
  EXPECT_EQ(kiln.wait(20), 3) << kiln.err();
}

// Host paths may be any bytes: a kernel path that is not UTF-8 boots, GET /vm/config answers
// with U+FFFD in its place, and the API keeps answering while the VM runs.
TEST(ApiInput, NonUtf8PathInConfigDoesNotStopTheApi) {
  KILN_REQUIRE_KVM();
  TempDir dir;
  const std::string kernel = dir.path() + "/idle-\xe9.elf";
  std::filesystem::copy_file(guest_path("idle"), kernel);
  const std::string sock = socket_path(dir);
  KilnProcess kiln({"run", "--kernel", kernel, "--api-sock", sock});
  ASSERT_TRUE(wait_for_socket(sock, 20)) << kiln.err();
  ASSERT_TRUE(kiln.wait_for_output("KILN-GUEST idle", 120)) << kiln.out() << kiln.err();
  const ApiResponse config = api_request(sock, "GET", "/vm/config");
  ASSERT_EQ(config.status, 200) << config.raw_body;
  EXPECT_EQ(config.body["boot-source"]["kernel_image_path"], dir.path() + "/idle-\xef\xbf\xbd.elf");
  for (int i = 0; i < 3; ++i) {
    const ApiResponse info = api_request(sock, "GET", "/");
    ASSERT_EQ(info.status, 200) << info.raw_body;
    EXPECT_EQ(info.body["state"], "Running");
  }
  kiln.signal(SIGTERM);
  EXPECT_EQ(kiln.wait(20), 3) << kiln.err();
}

}  // namespace
}  // namespace kiln::e2e
