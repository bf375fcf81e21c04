#include "devices/virtio/block/block_device.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "base/error.h"
#include "devices/virtio/block/virtio_blk_spec.h"
#include "devices/virtio/mmio_transport.h"
#include "tests/support/test_files.h"
#include "tests/support/unix_peer.h"
#include "tests/support/virtqueue_driver.h"
#include "vmm/virtio_devices.h"

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

void expect_usage_error(const BlockOptions& options, const std::string& what);

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

// ---- Advertised limits (virtio_blk_spec.h), enforced per request ----

TEST_F(BlockTest, ConfigAdvertisesTheEnforcedLimits) {
  EXPECT_NE(features & feature(blk::kFSizeMax), 0u);
  EXPECT_NE(features & feature(blk::kFSegMax), 0u);
  EXPECT_EQ(drv->read32(reg::kConfig + blk::kConfigSizeMax), blk::kSizeMax);
  EXPECT_EQ(drv->read32(reg::kConfig + blk::kConfigSegMax), blk::kSegMax);
  EXPECT_EQ(drv->read32(reg::kConfig + blk::kConfigMaxDiscardSectors), blk::kMaxDiscardSectors);
  EXPECT_EQ(drv->read32(reg::kConfig + blk::kConfigMaxWriteZeroesSectors),
            blk::kMaxWriteZeroesSectors);
  EXPECT_EQ(blk::kSegMax, Queue::kMaxSize - 2u);
}

TEST_F(BlockTest, SegmentOverSizeMaxFails) {
  constexpr uint32_t kBig = blk::kSizeMax + 512;
  // One descriptor over size_max: IOERR, nothing read into it or written to the file.
  auto [r, bytes] = read(0, kBig);
  EXPECT_EQ(r.status, kIoErr);
  EXPECT_EQ(r.len, 1u);
  EXPECT_EQ(bytes, std::vector<uint8_t>(kBig, 0xcc));
  EXPECT_EQ(write(0, std::vector<uint8_t>(kBig, 0x5a)).status, kIoErr);
  EXPECT_EQ(image.read_at(0, kBig), pattern(0, kBig));
  // Header and data sharing a descriptor: only the data bytes count.
  const Gpa out = q->alloc(16 + kBig);
  mem.write_obj(out, BlkHeader{kOut, 0, 0});
  const Gpa st = q->alloc(1);
  q->submit({{out, 16 + kBig, false}, {st, 1, true}});
  drv->kick();
  ASSERT_TRUE(q->pop_used());
  EXPECT_EQ(mem.read_obj<uint8_t>(st), kIoErr);
  EXPECT_EQ(image.read_at(0, kBig), pattern(0, kBig));
  // Exactly size_max, or the same bytes in two descriptors: fine.
  EXPECT_EQ(read(0, blk::kSizeMax).first.status, kOk);
  const Gpa a = q->alloc(blk::kSizeMax), b = q->alloc(512);
  EXPECT_EQ(request(kIn, 0, {{a, blk::kSizeMax, true}, {b, 512, true}}).status, kOk);
  EXPECT_EQ(drv->status() & kStatusDeviceNeedsReset, 0u);  // the request failed, not the device
}

TEST_F(BlockTest, MoreThanSegMaxSegmentsFails) {
  q = std::make_unique<VirtqueueDriver>(mem, 0x1000, 256, 0x10000, 3 * kMiB);
  features = drv->init(~uint64_t{0}, *q);
  // 256 descriptors: header, 254 data buffers, then one holding 512 data bytes and the status.
  auto in_request = [&](uint32_t data_buffers, bool shared_last) {
    std::vector<DriverBuffer> bufs{{q->alloc_obj(BlkHeader{kIn, 0, 0}), 16, false}};
    for (uint32_t i = 0; i < data_buffers; ++i) bufs.push_back({q->alloc(512), 512, true});
    const uint32_t last = shared_last ? 513 : 1;
    const Gpa status = q->alloc(last);
    mem.write_obj<uint8_t>(status + last - 1, 0xee);
    bufs.push_back({status, last, true});
    q->submit(bufs);
    drv->kick();
    auto e = q->pop_used();
    EXPECT_TRUE(e);
    q->reset_allocator();
    return *mem.read_obj<uint8_t>(status + last - 1);
  };
  EXPECT_EQ(in_request(blk::kSegMax, true), kIoErr);  // seg_max + 1 data segments
  EXPECT_EQ(in_request(blk::kSegMax, false), kOk);    // exactly seg_max
  EXPECT_EQ(in_request(blk::kSegMax - 1, true), kOk);
  EXPECT_EQ(drv->status() & kStatusDeviceNeedsReset, 0u);
}

