// End-to-end virtio-blk: the virtio_blk test guest drives Kiln's virtio-mmio block devices with
// its own minimal driver; the host prepares the images and checks them after `kiln` exits.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "tests/e2e/kiln_process.h"

namespace kiln::e2e {
namespace {

bool has_line(const std::string& out, const std::string& line) {
  std::istringstream in(out);
  std::string l;
  while (std::getline(in, l)) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    if (l == line) return true;
  }
  return false;
}

std::string fnv_hex(const std::string& data) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : data) h = (h ^ c) * 0x100000001b3ull;
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string read_file(const std::string& path) {
  return test::read_whole_file(path);
}

TEST(VirtioBlkGuest, ReadsWritesFlushesAndHonoursReadOnly) {
  KILN_REQUIRE_KVM();
  std::mt19937 gen(7);
  std::string rw(1 << 20, '\0'), ro(64 << 10, '\0');
  for (auto& c : rw) c = static_cast<char>(gen());
  for (auto& c : ro) c = static_cast<char>(gen());
  TempFile rw_img(rw), ro_img(ro);

  KilnRun r = run_kiln({"run", "--kernel", guest_path("virtio_blk"), "--disk",
                        rw_img.path() + ",id=KILNSERIAL0", "--disk", ro_img.path() + ",ro"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const std::vector<std::string> expected = {
      "VBLK dev=0 id=2 version=2 capacity=2048 ro=0 irq=5",
      "VBLK dev=0 serial=KILNSERIAL0",
      "VBLK dev=0 read status=0 fnv1a64=" + fnv_hex(rw.substr(0, 4096)),
      "VBLK dev=0 write status=0",
      "VBLK dev=0 flush status=0",
      "VBLK dev=0 readback match=1",
      "VBLK dev=0 past-end status=1",
      "VBLK dev=1 id=2 version=2 capacity=128 ro=1 irq=6",
      "VBLK dev=1 read status=0 fnv1a64=" + fnv_hex(ro.substr(0, 4096)),
      "VBLK dev=1 ro-write status=1",
      "VBLK dev=1 past-end status=1",
      "VBLK done devices=2",
  };
  for (const std::string& line : expected)
    EXPECT_TRUE(has_line(r.out, line)) << line << "\n" << describe(r);
  // Completions were signalled through the device's interrupt line (irqfd), not just polled.
  for (const char* dev : {"VBLK dev=0 irqs=", "VBLK dev=1 irqs="}) {
    const size_t at = r.out.find(dev);
    ASSERT_NE(at, std::string::npos) << dev << "\n" << describe(r);
    EXPECT_GE(std::stoi(r.out.substr(at + std::strlen(dev))), 1) << describe(r);
  }

  // The guest's write is in the image on the host; the read-only image is untouched.
  std::string want(4096, '\0');
  for (size_t k = 0; k < want.size(); ++k) want[k] = static_cast<char>(k * 7);
  want.replace(0, 16, "KILN-WRITE-DEV-0");
  const std::string after = read_file(rw_img.path());
  ASSERT_EQ(after.size(), rw.size());
  EXPECT_EQ(after.substr(8 * 512, 4096), want);
  EXPECT_EQ(after.substr(0, 8 * 512), rw.substr(0, 8 * 512));
  EXPECT_EQ(read_file(ro_img.path()), ro);
}

TEST(VirtioBlkBadInput, RefusedBeforeBoot) {
  TempFile odd(std::string(1000, 'x'));
  TempFile ok(std::string(4096, 'x'));
  struct Case {
    std::vector<std::string> extra;
    std::string word;
  } cases[] = {
      {{"--disk", "/nonexistent/disk.img"}, "/nonexistent/disk.img"},
      {{"--disk", odd.path()}, "multiple of 512"},
      {{"--disk", ok.path() + ",rw"}, "unknown option 'rw'"},
      {{"--disk", ok.path() + ",id=" + std::string(65, 'a')}, "id: must be 1 to 64 letters"},
      {{"--disk", ok.path() + ",id=a-b"}, "id: must be 1 to 64 letters"},  // as PUT /drives
      {{"--disk", ok.path() + ",id="}, "id: must be 1 to 64 letters"},
      // One id, one drive (the API would replace the first; two flags are a mistake).
      {{"--disk", ok.path() + ",id=data", "--disk", ok.path() + ",ro,id=data"},
       "--disk " + ok.path() + ",ro,id=data: id: drive \"data\" is already given"},
      {{"--rootfs", ok.path(), "--disk", ok.path() + ",id=rootfs"},
       "id: drive \"rootfs\" is already given"},
      {{"--rootfs", "/nonexistent/root.img"}, "/nonexistent/root.img"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"run", "--kernel", guest_path("hello")};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    KilnRun r = run_kiln(args);
    EXPECT_EQ(r.exit_code, 2) << describe(r);
    EXPECT_NE(r.err.find(c.word), std::string::npos) << c.word << "\n" << describe(r);
  }
}

}  // namespace
}  // namespace kiln::e2e
