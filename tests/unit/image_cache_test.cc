// Opening images (image/image_cache.h): OCI layout, oci-archive and docker-archive built here
// with libarchive, unpacked byte for byte, every blob verified, the cache reused, bad images
// leaving nothing behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "base/error.h"
#include "image/image_cache.h"
#include "image/temp_dir.h"
#include "tests/support/image_builder.h"

namespace kiln::image {
namespace {

using test::Compression;
using test::dir;
using test::file;
using test::hardlink;
using test::symlink;

class ImageCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = TempDir("/tmp", "kiln-image-test-");
    options_.cache_dir = work_.path() + "/cache";
    layers_ = {test::layer({dir("bin"), file("bin/sh", "#!shell\n", 0755), dir("etc"),
                            file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                            file("etc/old", "old"), dir("var"), file("var/lower", "l")}),
               test::layer({file("etc/.wh.old", ""), dir("var"), file("var/.wh..wh..opq", ""),
                            file("var/upper", "u"), symlink("sh", "/bin/sh"),
                            hardlink("bin/sh2", "bin/sh")},
                           Compression::kZstd)};
    config_ =
        test::config_json(layers_, {{"Entrypoint", {"/bin/sh"}},
                                    {"Cmd", {"-c", "echo hi"}},
                                    {"Env", {"PATH=/bin", "A=1"}},
                                    {"WorkingDir", "/var"},
                                    {"User", "0:0"},
                                    {"ExposedPorts", {{"80/tcp", nlohmann::json::object()}}}});
  }

  void check_tree(const UnpackedImage& img) {
    EXPECT_EQ(test::read_file(img.rootfs + "/bin/sh"), "#!shell\n");
    EXPECT_EQ(test::read_file(img.rootfs + "/bin/sh2"), "#!shell\n");
    EXPECT_FALSE(std::filesystem::exists(img.rootfs + "/etc/old"));
    EXPECT_FALSE(std::filesystem::exists(img.rootfs + "/var/lower"));
    EXPECT_EQ(test::read_file(img.rootfs + "/var/upper"), "u");
    EXPECT_EQ(std::filesystem::read_symlink(img.rootfs + "/sh"), "/bin/sh");
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::recursive_directory_iterator(img.rootfs))
      names.push_back(e.path().lexically_relative(img.rootfs));
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"bin", "bin/sh", "bin/sh2", "etc", "etc/passwd",
                                               "sh", "var", "var/upper"}));
    EXPECT_EQ(img.config.entrypoint, std::vector<std::string>{"/bin/sh"});
    EXPECT_EQ(img.config.cmd, (std::vector<std::string>{"-c", "echo hi"}));
    EXPECT_EQ(img.config.env, (std::vector<std::string>{"PATH=/bin", "A=1"}));
    EXPECT_EQ(img.config.working_dir, "/var");
    EXPECT_EQ(img.config.user, "0:0");
    EXPECT_EQ(img.config.exposed_ports, std::vector<std::string>{"80/tcp"});
  }

  std::string open_error(const std::string& ref) {
    try {
      open_image(ref, options_);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "";
  }

  // Nothing in the cache but an empty tmp/.
  void expect_cache_empty() {
    const std::string images = options_.cache_dir + "/images";
    if (!std::filesystem::exists(images)) return;
    for (const auto& e : std::filesystem::directory_iterator(images)) {
      EXPECT_EQ(e.path().filename(), "tmp") << e.path();
      EXPECT_TRUE(std::filesystem::is_empty(e.path())) << e.path() << " left behind";
    }
  }

  TempDir work_;
  CacheOptions options_;
  std::vector<test::Layer> layers_;
  nlohmann::json config_;
};

