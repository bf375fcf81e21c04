// The balloon as the front ends read it: PUT/PATCH /balloon and PATCH /balloon/statistics
// bodies, the config files' "balloon", and how it comes back in GET /balloon, GET /vm/config and
// GET /balloon/statistics.
#include <gtest/gtest.h>

#include <string>
#include <variant>

#include "api/balloon_json.h"
#include "api/cli.h"
#include "api/config_files.h"
#include "api/routes.h"
#include "api/vm_json.h"
#include "base/error.h"
#include "tests/support/api_route.h"
#include "tests/support/test_files.h"
#include "vmm/command.h"
#include "vmm/vm_config_ops.h"

namespace kiln {
namespace {

using nlohmann::json;

template <typename T>
auto routed(const std::string& method, const std::string& path, const std::string& body) {
  return test::route_as<T>(method, path, body);
}

TEST(BalloonConfig, PutTakesFirecrackersFields) {
  const auto [put, fault] = routed<request::PutBalloon>(
      "PUT", "/balloon",
      R"({"amount_mib": 64, "deflate_on_oom": true, "stats_polling_interval_s": 2,
          "free_page_reporting": true})");
  ASSERT_TRUE(put) << fault;
  EXPECT_EQ(put->balloon.amount_mib, 64u);
  EXPECT_TRUE(put->balloon.deflate_on_oom);
  EXPECT_EQ(put->balloon.stats_polling_interval_s, 2u);
  EXPECT_TRUE(put->balloon.free_page_reporting);
  // As GET /balloon and GET /vm/config show it.
  VmConfig config;
  config.balloon = put->balloon;
  const json expected = json::parse(R"({"amount_mib": 64, "deflate_on_oom": true,
      "stats_polling_interval_s": 2, "free_page_hinting": false, "free_page_reporting": true})");
  EXPECT_EQ(api::balloon_json(put->balloon), expected);
  EXPECT_EQ(api::vm_config_json(config)["balloon"], expected);
  EXPECT_TRUE(api::vm_config_json(VmConfig{})["balloon"].is_null());
}

TEST(BalloonConfig, BadBodiesAreRefusedNamingTheField) {
  auto fault = [](const std::string& method, const std::string& path, const std::string& body) {
    return routed<request::PutBalloon>(method, path, body).second;
  };
  EXPECT_NE(fault("PUT", "/balloon", R"({"deflate_on_oom": false})").find("amount_mib"),
            std::string::npos);
  EXPECT_NE(
      fault("PUT", "/balloon", R"({"amount_mib": -1, "deflate_on_oom": false})").find("amount_mib"),
      std::string::npos);
  EXPECT_NE(fault("PUT", "/balloon", R"({"amount_mib": 1, "deflate_on_oom": false, "x": 1})")
                .find("unknown field `x`"),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/balloon",
                  R"({"amount_mib": 1, "deflate_on_oom": false, "free_page_hinting": true})")
                .find("free_page_hinting"),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/balloon",
                  R"({"amount_mib": 1, "deflate_on_oom": false,
                      "stats_polling_interval_s": 100000})")
                .find("stats_polling_interval_s"),
            std::string::npos);
  EXPECT_NE(routed<request::PatchBalloon>("PATCH", "/balloon", R"({"deflate_on_oom": true})")
                .second.find("amount_mib"),
            std::string::npos);
  EXPECT_NE(
      routed<request::PatchBalloonStats>("PATCH", "/balloon/statistics", R"({"amount_mib": 1})")
          .second.find("stats_polling_interval_s"),
      std::string::npos);
  // More than the guest has.
  const auto problem = validate(BalloonConfig{257, false, 0, false}, 256);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->field, "amount_mib");
  EXPECT_FALSE(validate(BalloonConfig{256, false, 0, false}, 256));
}

TEST(BalloonConfig, PatchesCarryTheNewTargetAndInterval) {
  const auto [target, f1] =
      routed<request::PatchBalloon>("PATCH", "/balloon", R"({"amount_mib": 9})");
  ASSERT_TRUE(target) << f1;
  EXPECT_EQ(target->amount_mib, 9u);
  const auto [interval, f2] = routed<request::PatchBalloonStats>(
      "PATCH", "/balloon/statistics", R"({"stats_polling_interval_s": 7})");
  ASSERT_TRUE(interval) << f2;
  EXPECT_EQ(interval->stats_polling_interval_s, 7u);
  EXPECT_TRUE(routed<request::GetBalloon>("GET", "/balloon", "").first);
  EXPECT_TRUE(routed<request::GetBalloonStats>("GET", "/balloon/statistics", "").first);
}

TEST(BalloonConfig, StatisticsHaveFirecrackersNames) {
  BalloonStatsInfo s;
  s.target_pages = 512;
  s.actual_pages = 256;
  s.values = {{4, 1000}, {5, 2000}, {10, 1}, {200, 5}};  // 200: a tag Kiln does not name
  const json j = api::balloon_stats_json(s);
  EXPECT_EQ(j, json::parse(R"({"target_pages": 512, "actual_pages": 256, "target_mib": 2,
      "actual_mib": 1, "free_memory": 1000, "total_memory": 2000, "oom_kill": 1})"));
}

TEST(BalloonConfig, TheFlagIsTheSameObject) {
  const BalloonConfig b = parse_balloon_spec("64,deflate_on_oom,stats=2,reporting", 256);
  EXPECT_EQ(b.amount_mib, 64u);
  EXPECT_TRUE(b.deflate_on_oom);
  EXPECT_EQ(b.stats_polling_interval_s, 2u);
  EXPECT_TRUE(b.free_page_reporting);
  EXPECT_FALSE(parse_balloon_spec("0", 256).deflate_on_oom);
  auto refused = [](const std::string& spec, const std::string& phrase) {
    try {
      parse_balloon_spec(spec, 256);
      ADD_FAILURE() << spec;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
    }
  };
  refused("257", "--balloon 257: amount_mib");
  refused("-1", "is not a number of MiB");
  refused("", "is not a number of MiB");
  refused("8,stats=0", "stats=0: must be a number of seconds");
  refused("8,stats=x", "stats=x");
  refused("8,hinting", "unknown option 'hinting'");
}

TEST(BalloonConfig, ConfigFilesTakeTheBalloonObject) {
  test::TempFile image(std::string(4096, '\0'));
  test::TempFile toml("[boot-source]\nkernel_image_path = \"" + image.path() +
                      "\"\n[machine-config]\nvcpu_count = 1\nmem_size_mib = 128\n"
                      "[balloon]\namount_mib = 32\ndeflate_on_oom = true\n"
                      "stats_polling_interval_s = 1\n");
  VmConfig config;
  api::apply_toml_config_file(config, toml.path());
  ASSERT_TRUE(config.balloon);
  EXPECT_EQ(config.balloon->amount_mib, 32u);
  EXPECT_TRUE(config.balloon->deflate_on_oom);
  EXPECT_EQ(config.balloon->stats_polling_interval_s, 1u);

  test::TempFile too_big("{\"boot-source\": {\"kernel_image_path\": \"" + image.path() +
                         "\"}, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128}, "
                         "\"balloon\": {\"amount_mib\": 129, \"deflate_on_oom\": false}}");
  VmConfig other;
  try {
    api::apply_json_config_file(other, too_big.path());
    ADD_FAILURE();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("balloon"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("amount_mib"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(other.balloon);
}

}  // namespace
}  // namespace kiln
