// The image's JSON documents (image/manifest.h, image/image_config.h, image/json_doc.h):
// strict parsing with the field named, selection by tag and platform, bounds.
#include <gtest/gtest.h>

#include "base/error.h"
#include "image/digest.h"
#include "image/image_config.h"
#include "image/json_doc.h"
#include "image/manifest.h"

namespace kiln::image {
namespace {

const std::string kHex(64, 'a');
const std::string kDigest = "sha256:" + kHex;

template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(ImageDigest, ParsesOnlySha256Hex) {
  EXPECT_EQ(parse_digest(kDigest, "d").hex, kHex);
  for (const std::string& bad :
       {"sha512:" + kHex, "sha256:" + std::string(63, 'a'), "sha256:" + std::string(64, 'A'),
        "sha256:" + std::string(64, 'g'), kHex, std::string("sha256:")})
    EXPECT_NE(error_of([&] { parse_digest(bad, "the.field"); }).find("the.field"),
              std::string::npos)
        << bad;
  // The well-known sha256 of "abc".
  EXPECT_EQ(sha256_of("abc").hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ImageManifest, IndexAndSelection) {
  const std::string text = R"({"schemaVersion":2,"manifests":[
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
                           kDigest +
                           R"(","size":10,"platform":{"os":"linux","architecture":"arm64"},
     "annotations":{"org.opencontainers.image.ref.name":"docker.io/library/busybox:1.36"}},
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:)" +
                           std::string(64, 'b') + R"(","size":11,
     "platform":{"os":"linux","architecture":"amd64"},
     "annotations":{"org.opencontainers.image.ref.name":"latest"}}]})";
  const OciIndex index = parse_oci_index(text, "index.json");
  ASSERT_EQ(index.manifests.size(), 2u);
  EXPECT_EQ(index.manifests[0].size, 10u);
  EXPECT_EQ(select_descriptor(index, "", "linux", "amd64", "i").digest.hex, std::string(64, 'b'));
  EXPECT_EQ(select_descriptor(index, "1.36", "linux", "amd64", "i").digest.hex, kHex);
  EXPECT_EQ(
      select_descriptor(index, "docker.io/library/busybox:1.36", "linux", "amd64", "i").digest.hex,
      kHex);
  EXPECT_EQ(select_descriptor(index, "latest", "linux", "amd64", "i").digest.hex,
            std::string(64, 'b'));
  const std::string err =
      error_of([&] { select_descriptor(index, "nope", "linux", "amd64", "index.json"); });
  EXPECT_NE(err.find("has no image tagged 'nope'"), std::string::npos) << err;
  EXPECT_NE(err.find("busybox:1.36"), std::string::npos) << "lists what there is: " << err;
  EXPECT_NE(
      error_of([&] { select_descriptor(index, "", "linux", "s390x", "i"); }).find("linux/s390x"),
      std::string::npos);
}

TEST(ImageManifest, FieldErrorsNamed) {
  EXPECT_NE(error_of([] {
              parse_oci_index(R"({"manifests":{}})", "index.json");
            }).find("index.json.manifests"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_oci_index(R"({"manifests":[{"digest":"x"}]})", "index.json");
            }).find("index.json.manifests[0].digest"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_oci_index(R"({"manifests":[{"digest":")" + kDigest + R"(","size":-1}]})", "i");
            }).find("i.manifests[0].size"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_oci_manifest(R"({"layers":[]})", "m"); }).find("m.config"),
            std::string::npos);
  const std::string m =
      R"({"config":{"digest":")" + kDigest +
      R"("},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+encrypted","digest":")" +
      kDigest + R"("}]})";
  EXPECT_NE(error_of([&] { parse_oci_manifest(m, "m"); }).find("m.layers[0].mediaType"),
            std::string::npos);
  EXPECT_NE(
      error_of([] { parse_oci_manifest(R"({"schemaVersion":1})", "m"); }).find("m.schemaVersion"),
      std::string::npos);
  EXPECT_NE(error_of([] { parse_oci_index("[1,2", "index.json"); }).find("not valid JSON"),
            std::string::npos);
}

