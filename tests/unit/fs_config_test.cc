// virtio-fs shares in the front ends: --fs, the config files' "fs" / [[fs]], PUT /fs/{fs_id}
// and GET /vm/config all go through one check (validate(FsConfig) and add_fs) and name the field
// they refuse.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <variant>

#include "api/cli.h"
#include "api/config_files.h"
#include "api/fs_json.h"
#include "api/json_fields.h"
#include "api/routes.h"
#include "api/vm_json.h"
#include "base/error.h"
#include "tests/support/test_files.h"
#include "vmm/vm_config_ops.h"

namespace kiln {
namespace {

using nlohmann::json;
using test::TempFile;

using test::TempDir;

// PUT /fs/{id} as the controller takes it: the body read, then added to the configuration.
void put_fs(VmConfig& c, const std::string& id, const json& body) {
  api::check("fs", add_fs(c, api::parse_fs(body, id)));
}

// The message of the UsageError `f` throws, or "" when it does not throw.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(FsConfig, FlagBecomesAShareWithDefaults) {
  TempDir dir;
  VmConfig c;
  add_fs_spec(c, "tag=data,path=" + dir.path());
  add_fs_spec(c, "tag=root,path=" + dir.path() + ",ro,cache=never,id=rootfs,queues=2");
  ASSERT_EQ(c.fs.size(), 2u);
  EXPECT_EQ(c.fs[0].fs_id, "fs0");
  EXPECT_EQ(c.fs[0].tag, "data");
  EXPECT_EQ(c.fs[0].path, dir.path());
  EXPECT_FALSE(c.fs[0].read_only);
  EXPECT_EQ(c.fs[0].cache, FsCacheMode::kAuto);
  EXPECT_FALSE(c.fs[0].allow_setid_and_devices);
  EXPECT_EQ(c.fs[0].num_request_queues, 1u);
  EXPECT_EQ(c.fs[1].fs_id, "rootfs");
  EXPECT_TRUE(c.fs[1].read_only);
  EXPECT_EQ(c.fs[1].cache, FsCacheMode::kNever);
  EXPECT_EQ(c.fs[1].num_request_queues, 2u);
  add_fs_spec(c, "tag=dev,path=" + dir.path() + ",cache=always,allow-setid-and-devices");
  EXPECT_EQ(c.fs[2].cache, FsCacheMode::kAlways);
  EXPECT_TRUE(c.fs[2].allow_setid_and_devices);
}

TEST(FsConfig, BadFlagsNameTheKey) {
  TempDir dir;
  TempFile file("not a directory");
  const std::string d = ",path=" + dir.path();
  const std::pair<std::string, std::string> cases[] = {
      {"path=" + dir.path(), "tag=NAME is required"},
      {"tag=x", "path=DIR is required"},
      {"tag=" + std::string(37, 'a') + d, "tag: must be 1 to 36 bytes"},
      {"tag=a\tb" + d, "tag: must not contain NUL or control characters"},
      {"tag=x,path=/nonexistent/kiln", "path: /nonexistent/kiln: No such file or directory"},
      {"tag=x,path=" + file.path(), "path: " + file.path() + " is not a directory"},
      {"tag=x" + d + ",cache=sometimes", "cache: 'sometimes' is not never, auto or always"},
      {"tag=x" + d + ",queues=0", "queues: must be between 1 and 16"},
      {"tag=x" + d + ",queues=17", "queues: must be between 1 and 16"},
      {"tag=x" + d + ",queues=99999999999", "queues: must be between 1 and 16"},
      {"tag=x" + d + ",queues=two", "queues: 'two' is not a number"},
      {"tag=x" + d + ",id=a-b", "id: must be 1 to 64 letters"},
      {"tag=x" + d + ",ro=yes", "ro takes no value"},
      {"tag=x" + d + ",cache=", "expected cache=VALUE"},
      {"tag=x" + d + ",tag=y", "tag given twice"},
      {"tag=x" + d + ",socket=/s", "unknown option 'socket=/s'"},
      {"tag=\xe9" + d, "tag: not valid UTF-8"},
  };
  for (const auto& [spec, expected] : cases) {
    VmConfig c;
    const std::string message = error_of([&] { add_fs_spec(c, spec); });
    EXPECT_NE(message.find("--fs " + spec + ": "), std::string::npos) << spec << ": " << message;
    EXPECT_NE(message.find(expected), std::string::npos) << spec << ": " << message;
    EXPECT_TRUE(c.fs.empty()) << spec;
  }
  VmConfig c;
  add_fs_spec(c, "tag=x" + d);
  EXPECT_NE(error_of([&] {
              add_fs_spec(c, "tag=x" + d);
            }).find("tag: \"x\" is already the tag of share \"fs0\""),
            std::string::npos);
  EXPECT_NE(error_of([&] { add_fs_spec(c, "tag=y,id=fs0" + d); }).find("id=fs0 is already used"),
            std::string::npos);
  EXPECT_EQ(c.fs.size(), 1u);
}

TEST(FsConfig, ApiObjectIsCheckedAndReplacesBySameId) {
  TempDir dir, other;
  VmConfig c;
  json body = {{"fs_id", "share"}, {"tag", "data"}, {"path", dir.path()}};
  put_fs(c, "share", body);
  body["path"] = other.path();
  body["read_only"] = true;
  put_fs(c, "share", body);  // replaces, and its own tag is no conflict
  ASSERT_EQ(c.fs.size(), 1u);
  EXPECT_EQ(c.fs[0].path, other.path());
  EXPECT_TRUE(c.fs[0].read_only);

  auto refused = [&](const std::string& id, const json& b, const std::string& field) {
    VmConfig before = c;
    try {
      put_fs(c, id, b);
      ADD_FAILURE() << b << " was accepted";
    } catch (const api::FieldError& e) {
      EXPECT_EQ(e.field(), field) << e.what();
    }
    EXPECT_EQ(c.fs.size(), before.fs.size());
  };
  refused("other", body, "fs_id");  // the path's id is not the body's
  refused("b", {{"fs_id", "b"}, {"tag", "data"}, {"path", dir.path()}}, "tag");  // taken
  refused("b", {{"fs_id", "b"}, {"tag", "x"}}, "path");                          // missing
  refused("b", {{"fs_id", "b"}, {"tag", "x"}, {"path", dir.path()}, {"queue_size", 1024}},
          "queue_size");
  refused("b", {{"fs_id", "b"}, {"tag", "x"}, {"path", dir.path()}, {"socket", "/v.sock"}},
          "socket");
  refused("b", {{"fs_id", "b"}, {"tag", "x"}, {"socket", "/v.sock"}},
          "socket");  // Cloud Hypervisor's
  refused("b", {{"fs_id", "b"}, {"tag", "x"}, {"path", dir.path()}, {"read_only", "yes"}},
          "read_only");
  refused("b", {{"fs_id", "b"}, {"tag", "x"}, {"path", dir.path()}, {"turbo", true}}, "turbo");
  refused("b", {{"fs_id", "b"}, {"tag", ""}, {"path", dir.path()}}, "tag");
  refused("b", {{"fs_id", "b"}, {"tag", std::string("a\0b", 3)}, {"path", dir.path()}}, "tag");
  refused("b", {{"fs_id", "b"}, {"tag", "x"}, {"path", ""}}, "path");
  refused("b", {{"fs_id", "b"}, {"tag", "x"}, {"path", dir.path()}, {"num_request_queues", -1}},
          "num_request_queues");

  const json shown = api::vm_config_json(c)["fs"];
  ASSERT_EQ(shown.size(), 1u);
  EXPECT_EQ(shown[0], json({{"fs_id", "share"},
                            {"tag", "data"},
                            {"path", other.path()},
                            {"read_only", true},
                            {"cache", "auto"},
                            {"allow_setid_and_devices", false},
                            {"num_request_queues", 1}}));
  // What GET /vm/config shows is a valid configuration file's "fs" again.
  VmConfig again;
  again.kernel_path = "/k";
  api::apply_full_config(again, {{"boot-source", {{"kernel_image_path", "/k"}}}, {"fs", shown}});
  EXPECT_EQ(api::vm_config_json(again)["fs"], shown);
}

TEST(FsConfig, ConfigFilesNameTheEntryAndLine) {
  TempDir dir;
  TempFile toml(
      "[boot-source]\nkernel_image_path = \"/k\"\n\n[[fs]]\nfs_id = \"a\"\ntag = \"a\"\n"
      "path = \"" +
      dir.path() + "\"\n\n[[fs]]\nfs_id = \"b\"\ntag = \"a\"\npath = \"" + dir.path() + "\"\n");
  VmConfig c;
  const std::string message = error_of([&] { api::apply_toml_config_file(c, toml.path()); });
  EXPECT_NE(message.find(toml.path() + ":11: fs[1]: tag: \"a\" is already the tag of share"),
            std::string::npos)
      << message;

  TempFile good(
      "[boot-source]\nkernel_image_path = \"/k\"\n[[fs]]\nfs_id = \"root\"\n"
      "tag = \"root\"\npath = \"" +
      dir.path() + "\"\ncache = \"never\"\nread_only = true\n");
  VmConfig ok;
  api::apply_toml_config_file(ok, good.path());
  ASSERT_EQ(ok.fs.size(), 1u);
  EXPECT_EQ(ok.fs[0].cache, FsCacheMode::kNever);
  EXPECT_TRUE(ok.fs[0].read_only);

  TempFile dup_id(
      "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"fs\": [{\"fs_id\": \"a\", "
      "\"tag\": \"a\", \"path\": \"" +
      dir.path() + "\"}, {\"fs_id\": \"a\", \"tag\": \"b\", \"path\": \"" + dir.path() + "\"}]}");
  VmConfig j;
  EXPECT_NE(error_of([&] {
              api::apply_json_config_file(j, dup_id.path());
            }).find("fs[1]: fs_id: \"a\" appears twice"),
            std::string::npos);
  TempFile not_array("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"fs\": {}}");
  EXPECT_NE(error_of([&] {
              api::apply_json_config_file(j, not_array.path());
            }).find("fs: must be an array"),
            std::string::npos);
}

TEST(FsConfig, RoutePutOnlyWithAnId) {
  TempDir dir;
  api::HttpRequest r;
  r.method = "PUT";
  r.path = "/fs/share0";
  r.body = R"({"fs_id": "share0", "tag": "t", "path": ")" + dir.path() + R"(", "cache": "never"})";
  auto routed = api::route(r);
  const auto* command = std::get_if<VmmCommand>(&routed);
  ASSERT_NE(command, nullptr);
  const auto* put = std::get_if<request::PutFs>(&command->request);
  ASSERT_NE(put, nullptr);
  EXPECT_EQ(put->fs.fs_id, "share0");
  EXPECT_EQ(put->fs.path, dir.path());
  EXPECT_EQ(put->fs.cache, FsCacheMode::kNever);
  EXPECT_EQ(command->path, "/fs/share0");
  // A body it refuses reaches the controller as Invalid, naming the field.
  r.body = R"({"fs_id": "share0", "tag": "t", "path": "/tmp", "queue_size": 1024})";
  routed = api::route(r);
  command = std::get_if<VmmCommand>(&routed);
  ASSERT_NE(command, nullptr);
  const auto* invalid = std::get_if<request::Invalid>(&command->request);
  ASSERT_NE(invalid, nullptr);
  EXPECT_NE(invalid->fault_message.find("fs: queue_size"), std::string::npos)
      << invalid->fault_message;
  r.method = "PATCH";
  routed = api::route(r);
  ASSERT_TRUE(std::holds_alternative<VmmReply>(routed));
  EXPECT_EQ(std::get<VmmReply>(routed).status, 405);
  r.method = "PUT";
  r.path = "/fs/";
  routed = api::route(r);
  ASSERT_TRUE(std::holds_alternative<VmmReply>(routed));
  EXPECT_EQ(std::get<VmmReply>(routed).status, 404);
}

}  // namespace
}  // namespace kiln