TEST(BlockLimits, DiscardAndWriteZeroesAreBoundedAsAdvertised) {
  // Sparse, larger than both limits.
  TempFile big(uint64_t{blk::kMaxDiscardSectors} * 512 + 4 * kMiB, "kiln-blk-big");
  auto dev = std::make_shared<BlockDevice>(BlockOptions{big.path(), false, ""});
  GuestMemory mem({{0, 4 * kMiB}});
  MmioTransport transport(dev, mem, [] {});
  VirtqueueDriver q(mem, 0x1000, 64, 0x10000, 3 * kMiB);
  MmioDriver drv(transport);
  drv.init(~uint64_t{0}, q);
  auto segment = [&](uint32_t type, uint32_t sectors) {
    const Gpa status = q.alloc(1);
    q.submit({{q.alloc_obj(BlkHeader{type, 0, 0}), 16, false},
              {q.alloc_obj(Segment{8, sectors, 0}), sizeof(Segment), false},
              {status, 1, true}});
    drv.kick();
    EXPECT_TRUE(q.pop_used());
    return *mem.read_obj<uint8_t>(status);
  };
  big.write_at(8 * 512, pattern(0, 4096));
  EXPECT_EQ(segment(kWriteZeroes, blk::kMaxWriteZeroesSectors + 1), kIoErr);
  EXPECT_EQ(big.read_at(8 * 512, 4096), pattern(0, 4096));  // untouched
  EXPECT_EQ(segment(kWriteZeroes, blk::kMaxWriteZeroesSectors), kOk);
  EXPECT_EQ(big.read_at(8 * 512, 4096), std::vector<uint8_t>(4096, 0));
  big.write_at(8 * 512, pattern(0, 4096));
  EXPECT_EQ(segment(kDiscard, blk::kMaxDiscardSectors + 1), kIoErr);
  EXPECT_EQ(big.read_at(8 * 512, 4096), pattern(0, 4096));
  EXPECT_EQ(segment(kDiscard, blk::kMaxDiscardSectors), kOk);
}

// ---- Changing the image (PATCH /drives) ----

TEST_F(BlockTest, ReplacingWithTheSamePathKeepsTheLockAndPicksUpTheNewSize) {
  ASSERT_EQ(::truncate(image.path().c_str(), 2 * kImageSize), 0);  // grown by the user
  EXPECT_NO_THROW(blk->replace_backing(image.path()));
  EXPECT_EQ(blk->capacity_sectors(), 2 * kSectors);
  EXPECT_EQ(drv->read32(reg::kConfig), 2 * kSectors);
  auto [r, bytes] = read(0, 512);
  EXPECT_EQ(r.status, kOk);
  EXPECT_EQ(bytes, pattern(0, 512));
  // Still Kiln's alone, also after a second same-path swap.
  expect_usage_error({image.path(), false, ""}, "locked");
  EXPECT_NO_THROW(blk->replace_backing(image.path()));
  expect_usage_error({image.path(), true, ""}, "locked");
  EXPECT_EQ(write(0, pattern(7, 512)).status, kOk);
  EXPECT_EQ(image.read_at(0, 512), pattern(7, 512));
  // Another file, then back to the first: each is locked while in use, released after.
  TempFile other(kMiB, "kiln-blk-other");
  blk->replace_backing(other.path());
  expect_usage_error({other.path(), false, ""}, "locked");
  EXPECT_NO_THROW(BlockDevice({image.path(), false, ""}));  // released
  blk->replace_backing(image.path());
  EXPECT_NO_THROW(BlockDevice({other.path(), false, ""}));
  EXPECT_EQ(blk->capacity_sectors(), 2 * kSectors);
}

TEST_F(BlockTest, ReplacingWithAFifoOrDirectoryIsRefusedAndKeepsTheImage) {
  testsupport::TempDir dir("kiln-blk");
  const std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& path : {fifo, dir.path()}) {
    try {
      blk->replace_backing(path);
      ADD_FAILURE() << path << " accepted";
    } catch (const UsageError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("path_on_host " + path), std::string::npos) << msg;
    }
  }
  EXPECT_EQ(blk->path(), image.path());
  EXPECT_EQ(read(0, 512).second, pattern(0, 512));
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

