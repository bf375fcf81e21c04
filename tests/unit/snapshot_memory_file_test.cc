// base/snapshot/memory_file.h and GuestMemory::map_private: a Full file holds every non-zero
// page (zero pages as holes) and a trailer naming the snapshot; a Diff only the dirty pages;
// the rebase of a Diff onto its base; a restore maps it copy-on-write (the file is never
// written) and refuses a file of another size or another snapshot.
#include "base/snapshot/memory_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "base/error.h"
#include "tests/support/test_files.h"

namespace kiln::snapshot {
namespace {

constexpr uint64_t kPage = 4096;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class MemoryFileTest : public ::testing::Test {
 protected:
  const std::vector<GuestMemory::Range> ranges_ = {{0, 64 * kPage}, {1 << 20, 32 * kPage}};
  test::TempDir dir_;
  std::string file(const std::string& name) const { return dir_.path() + "/" + name; }
  static uint64_t total() { return 96 * kPage; }
};

TEST_F(MemoryFileTest, AFullFileRestoresEveryRegionCopyOnWrite) {
  GuestMemory mem(ranges_);
  ASSERT_TRUE(mem.fill(3 * kPage, 0xab, kPage));
  ASSERT_TRUE(mem.write_obj<uint64_t>((1 << 20) + 5 * kPage + 8, 0x1122334455667788));
  const MemoryId id = new_memory_id();
  write_memory_file(mem, file("m"), id);

  struct stat st {};
  ASSERT_EQ(::stat(file("m").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), total() + kMemoryTrailerSize);
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, 4 * kPage) << "zero pages were written";
  EXPECT_EQ((st.st_mode & 0777), 0600u);

  const std::string before = slurp(file("m"));
  UniqueFd fd = open_memory_file(file("m"), total(), id);
  GuestMemory restored = GuestMemory::map_private(ranges_, fd.get());
  EXPECT_EQ(restored.read_obj<uint8_t>(3 * kPage + 100), 0xab);
  EXPECT_EQ(restored.read_obj<uint64_t>((1 << 20) + 5 * kPage + 8), 0x1122334455667788u);
  EXPECT_EQ(restored.read_obj<uint8_t>(10 * kPage), 0);
  // The guest's writes stay in the process.
  ASSERT_TRUE(restored.fill(0, 0x5a, 64 * kPage));
  EXPECT_EQ(slurp(file("m")), before);
}

TEST_F(MemoryFileTest, AFileOfAnotherSizeOrSnapshotIsRefused) {
  GuestMemory mem(ranges_);
  const MemoryId id = new_memory_id();
  write_memory_file(mem, file("m"), id);
  MemoryId other = id;
  other[0] ^= 1;
  auto message = [&](const std::string& path, uint64_t size, const MemoryId& want) {
    try {
      open_memory_file(path, size, want);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(file("m"), total(), other).find("another snapshot"), std::string::npos);
  EXPECT_NE(message(file("m"), total() - kPage, id).find("bytes"), std::string::npos);
  EXPECT_NE(message(file("none"), total(), id).find("No such file"), std::string::npos);
  ASSERT_EQ(::truncate(file("m").c_str(), static_cast<off_t>(total() + 8)), 0);
  EXPECT_NE(message(file("m"), total(), id).find("bytes"), std::string::npos);
  // A file of the right size whose trailer is not Kiln's.
  std::ofstream(file("zero"), std::ios::binary) << std::string(total() + kMemoryTrailerSize, '\0');
  EXPECT_NE(message(file("zero"), total(), id).find("no trailer"), std::string::npos);
  EXPECT_NE(message(dir_.path(), total(), id).find("not a regular file"), std::string::npos);
}

TEST_F(MemoryFileTest, ADiffRebasedOntoItsBaseIsTheFullMemory) {
  GuestMemory mem(ranges_);
  ASSERT_TRUE(mem.fill(0, 0x11, 8 * kPage));
  write_memory_file(mem, file("base"), new_memory_id());
  // Later writes: a page changed, a page zeroed, a page in the second region.
  ASSERT_TRUE(mem.fill(2 * kPage, 0x22, kPage));
  ASSERT_TRUE(mem.fill(5 * kPage, 0, kPage));
  ASSERT_TRUE(mem.fill((1 << 20) + 31 * kPage, 0x33, kPage));
  DirtyBitmaps dirty = {std::vector<uint64_t>(1), std::vector<uint64_t>(1)};
  dirty[0][0] = (1u << 2) | (1u << 5);
  dirty[1][0] = uint64_t{1} << 31;
  const MemoryId id = new_memory_id();
  write_memory_file(mem, file("diff"), id, &dirty);
  write_memory_file(mem, file("full"), new_memory_id());

  struct stat st {};
  ASSERT_EQ(::stat(file("diff").c_str(), &st), 0);
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, 5 * kPage);
  rebase_memory_file(file("base"), file("diff"));
  const std::string merged = slurp(file("base")), full = slurp(file("full"));
  ASSERT_EQ(merged.size(), full.size());
  EXPECT_TRUE(merged.compare(0, total(), full, 0, total()) == 0);
  // The merged file now pairs with the diff's state (its id).
  EXPECT_NO_THROW(open_memory_file(file("base"), total(), id));

  // Files of different sizes are not one VM's.
  std::ofstream(file("small"), std::ios::binary) << std::string(kPage, 'x');
  EXPECT_THROW(rebase_memory_file(file("base"), file("small")), Error);
  EXPECT_THROW(rebase_memory_file(file("base"), file("missing")), Error);
}

TEST_F(MemoryFileTest, AFailedWriteLeavesTheOldFile) {
  GuestMemory mem(ranges_);
  write_memory_file(mem, file("m"), new_memory_id());
  const std::string before = slurp(file("m"));
  DirtyBitmaps wrong(1);  // one bitmap for two regions
  EXPECT_THROW(write_memory_file(mem, file("m"), new_memory_id(), &wrong), Error);
  EXPECT_EQ(slurp(file("m")), before);
  EXPECT_THROW(write_memory_file(mem, file("no/such/dir/m"), new_memory_id()), Error);
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_.path())) ++entries;
  EXPECT_EQ(entries, 1u) << "a temporary file was left";
}

}  // namespace
}  // namespace kiln::snapshot
