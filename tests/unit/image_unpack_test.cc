// Layer unpacking (image/layer_unpack.h): trees byte for byte, whiteouts and opaque
// directories, links, and hostile layers that try to write outside the root.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "base/error.h"
#include "image/layer_unpack.h"
#include "image/temp_dir.h"
#include "tests/support/image_builder.h"

namespace kiln::image {
namespace {

using test::Compression;
using test::dir;
using test::file;
using test::hardlink;
using test::symlink;
using test::TarEntry;

class UnpackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = TempDir("/tmp", "kiln-unpack-test-");
    root_ = work_.path() + "/rootfs";
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
  }
  // Writes the layer as a file and applies it.
  void apply(const std::vector<TarEntry>& entries, Compression c = Compression::kGzip,
             UnpackLimits limits = {}) {
    const std::string path = work_.path() + "/layer" + std::to_string(n_++);
    test::write_file(path, test::make_tar(entries, c));
    if (!unpacker_) unpacker_.emplace(root_, limits);
    unpacker_->apply(path, "layer " + std::to_string(n_));
  }
  std::string error_of(const std::vector<TarEntry>& entries) {
    try {
      apply(entries);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "";
  }
  bool exists(const std::string& rel) {
    struct stat st {};
    return ::lstat((root_ + "/" + rel).c_str(), &st) == 0;
  }
  std::string read(const std::string& rel) { return test::read_file(root_ + "/" + rel); }

  TempDir work_;
  std::string root_;
  std::optional<LayerUnpacker> unpacker_;
  int n_ = 0;
};

TEST_F(UnpackTest, UnpacksFilesDirsLinksModesAndTimes) {
  TarEntry exe = file("bin/tool",
                      std::string("\x7f"
                                  "ELF\0\x01\xff",
                                  7),
                      0755);
  exe.mtime = 1600000000;
  TarEntry conf = file("etc/conf", "key=value\n", 0600);
  conf.uid = 1234;
  conf.gid = 5678;
  apply({dir("bin"),
         exe,
         dir("etc", 0700),
         conf,
         symlink("etc/link", "/etc/conf"),
         symlink("rel", "bin/tool"),
         hardlink("bin/tool2", "bin/tool"),
         {"run/fifo", TarEntry::kFifo, "", 0600}});
  EXPECT_EQ(read("bin/tool"), std::string("\x7f"
                                          "ELF\0\x01\xff",
                                          7));
  EXPECT_EQ(read("etc/conf"), "key=value\n");
  struct stat st {
  }, st2{};
  ASSERT_EQ(::lstat((root_ + "/bin/tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(st.st_mtime, 1600000000);
  ASSERT_EQ(::lstat((root_ + "/bin/tool2").c_str(), &st2), 0);
  EXPECT_EQ(st.st_ino, st2.st_ino) << "a hard link shares its inode";
  EXPECT_EQ(st.st_nlink, 2u);
  ASSERT_EQ(::lstat((root_ + "/etc").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(::lstat((root_ + "/etc/conf").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  if (::geteuid() == 0) {
    EXPECT_EQ(st.st_uid, 1234u) << "ownership is kept when running as root";
    EXPECT_EQ(st.st_gid, 5678u);
  } else {
    EXPECT_EQ(st.st_uid, ::geteuid());
  }
  ASSERT_EQ(::lstat((root_ + "/etc/link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(std::filesystem::read_symlink(root_ + "/etc/link"), "/etc/conf")
      << "an absolute symlink is kept as written, not rewritten or followed";
  ASSERT_EQ(::lstat((root_ + "/run/fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(unpacker_->stats().entries, 8u);
  EXPECT_EQ(unpacker_->stats().bytes, 7u + 10u);
}

TEST_F(UnpackTest, WhiteoutDeletesLowerFileAndDirectory) {
  apply({dir("a"), file("a/keep", "k"), file("a/gone", "g"), dir("d"), file("d/x", "x")});
  apply({file("a/.wh.gone", ""), file(".wh.d", ""), file("a/new", "n")}, Compression::kNone);
  EXPECT_TRUE(exists("a/keep"));
  EXPECT_FALSE(exists("a/gone"));
  EXPECT_FALSE(exists("a/.wh.gone")) << "whiteout files themselves are not extracted";
  EXPECT_FALSE(exists("d"));
  EXPECT_EQ(read("a/new"), "n");
}

TEST_F(UnpackTest, WhiteoutInSameLayerDoesNotHideItsOwnEntry) {
  apply({file("f", "lower")});
  apply({file("f", "upper"), file(".wh.f", "")});
  EXPECT_EQ(read("f"), "upper");
}

TEST_F(UnpackTest, OpaqueDirectoryHidesOnlyLowerContent) {
  apply({dir("o"), file("o/lower1", "1"), dir("o/sub"), file("o/sub/lower2", "2"),
         file("other", "o")});
  // The opaque marker after the layer's own entry in o/: that entry stays.
  apply({dir("o"), file("o/mine", "m"), file("o/.wh..wh..opq", ""), file("o/mine2", "m2")});
  EXPECT_FALSE(exists("o/lower1"));
  EXPECT_FALSE(exists("o/sub"));
  EXPECT_FALSE(exists("o/.wh..wh..opq"));
  EXPECT_EQ(read("o/mine"), "m");
  EXPECT_EQ(read("o/mine2"), "m2");
  EXPECT_EQ(read("other"), "o");
}

TEST_F(UnpackTest, EntryReplacesDifferentKindBelow) {
  apply({dir("x"), file("x/inner", "i"), file("y", "file"), symlink("z", "/nowhere")});
  apply({file("x", "now a file"), dir("y"), file("y/f", "f"), file("z", "now a file")});
  EXPECT_EQ(read("x"), "now a file");
  EXPECT_EQ(read("y/f"), "f");
  struct stat st {};
  ASSERT_EQ(::lstat((root_ + "/z").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode)) << "a symlink replaced, not written through";
}

TEST_F(UnpackTest, HardLinkAcrossLayers) {
  apply({file("base", "shared")});
  apply({hardlink("again", "base")});
  EXPECT_EQ(read("again"), "shared");
}

TEST_F(UnpackTest, ZstdLayer) {
  apply({file("z", std::string(100000, 'z'))}, Compression::kZstd);
  EXPECT_EQ(read("z"), std::string(100000, 'z'));
}

TEST_F(UnpackTest, RefusesDotDot) {
  const std::string outside = work_.path() + "/x";
  const std::string err = error_of({file("../x", "escaped")});
  EXPECT_NE(err.find("../x"), std::string::npos) << err;
  EXPECT_NE(err.find("layer 1"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(outside));
  EXPECT_NE(error_of({file("a/../../x", "escaped")}).find(".."), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(outside));
}

TEST_F(UnpackTest, RefusesAbsolutePath) {
  const std::string target = work_.path() + "/abs";
  const std::string err = error_of({file(target, "escaped")});
  EXPECT_NE(err.find("absolute"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(target));
}

TEST_F(UnpackTest, RefusesWritingThroughSymlinkOutOfRoot) {
  const std::string outside = work_.path() + "/outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  // In one layer, and with the symlink in a lower layer.
  std::string err = error_of({symlink("evil", outside), file("evil/file", "escaped")});
  EXPECT_NE(err.find("evil/file"), std::string::npos) << err;
  EXPECT_NE(err.find("symlink"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(outside + "/file"));
  err = error_of({symlink("evil2", outside)});
  ASSERT_EQ(err, "");
  err = error_of({file("evil2/file", "escaped")});
  EXPECT_NE(err.find("symlink 'evil2'"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(outside + "/file"));
  // A whiteout through the symlink deletes nothing outside.
  test::write_file(outside + "/precious", "p");
  err = error_of({file("evil2/.wh.precious", "")});
  EXPECT_NE(err.find("symlink"), std::string::npos) << err;
  EXPECT_TRUE(std::filesystem::exists(outside + "/precious"));
  // Nor does an opaque marker there.
  err = error_of({file("evil2/.wh..wh..opq", "")});
  EXPECT_NE(err.find("symlink"), std::string::npos) << err;
  EXPECT_TRUE(std::filesystem::exists(outside + "/precious"));
  // A hard link to a file outside through the symlink.
  err = error_of({hardlink("stolen", "evil2/precious")});
  EXPECT_NE(err.find("symlink"), std::string::npos) << err;
  EXPECT_FALSE(exists("stolen"));
}

TEST_F(UnpackTest, RefusesHardLinkOutOfRoot) {
  const std::string err = error_of({hardlink("h", "../../etc/passwd")});
  EXPECT_NE(err.find(".."), std::string::npos) << err;
  EXPECT_FALSE(exists("h"));
}

TEST_F(UnpackTest, EntryAndSizeLimits) {
  UnpackLimits limits;
  limits.max_entries = 3;
  try {
    apply({file("1", ""), file("2", ""), file("3", ""), file("4", "")}, Compression::kGzip, limits);
    FAIL() << "4 entries accepted with a limit of 3";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("more than 3 entries"), std::string::npos) << e.what();
  }
  unpacker_.reset();
  limits = {};
  limits.max_bytes = 1000;
  apply({file("a", std::string(600, 'a'))}, Compression::kGzip, limits);
  try {
    apply({file("b", std::string(600, 'b'))});
    FAIL() << "1200 bytes accepted with a limit of 1000";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("more than 1000 bytes"), std::string::npos) << e.what();
  }
}

TEST_F(UnpackTest, DeviceNodesNeedRoot) {
  apply({{"dev/null", TarEntry::kCharDev, "", 0666}});
  struct stat st {};
  if (::geteuid() == 0) {
    ASSERT_EQ(::lstat((root_ + "/dev/null").c_str(), &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode));
    EXPECT_EQ(unpacker_->stats().skipped_devices, 0u);
  } else {
    EXPECT_FALSE(exists("dev/null"));
    EXPECT_EQ(unpacker_->stats().skipped_devices, 1u);
  }
}

TEST_F(UnpackTest, GarbageLayerIsAnError) {
  const std::string path = work_.path() + "/garbage";
  test::write_file(path, std::string(4096, '\x42'));
  LayerUnpacker u(root_, {});
  try {
    u.apply(path, "layer 7 (sha256:abc)");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("layer 7"), std::string::npos) << e.what();
  }
}

TEST(ImageTempDir, RemovesReadOnlyTreesWithoutFollowingLinks) {
  std::string path, outside;
  TempDir keep("/tmp", "kiln-tempdir-outside-");
  outside = keep.path();
  test::write_file(outside + "/precious", "p");
  {
    TempDir t("/tmp", "kiln-tempdir-");
    path = t.path();
    std::filesystem::create_directories(path + "/ro/deeper");
    test::write_file(path + "/ro/deeper/f", "x");
    std::filesystem::create_directory_symlink(outside, path + "/ro/link");
    ASSERT_EQ(::chmod((path + "/ro/deeper").c_str(), 0), 0);
    ASSERT_EQ(::chmod((path + "/ro").c_str(), 0555), 0);
    ASSERT_EQ(::chmod(outside.c_str(), 0555), 0);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(test::read_file(outside + "/precious"), "p");
  struct stat st {};
  ASSERT_EQ(::stat(outside.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0555u) << "the link's target was not touched";
  ::chmod(outside.c_str(), 0755);
}

TEST(LayerDiffId, HashesTheUncompressedStream) {
  TempDir dir("/tmp", "kiln-diffid-");
  const auto tar = test::make_tar({file("a", "content")});
  test::write_file(dir.path() + "/l.gz",
                   test::make_tar({file("a", "content")}, Compression::kGzip));
  test::write_file(dir.path() + "/l", tar);
  EXPECT_EQ(layer_diff_id(dir.path() + "/l.gz", "l"), sha256_of(tar));
  EXPECT_EQ(layer_diff_id(dir.path() + "/l", "l"), sha256_of(tar));
}

}  // namespace
}  // namespace kiln::image