// Opening never blocks: a FIFO (read-only open would wait for a writer) is refused at once.
TEST(BlockDeviceOpen, FifoIsRefusedWithoutBlocking) {
  testsupport::TempDir dir("kiln-blk");
  const std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EXIT(
      {
        ::alarm(5);  // a blocked open ends the child by SIGALRM: the test fails, never hangs
        for (bool ro : {true, false}) {
          try {
            BlockDevice dev({fifo, ro, ""});
            _exit(1);
          } catch (const UsageError& e) {
            if (std::string(e.what()).find("disk " + fifo + ": a FIFO") == std::string::npos)
              _exit(2);
          }
        }
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// Whether this process holds a flock on `path` (/proc/locks: "N: FLOCK ADVISORY WRITE pid
// MAJ:MIN:INODE ..."), observed without taking one.
bool flock_held(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) return false;
  std::ifstream locks("/proc/locks");
  const std::string pid = std::to_string(::getpid()), ino = ":" + std::to_string(st.st_ino);
  for (std::string line; std::getline(locks, line);) {
    std::istringstream in(line);
    std::string n, kind, mode, access, owner, id;
    in >> n >> kind >> mode >> access >> owner >> id;
    if (kind == "FLOCK" && owner == pid && id.size() > ino.size() &&
        id.compare(id.size() - ino.size(), ino.size(), ino) == 0)
      return true;
  }
  return false;
}

// VirtioDevices::replace_drive (PATCH /drives) opens, checks and locks the new image without
// the transport lock (the guest's I/O goes on; a bad path is refused even while a request
// holds the device) and takes the lock only for the swap.
TEST(BlockReplaceDrive, OpensOutsideTheDeviceLockAndSwapsUnderIt) {
  TempFile first(kMiB, "kiln-blk-a"), second(2 * kMiB, "kiln-blk-b");
  testsupport::TempDir dir("kiln-blk");
  const std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  VmConfig config;
  config.drives.push_back({first.path(), false, "data", false});
  GuestMemory mem({{0, kMiB}});
  Metrics metrics;
  VirtioDevices devices(config, mem, metrics);
  auto transport = devices.slots().at(0).transport;
  ASSERT_TRUE(devices.drive("data"));
  BlockDevice& block = *devices.drive("data");

  // A "request" in progress: the transport lock is held until `release`.
  std::promise<void> held, release;
  std::thread io([&] {
    transport->with_device([&](VirtioDevice&) {
      held.set_value();
      release.get_future().wait();
    });
  });
  held.get_future().wait();
  auto refused = std::async(std::launch::async, [&] {
    try {
      devices.replace_drive("data", fifo);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  });
  const bool fast = refused.wait_for(std::chrono::seconds(2)) == std::future_status::ready;
  EXPECT_TRUE(fast) << "the FIFO check waited for the device lock";
  auto swapped =
      std::async(std::launch::async, [&] { devices.replace_drive("data", second.path()); });
  // The new image gets opened and locked while the device lock is still held...
  bool locked = false;
  for (int i = 0; i < 200 && !(locked = flock_held(second.path())); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(locked) << "the new image was not opened before the device lock was free";
  // ...but not swapped in until it is released.
  EXPECT_EQ(swapped.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  EXPECT_EQ(block.path(), first.path());
  release.set_value();
  io.join();
  swapped.get();
  EXPECT_EQ(block.path(), second.path());
  EXPECT_EQ(block.capacity_sectors(), 2 * kMiB / 512);
  const std::string msg = refused.get();
  EXPECT_NE(msg.find("path_on_host " + fifo + ": a FIFO"), std::string::npos) << msg;
  // The old image is closed and unlocked; the new one stays locked.
  EXPECT_NO_THROW(BlockDevice({first.path(), false, ""}));
  expect_usage_error({second.path(), false, ""}, "locked");
  EXPECT_THROW(devices.replace_drive("nope", second.path()), UsageError);
}

// Drives are found by id among other devices, each the block device built for it.
TEST(BlockReplaceDrive, FindsTheDriveByIdAmongOtherDevices) {
  TempFile a(kMiB, "kiln-blk-a"), b(kMiB, "kiln-blk-b"), b2(3 * kMiB, "kiln-blk-b2");
  VmConfig config;
  config.drives.push_back({a.path(), false, "one", false});
  config.drives.push_back({b.path(), true, "two", false});
  config.entropy.emplace();
  GuestMemory mem({{0, kMiB}});
  Metrics metrics;
  VirtioDevices devices(config, mem, metrics);
  ASSERT_EQ(devices.slots().size(), 3u);
  EXPECT_EQ(devices.drive("one").get(), &devices.slots()[0].transport->device());
  EXPECT_EQ(devices.drive("two").get(), &devices.slots()[1].transport->device());
  EXPECT_FALSE(devices.drive("three"));
  EXPECT_FALSE(devices.drive(""));
  devices.replace_drive("two", b2.path());
  EXPECT_EQ(devices.drive("two")->path(), b2.path());
  EXPECT_EQ(devices.drive("two")->capacity_sectors(), 3 * kMiB / 512);
  EXPECT_TRUE(devices.drive("two")->read_only());
  EXPECT_EQ(devices.drive("one")->path(), a.path());
  EXPECT_THROW(devices.replace_drive("", b2.path()), UsageError);
}

// Submits an IN of `len` bytes at sector 0 without waiting for it.
uint16_t submit_read(VirtqueueDriver& q, GuestMemory& mem, uint32_t len) {
  const Gpa hdr = q.alloc_obj(BlkHeader{kIn, 0, 0});
  const Gpa buf = q.alloc(len);
  const Gpa status = q.alloc(1);
  mem.write_obj<uint8_t>(status, 0xee);
  return q.submit({{hdr, sizeof(BlkHeader), false}, {buf, len, true}, {status, 1, true}});
}

bool host_fd_ready(const BlockDevice& dev, int timeout_ms) {
  pollfd p{dev.host_event_fd(), POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

TEST_F(BlockTest, OpsLimitParksTheQueueOnTheTimerAndDelaysWithoutDropping) {
  Metrics metrics;
  open_device({image.path(), false, "", std::nullopt,
               BucketSpec{2, std::chrono::milliseconds(200), 0}});  // 10 requests/s
  blk->set_metrics(&metrics);
  for (int i = 0; i < 3; ++i) submit_read(*q, mem, 512);
  const auto t0 = std::chrono::steady_clock::now();
  drv->kick();
  ASSERT_TRUE(q->pop_used());
  ASSERT_TRUE(q->pop_used());
  EXPECT_FALSE(q->pop_used());  // the third waits on the ring
  EXPECT_TRUE(blk->rate_limiter().blocked());
  EXPECT_EQ(metrics.block_throttled.load(), 1u);
  drv->kick();  // a kick does not get past the limit
  EXPECT_FALSE(q->pop_used());
  ASSERT_TRUE(host_fd_ready(*blk, 2000));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(95));
  transport->process_host_events();
  auto e = q->pop_used();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->len, 513u);
  EXPECT_EQ(metrics.block_read_ops.load(), 3u);
}

TEST_F(BlockTest, BandwidthCountsDataBytesAndALargeRequestRunsADebt) {
  open_device({image.path(), false, "", BucketSpec{4096, std::chrono::milliseconds(100), 0}});
  submit_read(*q, mem, 8192);  // twice the bucket: goes (it is full), owes 4096 bytes
  submit_read(*q, mem, 512);
  drv->kick();
  ASSERT_TRUE(q->pop_used());
  EXPECT_FALSE(q->pop_used());
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(host_fd_ready(*blk, 2000));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(90));
  transport->process_host_events();
  EXPECT_TRUE(q->pop_used());
}

TEST_F(BlockTest, FlushAndGetIdTakeAnOperationButNoBytes) {
  open_device({image.path(), false, "", BucketSpec{1, std::chrono::milliseconds(100'000), 0}});
  EXPECT_EQ(request(kFlush, 0, {}).status, kOk);  // one byte of bandwidth would not allow 512
  const Gpa id = q->alloc(20);
  EXPECT_EQ(request(kGetId, 0, {{id, 20, true}}).status, kOk);
}

TEST_F(BlockTest, RateLimiterUpdateReleasesAParkedQueue) {
  open_device({image.path(), false, "", std::nullopt,
               BucketSpec{1, std::chrono::milliseconds(100'000), 0}});  // 1 request / 100 s
  submit_read(*q, mem, 512);
  submit_read(*q, mem, 512);
  drv->kick();
  ASSERT_TRUE(q->pop_used());
  ASSERT_FALSE(q->pop_used());
  transport->with_device([&](VirtioDevice&) {
    blk->update_rate_limiter(BucketUpdate::keep(), BucketUpdate::disable());
  });
  ASSERT_TRUE(host_fd_ready(*blk, 1000));  // at once, not in 100 s
  transport->process_host_events();
  EXPECT_TRUE(q->pop_used());
  EXPECT_TRUE(blk->rate_limiter().unlimited());
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
