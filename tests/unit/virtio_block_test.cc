#include "devices/virtio/block/block_device.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <memory>
#include <vector>

#include "devices/virtio/mmio_transport.h"
#include "tests/support/test_files.h"
#include "tests/support/virtqueue_driver.h"
#include "vmm/error.h"

namespace kiln::virtio {
namespace {

using testsupport::DriverBuffer;
using testsupport::MmioDriver;
using testsupport::TempFile;
using testsupport::VirtqueueDriver;
namespace reg = testsupport::mmio;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kImageSize = kMiB;
constexpr uint64_t kSectors = kImageSize / 512;

constexpr uint32_t kIn = 0, kOut = 1, kFlush = 4, kGetId = 8, kDiscard = 11, kWriteZeroes = 13;
constexpr uint8_t kOk = 0, kIoErr = 1, kUnsupp = 2;
constexpr uint32_t kFRo = 5, kFFlush = 9, kFDiscard = 13, kFWriteZeroes = 14;

struct BlkHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
struct Segment {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};

std::vector<uint8_t> pattern(uint64_t offset, size_t len) {
  std::vector<uint8_t> out(len);
  for (size_t i = 0; i < len; ++i) {
    const uint64_t x = offset + i;
    out[i] = static_cast<uint8_t>(x * 7 + x / 512 + 1);
  }
  return out;
}

class BlockTest : public ::testing::Test {
 protected:
  struct Result {
    uint8_t status;
    uint32_t len;  // used length
  };

  void SetUp() override {
    image.write_at(0, pattern(0, kImageSize));
    open_device({image.path(), false, ""});
  }
  void open_device(const BlockOptions& options) {
    drv.reset();
    transport.reset();
    blk.reset();  // releases the image lock
    blk = std::make_shared<BlockDevice>(options);
    transport = std::make_unique<MmioTransport>(blk, mem, [this] { ++irqs; });
    drv = std::make_unique<MmioDriver>(*transport);
    q = std::make_unique<VirtqueueDriver>(mem, 0x1000, 64, 0x10000, 3 * kMiB);
    features = drv->init(~uint64_t{0}, *q);
  }

  // Submits header + `data` + status byte, kicks, and returns the completion.
  Result request(uint32_t type, uint64_t sector, const std::vector<DriverBuffer>& data,
                 bool indirect = false) {
    std::vector<DriverBuffer> bufs;
    bufs.push_back({q->alloc_obj(BlkHeader{type, 0, sector}), sizeof(BlkHeader), false});
    bufs.insert(bufs.end(), data.begin(), data.end());
    const Gpa status = q->alloc(1);
    mem.write_obj<uint8_t>(status, 0xee);
    bufs.push_back({status, 1, true});
    const uint16_t head = q->submit(bufs, indirect);
    drv->kick();
    auto e = q->pop_used();
    EXPECT_TRUE(e.has_value()) << "request not completed";
    if (!e) return {0xff, 0};
    EXPECT_EQ(e->id, head);
    EXPECT_FALSE(q->pop_used().has_value());
    return {*mem.read_obj<uint8_t>(status), e->len};
  }
  // IN of `len` bytes from `sector` into a fresh buffer; returns status and the bytes.
  std::pair<Result, std::vector<uint8_t>> read(uint64_t sector, uint32_t len) {
    const Gpa buf = q->alloc(len);
    mem.fill(buf, 0xcc, len);
    const Result r = request(kIn, sector, {{buf, len, true}});
    std::vector<uint8_t> out(len);
    mem.read(buf, out);
    return {r, out};
  }
  Result write(uint64_t sector, std::span<const uint8_t> bytes) {
    const Gpa buf = q->alloc_bytes(bytes);
    return request(kOut, sector, {{buf, static_cast<uint32_t>(bytes.size()), false}});
  }
  Result segment_request(uint32_t type, Segment seg) {
    return request(type, 0, {{q->alloc_obj(seg), sizeof(seg), false}});
  }