TEST(ImageManifest, DockerManifestPaths) {
  const auto images = parse_docker_manifest(
      R"([{"Config":"abc.json","RepoTags":["localhost/a:1"],"Layers":["./x/layer.tar","y.tar"]}])",
      "manifest.json");
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(images[0].layers, (std::vector<std::string>{"x/layer.tar", "y.tar"}));
  EXPECT_EQ(&select_docker_image(images, "1", "m"), &images[0]);
  EXPECT_EQ(&select_docker_image(images, "localhost/a:1", "m"), &images[0]);
  for (const char* bad : {"../x", "/etc/passwd", "a/../../b", ""}) {
    const std::string text = std::string(R"([{"Config":"c.json","Layers":[")") + bad + R"("]}])";
    EXPECT_NE(error_of([&] {
                parse_docker_manifest(text, "manifest.json");
              }).find("manifest.json[0].Layers[0]"),
              std::string::npos)
        << bad;
  }
  EXPECT_NE(error_of([] {
              parse_docker_manifest(R"([{"Config":"../c","Layers":[]}])", "mj");
            }).find("mj[0].Config"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_docker_manifest("[]", "mj"); }).find("no image"),
            std::string::npos);
}

TEST(ImageJson, Bounds) {
  const std::string deep = std::string(100, '[') + std::string(100, ']');
  EXPECT_NE(error_of([&] { parse_json_document(deep, "doc"); }).find("nested more than 64"),
            std::string::npos);
  // Brackets in strings do not count.
  EXPECT_NO_THROW(parse_json_document("{\"a\":\"" + std::string(100, '[') + "\"}", "doc"));
  const std::string big = "\"" + std::string(kMaxJsonBytes, 'x') + "\"";
  EXPECT_NE(error_of([&] { parse_json_document(big, "doc"); }).find("bytes, more than"),
            std::string::npos);
}

TEST(ImageConfigParse, FieldsAndErrors) {
  const ImageConfig c = parse_image_config(R"({"os":"linux","architecture":"amd64",
    "config":{"Entrypoint":null,"Cmd":["sh"],"Env":["A=1","B=x=y"],"WorkingDir":"/w",
              "User":"nobody:nogroup","ExposedPorts":{"80/tcp":{},"53/udp":{}},
              "StopSignal":"SIGTERM"},
    "rootfs":{"type":"layers","diff_ids":[")" + kDigest +
                                               R"("]}})",
                                           "config");
  EXPECT_FALSE(c.entrypoint);
  EXPECT_EQ(c.cmd, std::vector<std::string>{"sh"});
  EXPECT_EQ(c.env, (std::vector<std::string>{"A=1", "B=x=y"}));
  EXPECT_EQ(c.working_dir, "/w");
  EXPECT_EQ(c.user, "nobody:nogroup");
  EXPECT_EQ(c.exposed_ports, (std::vector<std::string>{"53/udp", "80/tcp"}));
  EXPECT_EQ(c.stop_signal, "SIGTERM");
  ASSERT_EQ(c.diff_ids.size(), 1u);
  EXPECT_EQ(parse_image_config("{}", "c").cmd, std::nullopt);
  EXPECT_NE(error_of([] {
              parse_image_config(R"({"config":{"Cmd":"sh"}})", "cfg");
            }).find("cfg.config.Cmd: an array was expected, not a string"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_image_config(R"({"config":{"Env":["A=1",2]}})", "cfg");
            }).find("cfg.config.Env[1]"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_image_config(R"({"config":{"Env":["NOEQUALS"]}})", "cfg");
            }).find("cfg.config.Env[0]"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_image_config(R"({"rootfs":{"type":"layers","diff_ids":["x"]}})", "cfg");
            }).find("cfg.rootfs.diff_ids[0]"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_image_config(R"({"config":{"User":5}})", "cfg");
            }).find("cfg.config.User"),
            std::string::npos);
}

}  // namespace
}  // namespace kiln::image