TEST_F(ImageCacheTest, OciLayoutUnpacksAndIsCached) {
  const auto oci = test::oci_layout(layers_, config_);
  const std::string layout = work_.path() + "/layout";
  test::write_files(layout, oci.files);
  const UnpackedImage img = open_image(layout, options_);
  EXPECT_TRUE(img.unpacked);
  EXPECT_EQ(img.format, ImageFormat::kOciLayout);
  EXPECT_EQ(img.config_digest.str(), oci.config_digest);
  EXPECT_EQ(img.dir, options_.cache_dir + "/images/sha256-" + img.config_digest.hex);
  check_tree(img);
  EXPECT_EQ(img.stats.entries, 13u);

  // Second open: the same entry, nothing unpacked (a marker left in the tree survives).
  test::write_file(img.rootfs + "/marker", "m");
  struct stat before {};
  ASSERT_EQ(::stat(img.rootfs.c_str(), &before), 0);
  const UnpackedImage again = open_image(layout + ":latest", options_);
  EXPECT_FALSE(again.unpacked);
  EXPECT_EQ(again.stats.entries, 0u);
  EXPECT_EQ(again.rootfs, img.rootfs);
  EXPECT_TRUE(std::filesystem::exists(again.rootfs + "/marker"));
  struct stat after {};
  ASSERT_EQ(::stat(img.rootfs.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_EQ(again.config.cmd, img.config.cmd);
}

TEST_F(ImageCacheTest, OciArchive) {
  const std::string tar = work_.path() + "/image.oci.tar";
  test::write_file(tar, test::tar_of_files(test::oci_layout(layers_, config_).files));
  const UnpackedImage img = open_image(tar, options_);
  EXPECT_EQ(img.format, ImageFormat::kOciArchive);
  check_tree(img);
  EXPECT_FALSE(open_image(tar, options_).unpacked);
  EXPECT_TRUE(std::filesystem::is_empty(options_.cache_dir + "/images/tmp")) << "staging removed";
}

TEST_F(ImageCacheTest, DockerArchiveUncompressedAndGzipLayers) {
  auto plain = layers_;
  plain[0] = test::layer({dir("bin"), file("bin/sh", "#!shell\n", 0755), dir("etc"),
                          file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                          file("etc/old", "old"), dir("var"), file("var/lower", "l")},
                         Compression::kNone);
  const auto cfg = test::config_json(plain, config_["config"]);
  const std::string tar = work_.path() + "/image.docker.tar";
  test::write_file(tar, test::tar_of_files(test::docker_archive(plain, cfg, "localhost/t:v1")));
  const UnpackedImage img = open_image(tar + ":v1", options_);
  EXPECT_EQ(img.format, ImageFormat::kDockerArchive);
  check_tree(img);
  EXPECT_EQ(img.config_digest, sha256_of(cfg.dump()));
  EXPECT_NE(open_error(tar + ":v2").find("no image tagged 'v2'"), std::string::npos);
  // The same files unpacked into a directory.
  const std::string dir = work_.path() + "/docker-dir";
  test::write_files(dir, test::docker_archive(plain, cfg, "localhost/t:v1"));
  options_.cache_dir += "-dir";
  const UnpackedImage from_dir = open_image(dir, options_);
  EXPECT_EQ(from_dir.format, ImageFormat::kDockerDir);
  check_tree(from_dir);
}

TEST_F(ImageCacheTest, SameImageFromEveryFormatSharesOneEntry) {
  const std::string tar = work_.path() + "/image.oci.tar";
  const auto oci = test::oci_layout(layers_, config_);
  test::write_file(tar, test::tar_of_files(oci.files));
  const std::string docker = work_.path() + "/image.docker.tar";
  test::write_file(docker, test::tar_of_files(test::docker_archive(layers_, config_, "t:1")));
  EXPECT_TRUE(open_image(tar, options_).unpacked);
  EXPECT_FALSE(open_image(docker, options_).unpacked) << "keyed by the config digest";
  // `docker save | gzip`: the whole archive compressed.
  std::vector<test::TarEntry> entries;
  for (const auto& [name, data] : test::docker_archive(layers_, config_, "t:1"))
    entries.push_back(file(name, data));
  const std::string gz = work_.path() + "/image.docker.tar.gz";
  test::write_file(gz, test::make_tar(entries, Compression::kGzip));
  const UnpackedImage img = open_image(gz, options_);
  EXPECT_EQ(img.format, ImageFormat::kDockerArchive);
  EXPECT_FALSE(img.unpacked);
  options_.cache_dir += "-fresh";
  check_tree(open_image(gz, options_));
}

TEST_F(ImageCacheTest, FlippedByteInLayerFailsNamingItAndLeavesNothing) {
  auto oci = test::oci_layout(layers_, config_);
  const std::string blob = "blobs/sha256/" + sha256_of(layers_[1].blob).hex;
  oci.files[blob][oci.files[blob].size() / 2] ^= 1;
  const std::string layout = work_.path() + "/layout";
  test::write_files(layout, oci.files);
  const std::string err = open_error(layout);
  EXPECT_NE(err.find("layer 2 (sha256:" + sha256_of(layers_[1].blob).hex + ")"), std::string::npos)
      << err;
  EXPECT_NE(err.find("does not match"), std::string::npos) << err;
  expect_cache_empty();
  // The same in an oci-archive (the staged copies go too).
  const std::string tar = work_.path() + "/bad.tar";
  test::write_file(tar, test::tar_of_files(oci.files));
  EXPECT_NE(open_error(tar).find("layer 2"), std::string::npos);
  expect_cache_empty();
}

TEST_F(ImageCacheTest, DockerArchiveLayerLinks) {
  // As podman writes it: <id>/layer.tar a symlink to ../<diff_id hex>.tar (the file after it).
  auto files = test::docker_archive(layers_, config_, "t:1");
  std::vector<test::TarEntry> entries;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::string name = "layer" + std::to_string(i) + "/layer.tar";
    const std::string real = sha256_of(layers_[i].uncompressed).hex + ".tar";
    entries.push_back(symlink(name, "../" + real));
    entries.push_back(file(real, files[name]));
    files.erase(name);
  }
  for (const auto& [name, data] : files) entries.push_back(file(name, data));
  const std::string tar = work_.path() + "/links.tar";
  test::write_file(tar, test::make_tar(entries));
  check_tree(open_image(tar, options_));
  // A link that leaves the archive is not followed anywhere.
  entries[0] = symlink("layer0/layer.tar", "../../../etc/passwd");
  entries.erase(entries.begin() + 1);
  test::write_file(tar, test::make_tar(entries));
  options_.cache_dir += "-2";
  const std::string err = open_error(tar);
  EXPECT_NE(err.find("layer0/layer.tar"), std::string::npos) << err;
  expect_cache_empty();
}

TEST_F(ImageCacheTest, DockerLayerCheckedAgainstDiffIds) {
  auto files = test::docker_archive(layers_, config_, "t:1");
  files["layer0/layer.tar"] = test::layer({file("other", "x")}).blob;
  const std::string tar = work_.path() + "/image.docker.tar";
  test::write_file(tar, test::tar_of_files(files));
  const std::string err = open_error(tar);
  EXPECT_NE(err.find("layer 1 (layer0/layer.tar)"), std::string::npos) << err;
  EXPECT_NE(err.find("diff_ids"), std::string::npos) << err;
  expect_cache_empty();
}

TEST_F(ImageCacheTest, DockerConfigCheckedAgainstItsName) {
  auto files = test::docker_archive(layers_, config_, "t:1");
  for (auto& [name, data] : files)
    if (name.ends_with(".json") && name != "manifest.json") data[data.size() - 2] ^= 1;
  const std::string tar = work_.path() + "/image.docker.tar";
  test::write_file(tar, test::tar_of_files(files));
  EXPECT_NE(open_error(tar).find("does not match its digest"), std::string::npos);
}

TEST_F(ImageCacheTest, DockerManifestPathEscapeRefused) {
  auto files = test::docker_archive(layers_, config_, "t:1");
  auto m = nlohmann::json::parse(files["manifest.json"]);
  m[0]["Layers"][0] = "../../etc/shadow";
  files["manifest.json"] = m.dump();
  const std::string tar = work_.path() + "/image.docker.tar";
  test::write_file(tar, test::tar_of_files(files));
  const std::string err = open_error(tar);
  EXPECT_NE(err.find("manifest.json[0].Layers[0]"), std::string::npos) << err;
  EXPECT_NE(err.find(".."), std::string::npos) << err;
}

TEST_F(ImageCacheTest, MissingBlobAndBadDigestNamed) {
  auto oci = test::oci_layout(layers_, config_);
  const std::string layout = work_.path() + "/layout";
  auto files = oci.files;
  files.erase("blobs/sha256/" + sha256_of(layers_[0].blob).hex);
  test::write_files(layout, files);
  std::string err = open_error(layout);
  EXPECT_NE(err.find("layer 1"), std::string::npos) << err;
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
  expect_cache_empty();

  auto index = nlohmann::json::parse(oci.files["index.json"]);
  index["manifests"][0]["digest"] = "md5:1234";
  test::write_file(layout + "/index.json", index.dump());
  err = open_error(layout);
  EXPECT_NE(err.find("index.json.manifests[0].digest"), std::string::npos) << err;
}

TEST_F(ImageCacheTest, HostileLayerLeavesNothing) {
  const std::string outside = work_.path() + "/outside";
  std::filesystem::create_directories(outside);
  std::vector<test::Layer> evil = {test::layer({symlink("evil", outside)}),
                                   test::layer({file("evil/file", "x")})};
  const std::string layout = work_.path() + "/layout";
  test::write_files(layout, test::oci_layout(evil, test::config_json(evil)).files);
  const std::string err = open_error(layout);
  EXPECT_NE(err.find("layer 2"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(outside + "/file"));
  expect_cache_empty();
}

TEST_F(ImageCacheTest, NestedIndexPicksLinuxAmd64) {
  // index.json -> an image index listing arm64 and amd64 manifests -> the amd64 one.
  auto oci = test::oci_layout(layers_, config_, "");
  const auto top = nlohmann::json::parse(oci.files["index.json"]);
  nlohmann::json amd64 = top["manifests"][0];
  amd64["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
  nlohmann::json arm64 = amd64;
  arm64["digest"] = "sha256:" + std::string(64, '0');  // absent: must not be read
  arm64["platform"]["architecture"] = "arm64";
  const std::string nested = nlohmann::json{
      {"schemaVersion", 2},
      {"mediaType", "application/vnd.oci.image.index.v1+json"},
      {"manifests",
       {arm64, amd64}}}.dump();
  oci.files["blobs/sha256/" + sha256_of(nested).hex] = nested;
  nlohmann::json d = test::descriptor("application/vnd.oci.image.index.v1+json", nested);
  d["annotations"] = {{"org.opencontainers.image.ref.name", "multi"}};
  oci.files["index.json"] =
      nlohmann::json{{"schemaVersion", 2}, {"manifests", nlohmann::json::array({d})}}.dump();
  const std::string layout = work_.path() + "/layout";
  test::write_files(layout, oci.files);
  check_tree(open_image(layout + ":multi", options_));
}

TEST_F(ImageCacheTest, SizeMismatchNamed) {
  auto oci = test::oci_layout(layers_, config_);
  // The manifest claims one byte more for layer 1; the manifest's own digest is then updated
  // too, so only the size is wrong.
  auto index = nlohmann::json::parse(oci.files["index.json"]);
  const std::string old_manifest =
      oci.files["blobs/sha256/" + index["manifests"][0]["digest"].get<std::string>().substr(7)];
  auto m = nlohmann::json::parse(old_manifest);
  m["layers"][0]["size"] = m["layers"][0]["size"].get<uint64_t>() + 1;
  const std::string manifest = m.dump();
  oci.files["blobs/sha256/" + sha256_of(manifest).hex] = manifest;
  index["manifests"][0] = test::descriptor("application/vnd.oci.image.manifest.v1+json", manifest);
  oci.files["index.json"] = index.dump();
  const std::string layout = work_.path() + "/layout";
  test::write_files(layout, oci.files);
  const std::string err = open_error(layout);
  EXPECT_NE(err.find("layer 1 (sha256:" + sha256_of(layers_[0].blob).hex + "): size is"),
            std::string::npos)
      << err;
  expect_cache_empty();
}

TEST_F(ImageCacheTest, KilledUnpackLeavesNoEntry) {
  // Many small entries, so that the unpack is still running when the child is killed (tried
  // up to three times: on a loaded machine the child may finish first).
  std::vector<test::TarEntry> many;
  for (int i = 0; i < 3000; ++i) many.push_back(file("f" + std::to_string(i), "x"));
  std::vector<test::Layer> big = {test::layer(many, Compression::kNone)};
  const std::string layout = work_.path() + "/layout";
  test::write_files(layout, test::oci_layout(big, test::config_json(big)).files);
  bool killed = false;
  for (int attempt = 0; attempt < 3 && !killed; ++attempt) {
    options_.cache_dir = work_.path() + "/cache" + std::to_string(attempt);
    const std::string tmp = options_.cache_dir + "/images/tmp";
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      try {
        open_image(layout, options_);
      } catch (...) {
      }
      ::_exit(0);
    }
    // Kill it as soon as its unpack directory has a rootfs with something in it.
    for (bool seen = false; !seen;) {
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(tmp, ec))
        if (std::filesystem::exists(e.path() / "rootfs" / "f1")) seen = true;
      if (!seen && ::waitpid(child, nullptr, WNOHANG) == child) break;  // finished: try again
      if (seen) ::kill(child, SIGKILL);
    }
    int status = 0;
    if (::waitpid(child, &status, 0) == child && WIFSIGNALED(status)) killed = true;
  }
  ASSERT_TRUE(killed) << "the unpack finished before it could be killed, three times";
  for (const auto& e : std::filesystem::directory_iterator(options_.cache_dir + "/images"))
    EXPECT_EQ(e.path().filename(), "tmp") << "a killed unpack left " << e.path();
  // The next open unpacks the whole image.
  const UnpackedImage img = open_image(layout, options_);
  EXPECT_TRUE(img.unpacked);
  EXPECT_EQ(img.stats.entries, 3000u);
  EXPECT_EQ(test::read_file(img.rootfs + "/f2999"), "x");
}

TEST_F(ImageCacheTest, WrongPlatformRefused) {
  auto cfg = config_;
  cfg["architecture"] = "arm64";
  const std::string layout = work_.path() + "/layout";
  test::write_files(layout, test::oci_layout(layers_, cfg).files);
  EXPECT_NE(open_error(layout).find("linux/arm64, not linux/amd64"), std::string::npos);
}

TEST_F(ImageCacheTest, NotAnImage) {
  EXPECT_NE(open_error(work_.path()).find("not an image"), std::string::npos);
  test::write_file(work_.path() + "/x.tar", test::tar_of_files({{"hello", "world"}}));
  EXPECT_NE(open_error(work_.path() + "/x.tar").find("not an oci-archive or docker-archive"),
            std::string::npos);
  EXPECT_NE(open_error(work_.path() + "/nope").find("does not exist"), std::string::npos);
}

}  // namespace
}  // namespace kiln::image
