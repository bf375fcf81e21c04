// Input robustness of the front ends: UTF-8 checks, nesting bounds for JSON and TOML, the API's
// routes refusing deeply nested bodies, and the controller's command loop surviving replies
// that cannot be serialized or callbacks that throw.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "api/http/http.h"
#include "api/nesting.h"
#include "api/routes.h"
#include "api/utf8.h"
#include "base/error.h"
#include "vmm/controller.h"

namespace kiln {
namespace {

using api::invalid_utf8_at;

TEST(Utf8, ValidAndInvalidSequences) {
  EXPECT_EQ(invalid_utf8_at(""), std::nullopt);
  EXPECT_EQ(invalid_utf8_at("console=ttyS0 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), std::nullopt);
  EXPECT_EQ(invalid_utf8_at("x=\xe9"), 2u);            // a lone Latin-1 byte
  EXPECT_EQ(invalid_utf8_at("\xc3"), 0u);              // truncated
  EXPECT_EQ(invalid_utf8_at("a\xc0\xaf"), 1u);         // overlong '/'
  EXPECT_EQ(invalid_utf8_at("\xe0\x80\xaf"), 0u);      // overlong, 3 bytes
  EXPECT_EQ(invalid_utf8_at("\xed\xa0\x80"), 0u);      // UTF-16 surrogate
  EXPECT_EQ(invalid_utf8_at("\xf4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(invalid_utf8_at("ok\x80"), 2u);            // stray continuation byte
  EXPECT_EQ(invalid_utf8_at(std::string("a\0b", 3)), std::nullopt);
}

TEST(Utf8, RequireNamesTheFieldAndReplacementIsValid) {
  try {
    api::require_utf8("--cmdline", "x=\xe9");
    ADD_FAILURE() << "no error";
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "--cmdline: not valid UTF-8 (byte 0xe9 at offset 2)");
  }
  EXPECT_EQ(api::valid_utf8("a\xe9z"), "a\xef\xbf\xbdz");
  EXPECT_EQ(api::valid_utf8("\xc3\xa9"), "\xc3\xa9");
}

std::string nested(size_t depth, char open, char close, const std::string& inner = "") {
  return std::string(depth, open) + inner + std::string(depth, close);
}

TEST(Nesting, Json) {
  using api::json_nesting_exceeded;
  EXPECT_EQ(json_nesting_exceeded(nested(32, '[', ']')), std::nullopt);
  EXPECT_EQ(json_nesting_exceeded(nested(33, '[', ']')), 1u);
  EXPECT_EQ(json_nesting_exceeded("{\"a\":\n" + nested(20000, '[', ']') + "}"), 2u);
  // Brackets in strings (and escaped quotes in them) do not count.
  EXPECT_EQ(json_nesting_exceeded("{\"a\": \"" + nested(100, '[', ']') + "\\\"[[[\"}"),
            std::nullopt);
  // Depth, not count: many siblings are fine.
  std::string siblings = "[";
  for (int i = 0; i < 1000; ++i) siblings += "[1],";
  EXPECT_EQ(json_nesting_exceeded(siblings + "[]]"), std::nullopt);
}

TEST(Nesting, Toml) {
  using api::toml_nesting_exceeded;
  const std::string real =
      "# vm\n[boot-source]\nkernel_image_path = \"/k [x\"\nboot_args = 'a]]]] [[['\n"
      "[machine-config]\nvcpu_count = 2\n[[drives]]\ndrive_id = \"rootfs\"\n"
      "[entropy.rate_limiter.bandwidth]\nsize = 1.5\nrefill_time = 1000\n"
      "x = \"\"\"\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n\"\"\"\ny = '''[[[[[[[['''\n";
  EXPECT_EQ(toml_nesting_exceeded(real), std::nullopt);
  EXPECT_EQ(toml_nesting_exceeded("a = " + nested(32, '[', ']') + "\n"), std::nullopt);
  EXPECT_EQ(toml_nesting_exceeded("\na = " + nested(20000, '[', ']') + "\n"), 2u);
  EXPECT_EQ(toml_nesting_exceeded("a = " + nested(40, '{', '}') + "\n"), 1u);
  // Dotted keys nest too, and a key's levels add to its table header's.
  std::string dotted = "a";
  for (int i = 0; i < 40; ++i) dotted += ".b";
  EXPECT_EQ(toml_nesting_exceeded(dotted + " = 1\n"), 1u);
  EXPECT_EQ(toml_nesting_exceeded("[" + dotted + "]\n"), 1u);
  std::string half = "a";
  for (int i = 0; i < 20; ++i) half += ".b";
  EXPECT_EQ(toml_nesting_exceeded(half + " = 1\n" + half + " = 2\n"), std::nullopt);
  EXPECT_EQ(toml_nesting_exceeded("[" + half + "]\n" + half + " = 1\n"), 2u);
  // Floats are values, not dotted keys.
  std::string floats = "a = [";
  for (int i = 0; i < 100; ++i) floats += "1.5, ";
  EXPECT_EQ(toml_nesting_exceeded(floats + "2.5]\n"), std::nullopt);
  // Brackets in comments and strings do not count.
  EXPECT_EQ(toml_nesting_exceeded("# " + nested(100, '[', ']') + "\na = \"" +
                                  nested(100, '[', ']') + "\"\n"),
            std::nullopt);
}

api::HttpRequest put(const std::string& path, std::string body) {
  api::HttpRequest r;
  r.method = "PUT";
  r.path = path;
  r.body = std::move(body);
  return r;
}

// A body nested deeper than any API object is refused before nlohmann parses it (its dump,
// copy and comparison recurse).
TEST(Routes, DeeplyNestedBodyIs400) {
  auto routed = api::route(put("/machine-config", "{\"x\": " + nested(30000, '[', ']') + "}"));
  const auto* reply = std::get_if<VmmReply>(&routed);
  ASSERT_NE(reply, nullptr) << "the body reached the controller";
  EXPECT_EQ(reply->status, 400);
  EXPECT_NE(reply->fault_message.find("nested more than 32 levels"), std::string::npos)
      << reply->fault_message;
  EXPECT_TRUE(std::holds_alternative<VmmCommand>(
      api::route(put("/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128})"))));
}

TEST(Routes, BodyThatIsNotUtf8Is400NamingTheByte) {
  auto routed = api::route(put("/boot-source", "{\"boot_args\": \"x=\xe9\"}"));
  const auto* reply = std::get_if<VmmReply>(&routed);
  ASSERT_NE(reply, nullptr);
  EXPECT_EQ(reply->status, 400);
  EXPECT_EQ(reply->fault_message, "the body is not valid UTF-8 (byte 0xe9 at offset 17)");
}

// Found by the api fuzzer: a number nlohmann cannot hold is out_of_range, not parse_error; it
// escaped route() on the API thread.
TEST(Routes, NumberTooLargeForJsonIs400) {
  auto routed = api::route(put("/machine-config", R"({"vcpu_count": 6e666})"));
  const auto* reply = std::get_if<VmmReply>(&routed);
  ASSERT_NE(reply, nullptr);
  EXPECT_EQ(reply->status, 400);
  EXPECT_NE(reply->fault_message.find("number overflow"), std::string::npos)
      << reply->fault_message;
}

// Bodies become typed requests; a refused body becomes an Invalid request for the controller
// (which answers it after its state checks), carrying the fault and whether it could be read.
TEST(Routes, BodiesBecomeTypedRequests) {
  auto routed = api::route(put("/drives/data", R"({"drive_id": "data", "path_on_host": "/d.img",
                                                   "is_root_device": false, "is_read_only": true})"));
  const auto* command = std::get_if<VmmCommand>(&routed);
  ASSERT_NE(command, nullptr);
  const auto* drive = std::get_if<request::PutDrive>(&command->request);
  ASSERT_NE(drive, nullptr);
  EXPECT_EQ(drive->drive.id, "data");
  EXPECT_EQ(drive->drive.path, "/d.img");
  EXPECT_TRUE(drive->drive.read_only);
  EXPECT_EQ(command->method, "Put");
  EXPECT_EQ(command->path, "/drives/data");

  routed = api::route(put("/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 256,
                                                  "cpu_template": "None"})"));
  command = std::get_if<VmmCommand>(&routed);
  ASSERT_NE(command, nullptr);
  const auto* machine = std::get_if<request::PutMachineConfig>(&command->request);
  ASSERT_NE(machine, nullptr);
  EXPECT_EQ(machine->update.vcpus, 2u);
  EXPECT_EQ(command->deprecated, std::vector<std::string>{"cpu_template"});

  routed = api::route(put("/drives/data", R"({"drive_id": "data", "is_root_device": false})"));
  command = std::get_if<VmmCommand>(&routed);
  ASSERT_NE(command, nullptr);
  const auto* invalid = std::get_if<request::Invalid>(&command->request);
  ASSERT_NE(invalid, nullptr);
  EXPECT_TRUE(invalid->shape_error);
  EXPECT_NE(invalid->fault_message.find("missing field `path_on_host`"), std::string::npos)
      << invalid->fault_message;

  routed = api::route(put("/vsock", R"({"guest_cid": 1, "uds_path": "/tmp/v.sock"})"));
  command = std::get_if<VmmCommand>(&routed);
  ASSERT_NE(command, nullptr);
  invalid = std::get_if<request::Invalid>(&command->request);
  ASSERT_NE(invalid, nullptr);
  EXPECT_FALSE(invalid->shape_error);
  EXPECT_EQ(invalid->fault_message.rfind("vsock: guest_cid: must be between 3", 0), 0u)
      << invalid->fault_message;
}

TEST(Routes, RepliesWithInvalidUtf8AreSerializedWithReplacement) {
  VmConfig config;
  config.kernel_path = "/k\xe9";
  const api::HttpResponse r = api::to_http(VmmReply::ok(config));
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"kernel_image_path\":\"/k\xef\xbf\xbd\""), std::string::npos) << r.body;
}

// Runs a VmmController's command loop on this thread; a watchdog stops it with SIGTERM after
// `seconds` if the test's own commands never do (before the fix, the loop dropped its command
// handler and waited forever).
class ControllerLoop : public ::testing::Test {
 protected:
  void SetUp() override { pthread_sigmask(SIG_SETMASK, nullptr, &saved_mask_); }
  void TearDown() override { pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr); }

  int run(VmmController& controller, int seconds = 10) {
    const pthread_t self = pthread_self();
    std::thread watchdog([&] {
      std::unique_lock lock(mu_);
      if (!cv_.wait_for(lock, std::chrono::seconds(seconds), [&] { return finished_; })) {
        timed_out_ = true;
        pthread_kill(self, SIGTERM);  // blocked here: the controller's signalfd takes it
      }
    });
    const int rc = controller.run(false);
    {
      std::lock_guard lock(mu_);
      finished_ = true;
    }
    cv_.notify_all();
    watchdog.join();
    return rc;
  }
  static void stop_loop() { pthread_kill(pthread_self(), SIGTERM); }

  sigset_t saved_mask_{};
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;
  bool timed_out_ = false;
};

// GET /vm/config with a host path that is not UTF-8 answers (U+FFFD in its place), and the
// loop goes on answering.
TEST_F(ControllerLoop, ConfigWithNonUtf8PathIsServedAndTheLoopGoesOn) {
  VmConfig config;
  config.kernel_path = "/guests/idle-\xe9.elf";
  VmmController controller(config, ConsoleFds{-1, -1});
  std::vector<api::HttpResponse> replies;
  controller.submit({request::GetVmConfig{}, "Get", "/vm/config", "", {}},
                    [&](VmmReply r) { replies.push_back(api::to_http(r)); });
  controller.submit({request::GetInstanceInfo{}, "Get", "/", "", {}}, [&](VmmReply r) {
    replies.push_back(api::to_http(r));
    stop_loop();
  });
  run(controller);
  EXPECT_FALSE(timed_out_) << "the command loop stopped answering";
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].status, 200);
  EXPECT_NE(replies[0].body.find("idle-\xef\xbf\xbd.elf"), std::string::npos) << replies[0].body;
  EXPECT_EQ(replies[1].status, 200);
}

// Whatever a front end's reply callback throws stays at the loop's boundary.
TEST_F(ControllerLoop, ThrowingReplyCallbackDoesNotStopTheLoop) {
  VmmController controller(VmConfig{}, ConsoleFds{-1, -1});
  bool answered = false;
  controller.submit({request::GetVersion{}, "Get", "/version", "", {}},
                    [](VmmReply) { throw std::runtime_error("front end failed"); });
  controller.submit({request::GetVersion{}, "Get", "/version", "", {}}, [&](VmmReply r) {
    answered = r.status == 200;
    stop_loop();
  });
  run(controller);
  EXPECT_FALSE(timed_out_) << "the command loop stopped answering";
  EXPECT_TRUE(answered);
}

}  // namespace
}  // namespace kiln