  TempFile image{kImageSize, "kiln-blk"};
  GuestMemory mem{{{0, 4 * kMiB}}};
  int irqs = 0;
  std::shared_ptr<BlockDevice> blk;
  std::unique_ptr<MmioTransport> transport;
  std::unique_ptr<MmioDriver> drv;
  std::unique_ptr<VirtqueueDriver> q;
  uint64_t features = 0;
};

TEST_F(BlockTest, FeaturesAndConfig) {
  EXPECT_NE(features & feature(kFVersion1), 0u);
  EXPECT_NE(features & feature(kFRingEventIdx), 0u);
  EXPECT_NE(features & feature(kFRingIndirectDesc), 0u);
  EXPECT_NE(features & feature(kFFlush), 0u);
  EXPECT_NE(features & feature(kFDiscard), 0u);
  EXPECT_NE(features & feature(kFWriteZeroes), 0u);
  EXPECT_EQ(features & feature(kFRo), 0u);
  EXPECT_EQ(blk->capacity_sectors(), kSectors);
  EXPECT_EQ(drv->read32(reg::kConfig), kSectors);
}

TEST_F(BlockTest, ReadsSectorsFromTheFile) {
  auto [r, bytes] = read(3, 1024);
  EXPECT_EQ(r.status, kOk);
  EXPECT_EQ(r.len, 1024u + 1);
  EXPECT_EQ(bytes, pattern(3 * 512, 1024));
  EXPECT_EQ(irqs, 1);
}

TEST_F(BlockTest, ReadsLastSector) {
  auto [r, bytes] = read(kSectors - 1, 512);
  EXPECT_EQ(r.status, kOk);
  EXPECT_EQ(bytes, pattern(kImageSize - 512, 512));
}

TEST_F(BlockTest, ReadIntoSeveralBuffersAndThroughIndirectTable) {
  for (bool indirect : {false, true}) {
    const Gpa a = q->alloc(512), b = q->alloc(256), c = q->alloc(256);
    const Result r = request(kIn, 10, {{a, 512, true}, {b, 256, true}, {c, 256, true}}, indirect);
    EXPECT_EQ(r.status, kOk) << indirect;
    EXPECT_EQ(r.len, 1025u);
    std::vector<uint8_t> got(1024);
    mem.read(a, std::span(got).subspan(0, 512));
    mem.read(b, std::span(got).subspan(512, 256));
    mem.read(c, std::span(got).subspan(768, 256));
    EXPECT_EQ(got, pattern(10 * 512, 1024)) << indirect;
  }
}

TEST_F(BlockTest, HeaderAndStatusMayShareDescriptorsWithData) {
  // Header and data in one readable descriptor; data and status in one writable descriptor.
  const Gpa out = q->alloc(16 + 512);
  mem.write_obj(out, BlkHeader{kOut, 0, 7});
  const auto data = pattern(99, 512);
  mem.write(out + 16, data);
  const Gpa in = q->alloc(1);
  q->submit({{out, 16 + 512, false}, {in, 1, true}});
  drv->kick();
  ASSERT_TRUE(q->pop_used());
  EXPECT_EQ(mem.read_obj<uint8_t>(in), kOk);
  EXPECT_EQ(image.read_at(7 * 512, 512), data);

  const Gpa req = q->alloc_obj(BlkHeader{kIn, 0, 7});
  const Gpa resp = q->alloc(513);
  q->submit({{req, 16, false}, {resp, 513, true}});
  drv->kick();
  auto e = q->pop_used();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->len, 513u);
  std::vector<uint8_t> got(512);
  mem.read(resp, got);
  EXPECT_EQ(got, data);
  EXPECT_EQ(mem.read_obj<uint8_t>(resp + 512), kOk);
}

TEST_F(BlockTest, WritesLandInTheFile) {
  const auto data = pattern(12345, 2048);
  const Result r = write(100, data);
  EXPECT_EQ(r.status, kOk);
  EXPECT_EQ(r.len, 1u);  // nothing but the status byte written into the chain
  EXPECT_EQ(image.read_at(100 * 512, 2048), data);
  EXPECT_EQ(image.read_at(99 * 512, 512), pattern(99 * 512, 512));  // neighbours untouched
  EXPECT_EQ(image.read_at(104 * 512, 512), pattern(104 * 512, 512));
  auto [rr, bytes] = read(100, 2048);
  EXPECT_EQ(rr.status, kOk);
  EXPECT_EQ(bytes, data);
}

TEST_F(BlockTest, FlushSucceeds) {
  const Result r = request(kFlush, 0, {});
  EXPECT_EQ(r.status, kOk);
  EXPECT_EQ(r.len, 1u);
}

TEST_F(BlockTest, GetIdReturnsFileNameByDefault) {
  const Gpa buf = q->alloc(20);
  const Result r = request(kGetId, 0, {{buf, 20, true}});
  EXPECT_EQ(r.status, kOk);
  EXPECT_EQ(r.len, 21u);
  std::string id(20, '\0');
  mem.read(buf, std::span(reinterpret_cast<uint8_t*>(id.data()), 20));
  std::string expected = image.name().substr(0, 20);
  expected.resize(20, '\0');
  EXPECT_EQ(id, expected);
}

TEST_F(BlockTest, GetIdReturnsConfiguredId) {
  open_device({image.path(), false, "kiln-disk-7"});
  const Gpa buf = q->alloc(20);
  mem.fill(buf, 0xaa, 20);
  const Result r = request(kGetId, 0, {{buf, 20, true}});
  EXPECT_EQ(r.status, kOk);
  char id[20];
  mem.read(buf, std::span(reinterpret_cast<uint8_t*>(id), 20));
  EXPECT_EQ(std::string(id, 20), std::string("kiln-disk-7") + std::string(9, '\0'));
}

TEST_F(BlockTest, ReadOnlyDriveRejectsWrites) {
  open_device({image.path(), true, ""});
  EXPECT_NE(features & feature(kFRo), 0u);
  EXPECT_EQ(features & (feature(kFDiscard) | feature(kFWriteZeroes)), 0u);
  EXPECT_TRUE(blk->read_only());
  const Result r = write(0, std::vector<uint8_t>(512, 0x5a));
  EXPECT_EQ(r.status, kIoErr);
  EXPECT_EQ(image.read_at(0, 512), pattern(0, 512));
  EXPECT_EQ(segment_request(kWriteZeroes, {0, 1, 0}).status, kIoErr);
  EXPECT_EQ(segment_request(kDiscard, {0, 1, 0}).status, kIoErr);
  EXPECT_EQ(image.read_at(0, 512), pattern(0, 512));
  auto [rr, bytes] = read(0, 512);  // reads still work
  EXPECT_EQ(rr.status, kOk);
  EXPECT_EQ(bytes, pattern(0, 512));
}

TEST_F(BlockTest, AccessPastCapacityFails) {
  EXPECT_EQ(read(kSectors - 1, 1024).first.status, kIoErr);  // straddles the end
  EXPECT_EQ(read(kSectors, 512).first.status, kIoErr);
  EXPECT_EQ(read(UINT64_MAX, 512).first.status, kIoErr);
  EXPECT_EQ(read(UINT64_MAX / 512 + 1, 512).first.status, kIoErr);  // sector * 512 overflows
  EXPECT_EQ(write(kSectors - 1, std::vector<uint8_t>(1024, 1)).status, kIoErr);
  EXPECT_EQ(write(UINT64_MAX / 256, std::vector<uint8_t>(512, 1)).status, kIoErr);
  struct stat st {};
  ASSERT_EQ(::stat(image.path().c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kImageSize);  // the file did not grow
  // A failed IN reports only the status byte as written.
  EXPECT_EQ(read(kSectors, 512).first.len, 1u);
}

TEST_F(BlockTest, DataLengthNotMultipleOfSectorFails) {
  EXPECT_EQ(read(0, 100).first.status, kIoErr);
  EXPECT_EQ(read(0, 513).first.status, kIoErr);
  EXPECT_EQ(write(0, std::vector<uint8_t>(100, 1)).status, kIoErr);
  EXPECT_EQ(image.read_at(0, 512), pattern(0, 512));
}

TEST_F(BlockTest, UnknownTypeIsUnsupported) {
  const Result r = request(99, 0, {{q->alloc(512), 512, true}});
  EXPECT_EQ(r.status, kUnsupp);
  EXPECT_EQ(r.len, 1u);
}

TEST_F(BlockTest, ShortHeaderIsIoError) {
  const Gpa hdr = q->alloc_obj(BlkHeader{kIn, 0, 0});
  const Gpa status = q->alloc(1);
  q->submit({{hdr, 8, false}, {status, 1, true}});
  drv->kick();
  auto e = q->pop_used();
  ASSERT_TRUE(e);
  EXPECT_EQ(mem.read_obj<uint8_t>(status), kIoErr);
}

TEST_F(BlockTest, DiscardZeroesTheRange) {
  // Whole 4 KiB blocks so that hole punching really frees them.
  EXPECT_EQ(segment_request(kDiscard, {8, 16, 0}).status, kOk);
  EXPECT_EQ(image.read_at(8 * 512, 16 * 512), std::vector<uint8_t>(16 * 512, 0));
  EXPECT_EQ(image.read_at(7 * 512, 512), pattern(7 * 512, 512));
  EXPECT_EQ(image.read_at(24 * 512, 512), pattern(24 * 512, 512));
  auto [r, bytes] = read(8, 16 * 512);
  EXPECT_EQ(r.status, kOk);
  EXPECT_EQ(bytes, std::vector<uint8_t>(16 * 512, 0));
  struct stat st {};
  ASSERT_EQ(::stat(image.path().c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kImageSize);  // size kept
}

TEST_F(BlockTest, WriteZeroesZeroesTheRange) {
  for (uint32_t flags : {0u, 1u /* UNMAP */}) {
    image.write_at(0, pattern(0, 64 * 512));
    EXPECT_EQ(segment_request(kWriteZeroes, {3, 5, flags}).status, kOk) << flags;
    EXPECT_EQ(image.read_at(3 * 512, 5 * 512), std::vector<uint8_t>(5 * 512, 0)) << flags;
    EXPECT_EQ(image.read_at(2 * 512, 512), pattern(2 * 512, 512));
    EXPECT_EQ(image.read_at(8 * 512, 512), pattern(8 * 512, 512));
    auto [r, bytes] = read(3, 5 * 512);
    EXPECT_EQ(bytes, std::vector<uint8_t>(5 * 512, 0));
  }
}

TEST_F(BlockTest, DiscardAndWriteZeroesErrors) {
  EXPECT_EQ(segment_request(kDiscard, {kSectors - 1, 2, 0}).status, kIoErr);
  EXPECT_EQ(segment_request(kWriteZeroes, {kSectors, 1, 0}).status, kIoErr);
  EXPECT_EQ(segment_request(kDiscard, {0, 1, 1 /* UNMAP */}).status, kUnsupp);
  EXPECT_EQ(request(kDiscard, 0, {}).status, kIoErr);  // no segment
  const Segment two[2] = {{0, 1, 0}, {4, 1, 0}};
  EXPECT_EQ(request(kWriteZeroes, 0, {{q->alloc_obj(two), sizeof(two), false}}).status, kIoErr);
  EXPECT_EQ(image.read_at(0, 8 * 512), pattern(0, 8 * 512));
}

TEST_F(BlockTest, ChainWithoutWritableByteIsDroppedAndDeviceKeepsWorking) {
  const uint16_t head = q->submit({{q->alloc_obj(BlkHeader{kIn, 0, 0}), 16, false}});
  drv->kick();
  auto e = q->pop_used();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->id, head);
  EXPECT_EQ(e->len, 0u);
  EXPECT_EQ(drv->status() & kStatusDeviceNeedsReset, 0u);
  auto [r, bytes] = read(0, 512);
  EXPECT_EQ(r.status, kOk);
  EXPECT_EQ(bytes, pattern(0, 512));
}

TEST_F(BlockTest, BadChainIsReturnedAndDeviceKeepsWorking) {
  const Gpa b = q->alloc(16);
  q->write_desc(63, {b, 16, kDescFWrite | kDescFNext, 62});
  q->write_desc(62, {b, 16, 0, 0});  // readable after writable
  q->publish(63);
  drv->kick();
  auto e = q->pop_used();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->id, 63u);
  EXPECT_EQ(e->len, 0u);
  EXPECT_EQ(read(0, 512).first.status, kOk);
}

TEST_F(BlockTest, EventIdxNegotiatedAndUsed) {
  ASSERT_NE(features & feature(kFRingEventIdx), 0u);
  EXPECT_EQ(read(0, 512).first.status, kOk);
  EXPECT_EQ(irqs, 1);
  EXPECT_EQ(q->avail_event(), q->avail_idx());  // kick me for the next one
  q->set_used_event(q->used_idx() + 5);         // "no interrupt for a while"
  EXPECT_EQ(read(1, 512).first.status, kOk);
  EXPECT_EQ(irqs, 1);
}

TEST_F(BlockTest, ManyRequestsInOneKick) {
  std::vector<std::pair<Gpa, uint64_t>> bufs;
  for (int i = 0; i < 20; ++i) {
    const uint64_t sector = static_cast<uint64_t>(i) * 37 % kSectors;
    const Gpa buf = q->alloc(4096);
    const Gpa status = q->alloc(1);
    q->submit({{q->alloc_obj(BlkHeader{kIn, 0, sector}), 16, false},
               {buf, 4096, true},
               {status, 1, true}},
              i % 2 == 1);
    bufs.push_back({buf, sector});
  }
  drv->kick();
  EXPECT_EQ(q->used_idx(), 20);
  EXPECT_EQ(irqs, 1);
  for (auto [buf, sector] : bufs) {
    std::vector<uint8_t> got(4096);
    mem.read(buf, got);
    EXPECT_EQ(got, pattern(sector * 512, 4096)) << sector;
  }
}

// ---- Construction errors ----

void expect_usage_error(const BlockOptions& options, const std::string& what) {
  try {
    BlockDevice dev(options);
    ADD_FAILURE() << "no error for " << options.path;
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(options.path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

TEST(BlockDeviceOpen, MissingFile) {
  expect_usage_error({"/nonexistent/kiln-disk.img", false, ""}, "No such file");
}

TEST(BlockDeviceOpen, EmptyFile) {
  TempFile f(0);
  expect_usage_error({f.path(), false, ""}, "multiple of 512");
}

TEST(BlockDeviceOpen, SizeNotMultipleOf512) {
  TempFile f(1000);
  expect_usage_error({f.path(), false, ""}, "multiple of 512");
  expect_usage_error({f.path(), true, ""}, "multiple of 512");
}

TEST(BlockDeviceOpen, Directory) {
  const char* tmp = std::getenv("TMPDIR");
  const std::string dir = tmp && *tmp ? tmp : "/tmp";
  expect_usage_error({dir, false, ""}, "");  // open(O_RDWR) fails: EISDIR
  expect_usage_error({dir, true, ""}, "not a regular file");
}

TEST(BlockDeviceOpen, LockedByAnotherReadWriteDevice) {
  TempFile f(kMiB);
  {
    BlockDevice first({f.path(), false, ""});
    expect_usage_error({f.path(), false, ""}, "locked");
    expect_usage_error({f.path(), true, ""}, "locked");
  }
  // Released with the first device.
  EXPECT_NO_THROW(BlockDevice({f.path(), false, ""}));
  // Read-only devices share the image.
  BlockDevice ro1({f.path(), true, ""});
  EXPECT_NO_THROW(BlockDevice({f.path(), true, ""}));
  expect_usage_error({f.path(), false, ""}, "locked");
}

TEST(BlockDeviceOpen, LongIdIsTruncated) {
  TempFile f(kMiB);
  BlockDevice dev({f.path(), false, std::string(40, 'x')});
  EXPECT_EQ(dev.capacity_sectors(), kMiB / 512);
}

TEST(BlockDeviceOpen, NoFdLeak) {
  TempFile f(kMiB);
  GuestMemory mem({{0, kMiB}});
  const int before = test::count_open_fds();
  {
    auto dev = std::make_shared<BlockDevice>(BlockOptions{f.path(), false, ""});
    MmioTransport transport(dev, mem, [] {});
    VirtqueueDriver q(mem, 0x1000, 16, 0x8000, 0x8000);
    MmioDriver drv(transport);
    drv.init(~uint64_t{0}, q);
    EXPECT_GT(test::count_open_fds(), before);
  }
  EXPECT_EQ(test::count_open_fds(), before);
  // Failed constructions leak nothing either.
  TempFile odd(1000);
  for (int i = 0; i < 3; ++i) EXPECT_THROW(BlockDevice({odd.path(), false, ""}), UsageError);
  EXPECT_EQ(test::count_open_fds(), before);
}

}  // namespace
}  // namespace kiln::virtio
