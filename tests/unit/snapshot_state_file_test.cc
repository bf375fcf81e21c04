// base/snapshot/: the state file's round trip, and every way a file that should not load is
// refused before a section is handed out: each truncation, each flipped byte, another format
// version, another host CPU; the atomic commit; the byte reader's bounds.
#include "base/snapshot/state_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/snapshot/bytes.h"

namespace kiln::snapshot {
namespace {

namespace fs = std::filesystem;

HostIdentity test_host() {
  return {"GenuineTest", 0x800f12};
}

StateWriter sample() {
  StateWriter w(test_host());
  ByteWriter vcpu;
  vcpu.u64(0xfffff000);
  vcpu.u32(7);
  vcpu.blob("xsave");
  w.add("vcpu0", vcpu.take());
  w.add("devices/serial", {1, 2, 3});
  w.add("empty", {});
  return w;
}

std::string error_of(const std::vector<uint8_t>& bytes, const HostIdentity& host = test_host()) {
  try {
    StateFile::decode(bytes, "snapshot s", host);
  } catch (const kiln::Error& e) {
    return e.what();
  }
  return "loaded";
}

TEST(SnapshotStateFile, RoundTrip) {
  StateFile f = StateFile::decode(sample().encode(), "snapshot s", test_host());
  EXPECT_EQ(f.names(), (std::vector<std::string>{"devices/serial", "empty", "vcpu0"}));
  EXPECT_EQ(f.section("devices/serial"), (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_TRUE(f.section("empty").empty());
  const auto& v = f.section("vcpu0");
  ByteReader r(v.data(), v.size(), "vcpu0");
  EXPECT_EQ(r.u64(), 0xfffff000u);
  EXPECT_EQ(r.u32(), 7u);
  EXPECT_EQ(r.blob(16), "xsave");
  r.finish();
  EXPECT_THROW(f.section("vcpu1"), kiln::Error);
}

TEST(SnapshotStateFile, EveryTruncationAndEveryFlippedByteIsRefused) {
  std::vector<uint8_t> good = sample().encode();
  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
    EXPECT_NE(error_of(cut), "loaded") << n;
  }
  for (size_t i = 0; i < good.size(); ++i) {
    std::vector<uint8_t> bad = good;
    bad[i] ^= 0x40;
    EXPECT_NE(error_of(bad), "loaded") << i;
  }
  std::vector<uint8_t> cut(good.begin(), good.end() - 1);
  EXPECT_EQ(error_of(cut),
            "snapshot s: the checksum does not match: the file is truncated or corrupted (take "
            "the snapshot again)");
  EXPECT_EQ(error_of({'n', 'o', 'p', 'e'}),
            "snapshot s: not a Kiln state file (no KILNSNAP header)");
}

TEST(SnapshotStateFile, AnotherHostCpuIsRefused) {
  EXPECT_EQ(error_of(sample().encode(), {"AuthenticAMD", 0xa00f11}),
            "snapshot s: taken on a GenuineTest CPU (signature 0x800f12); this host has a "
            "AuthenticAMD CPU (signature 0xa00f11) (restore it on the same kind of host)");
}

TEST(SnapshotStateFile, AnotherFormatVersionIsRefused) {
  std::vector<uint8_t> bytes = sample().encode();
  bytes.resize(bytes.size() - 4);
  bytes[8] = 2;  // the version, after the magic; the CRC made again so only it differs
  uint32_t crc = static_cast<uint32_t>(crc32_z(crc32_z(0L, Z_NULL, 0), bytes.data(), bytes.size()));
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<uint8_t>(crc >> (8 * i)));
  EXPECT_EQ(error_of(bytes), "snapshot s: format version 2 (this Kiln reads version 1)");
}

TEST(SnapshotStateFile, CommitIsAtomicAndLoads) {
  fs::path dir = fs::temp_directory_path() / ("kiln-snap-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::string path = (dir / "state").string();
  sample().commit(path);
  StateFile f = StateFile::load(path, test_host());
  EXPECT_EQ(f.section("devices/serial").size(), 3u);
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  // A commit that cannot finish leaves the old file and no temporary one.
  StateWriter big(test_host());
  big.add("x", {9});
  EXPECT_THROW(big.commit((dir / "missing-dir" / "state").string()), kiln::Error);
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1u);
  EXPECT_EQ(StateFile::load(path, test_host()).section("devices/serial").size(), 3u);
  // Truncated on disk: refused by load too.
  fs::resize_file(path, fs::file_size(path) - 3);
  EXPECT_THROW(StateFile::load(path, test_host()), kiln::Error);
  EXPECT_THROW(StateFile::load((dir / "none").string(), test_host()), kiln::Error);
  fs::remove_all(dir);
}

TEST(SnapshotBytes, ReadsAreBounded) {
  ByteWriter w;
  w.u16(0xbeef);
  w.blob("abc");
  auto bytes = w.take();
  ByteReader r(bytes.data(), bytes.size(), "s");
  EXPECT_EQ(r.u16(), 0xbeef);
  EXPECT_THROW(ByteReader(bytes.data(), 5, "s").u64(), kiln::Error);  // 3 bytes short
  ByteReader small(bytes.data() + 2, bytes.size() - 2, "s");
  EXPECT_THROW(small.blob(2), kiln::Error);  // 3 bytes over a bound of 2
  EXPECT_EQ(r.blob(3), "abc");
  r.finish();
  ByteReader extra(bytes.data(), bytes.size(), "s");
  extra.u16();
  EXPECT_THROW(extra.finish(), kiln::Error);
  std::vector<uint8_t> lying = {0xff, 0xff, 0xff, 0x0f, 'a'};  // a 256 MiB blob of 1 byte
  EXPECT_THROW(ByteReader(lying.data(), lying.size(), "s").blob(1u << 30), kiln::Error);
}

}  // namespace
}  // namespace kiln::snapshot
