// Rate limiters as every front end reads them: the API's PUT and PATCH bodies, the TOML file
// and the --disk / --net flags, and how they come back in GET /vm/config.
#include <gtest/gtest.h>

#include <string>
#include <variant>

#include "api/cli.h"
#include "api/config_files.h"
#include "api/routes.h"
#include "api/vm_json.h"
#include "base/error.h"
#include "tests/support/api_route.h"
#include "tests/support/test_files.h"
#include "vmm/command.h"

namespace kiln {
namespace {

template <typename T>
T routed(const std::string& method, const std::string& path, const std::string& body) {
  auto [request, fault] = test::route_as<T>(method, path, body);
  if (!request) throw std::runtime_error(fault);
  return *request;
}

std::string fault(const std::string& method, const std::string& path, const std::string& body) {
  try {
    routed<request::PutDrive>(method, path, body);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(RateLimiterConfig, DriveBucketsAreKeptAndShown) {
  const auto put = routed<request::PutDrive>("PUT", "/drives/data", R"({
      "drive_id": "data", "path_on_host": "/d.img", "is_root_device": false,
      "rate_limiter": {"bandwidth": {"size": 2097152, "refill_time": 1000, "one_time_burst": 7},
                       "ops": {"size": 0, "refill_time": 100}}})");
  const RateLimiterConfig& l = put.drive.rate_limiter;
  ASSERT_TRUE(l.bandwidth);
  EXPECT_EQ(l.bandwidth->size, 2097152u);
  EXPECT_EQ(l.bandwidth->refill_time_ms, 1000u);
  EXPECT_EQ(l.bandwidth->one_time_burst, 7u);
  EXPECT_FALSE(l.ops);  // size 0: no bucket, as in Firecracker
  VmConfig config;
  config.drives = {put.drive, DriveConfig{}};
  const nlohmann::json drives = api::vm_config_json(config)["drives"];
  EXPECT_EQ(drives[0]["rate_limiter"],
            nlohmann::json::parse(R"({"bandwidth": {"size": 2097152, "refill_time": 1000,
                                      "one_time_burst": 7}, "ops": null})"));
  EXPECT_TRUE(drives[1]["rate_limiter"].is_null());
}

TEST(RateLimiterConfig, BadBucketsAreRefusedNamingTheField) {
  const std::string drive = R"({"drive_id": "d", "path_on_host": "/d.img", "is_root_device": false,
                                "rate_limiter": )";
  EXPECT_NE(fault("PUT", "/drives/d",
                  drive + R"({"ops": {"size": 9223372036854775808, "refill_time": 1}}})")
                .find("drive.rate_limiter.ops: size"),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/drives/d", drive + R"({"bandwidth": {"size": 1}}})")
                .find("missing field `refill_time`"),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/drives/d", drive + R"({"bytes": {}}})").find("unknown field `bytes`"),
            std::string::npos);
  EXPECT_NE(fault("PUT", "/drives/d",
                  drive + R"({"bandwidth": {"size": 1, "refill_time": 9223372036855}}})")
                .find("refill_time"),
            std::string::npos);
}

TEST(RateLimiterConfig, PatchKeepsRemovesOrReplacesEachBucket) {
  const auto patch = routed<request::PatchDrive>(
      "PATCH", "/drives/d",
      R"({"drive_id": "d", "rate_limiter": {"ops": {"size": 0, "refill_time": 0}}})");
  ASSERT_TRUE(patch.rate_limiter);
  RateLimiterConfig before{TokenBucketConfig{10, 0, 100, false},
                           TokenBucketConfig{5, 0, 100, false}};
  const RateLimiterConfig after = patch.rate_limiter->applied_to(before);
  ASSERT_TRUE(after.bandwidth);  // not given: kept
  EXPECT_EQ(after.bandwidth->size, 10u);
  EXPECT_FALSE(after.ops);  // size 0: removed

  const auto net = routed<request::PatchNetworkInterface>(
      "PATCH", "/network-interfaces/eth0",
      R"({"iface_id": "eth0", "tx_rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 10}}})");
  EXPECT_FALSE(net.rx_rate_limiter.bandwidth || net.rx_rate_limiter.ops);
  ASSERT_TRUE(net.tx_rate_limiter.bandwidth && *net.tx_rate_limiter.bandwidth);
  EXPECT_EQ((*net.tx_rate_limiter.bandwidth)->size, 1000u);
  EXPECT_FALSE(net.tx_rate_limiter.ops);
}

TEST(RateLimiterConfig, FlagsAreBucketsOfTheRatePerSecond) {
  const DriveConfig d = parse_drive_spec("/d.img,ro,bw=1048576,ops=100");
  ASSERT_TRUE(d.rate_limiter.bandwidth && d.rate_limiter.ops);
  EXPECT_EQ(d.rate_limiter.bandwidth->size, 1048576u);
  EXPECT_EQ(d.rate_limiter.bandwidth->refill_time_ms, 1000u);
  EXPECT_EQ(d.rate_limiter.ops->size, 100u);
  EXPECT_THROW(parse_drive_spec("/d.img,bw=0"), UsageError);
  EXPECT_THROW(parse_drive_spec("/d.img,ops=fast"), UsageError);
  try {
    parse_drive_spec("/d.img,bw=-1");
    ADD_FAILURE();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("bw=-1: must be a number of bytes per second"),
              std::string::npos)
        << e.what();
  }
  VmConfig config;
  add_net_spec(config, "tap=t0,rx_bw=500,tx_ops=20");
  ASSERT_EQ(config.nets.size(), 1u);
  EXPECT_EQ(config.nets[0].rx_rate_limiter.bandwidth->size, 500u);
  EXPECT_FALSE(config.nets[0].rx_rate_limiter.ops);
  EXPECT_EQ(config.nets[0].tx_rate_limiter.ops->size, 20u);
  EXPECT_THROW(add_net_spec(config, "tap=t1,tx_bw=1,tx_bw=2"), UsageError);
  EXPECT_THROW(add_net_spec(config, "tap=t1,rx_bw=x"), UsageError);
}

TEST(RateLimiterConfig, TomlTablesAreTheApiObjects) {
  test::TempFile image(std::string(4096, '\0'));
  test::TempFile toml(
      "[boot-source]\nkernel_image_path = \"" + image.path() +
      "\"\n[[drives]]\ndrive_id = \"d\"\npath_on_host = \"" + image.path() +
      "\"\nis_root_device = false\nrate_limiter = { ops = { size = 50, refill_time = 1000 } }\n"
      "[[network-interfaces]]\niface_id = \"eth0\"\nhost_dev_name = \"t0\"\n"
      "rx_rate_limiter = { bandwidth = { size = 4096, refill_time = 10 } }\n");
  VmConfig config;
  api::apply_toml_config_file(config, toml.path());
  ASSERT_EQ(config.drives.size(), 1u);
  EXPECT_EQ(config.drives[0].rate_limiter.ops->size, 50u);
  ASSERT_EQ(config.nets.size(), 1u);
  EXPECT_EQ(config.nets[0].rx_rate_limiter.bandwidth->refill_time_ms, 10u);

  test::TempFile bad("[boot-source]\nkernel_image_path = \"" + image.path() +
                     "\"\n[[drives]]\ndrive_id = \"d\"\npath_on_host = \"" + image.path() +
                     "\"\nis_root_device = false\n\nrate_limiter = { ops = { size = 1 } }\n");
  VmConfig other;
  try {
    api::apply_toml_config_file(other, bad.path());
    ADD_FAILURE();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(":8:"), std::string::npos) << e.what();  // its line
    EXPECT_NE(std::string(e.what()).find("refill_time"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln
