#include "devices/virtio/queue.h"

#include <gtest/gtest.h>

#include <vector>

#include "devices/virtio/chain_io.h"
#include "tests/support/virtqueue_driver.h"

namespace kiln::virtio {
namespace {

using testsupport::DriverBuffer;
using testsupport::VirtqueueDriver;
using Kind = Queue::Pop::Kind;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kMemSize = kMiB;

class QueueTest : public ::testing::Test {
 protected:
  static constexpr uint16_t kSize = 8;

  Queue make_queue() {
    Queue queue;
    queue.size = kSize;
    queue.desc_table = drv.desc_table();
    queue.avail_ring = drv.avail_ring();
    queue.used_ring = drv.used_ring();
    queue.ready = true;
    return queue;
  }

  // A well-formed request: 16 readable bytes, 512 + 1 writable.
  std::vector<DriverBuffer> good_buffers() {
    return {{drv.alloc(16), 16, false}, {drv.alloc(512), 512, true}, {drv.alloc(1), 1, true}};
  }

  // Publishes `head`, expects pop() to reject it as a bad chain whose error mentions `reason`,
  // returned to the used ring with length 0; then checks that a good chain still goes through.
  void expect_bad_chain(uint16_t head, const std::string& reason) {
    const uint16_t used_before = drv.used_idx();
    drv.publish(head);
    Queue::Pop pop = q.pop(mem);
    EXPECT_EQ(pop.kind, Kind::kBadChain) << pop.error;
    EXPECT_NE(pop.error.find(reason), std::string::npos) << pop.error;
    EXPECT_TRUE(pop.chain.buffers.empty());
    ASSERT_EQ(drv.used_idx(), static_cast<uint16_t>(used_before + 1));
    const UsedElement e = drv.used_elem(used_before % kSize);
    EXPECT_EQ(e.id, head);
    EXPECT_EQ(e.len, 0u);
    EXPECT_EQ(q.pop(mem).kind, Kind::kEmpty);

    const auto bufs = good_buffers();
    const uint16_t good = drv.submit(bufs);
    Queue::Pop next = q.pop(mem);
    ASSERT_EQ(next.kind, Kind::kChain) << next.error;
    EXPECT_EQ(next.chain.head, good);
    EXPECT_EQ(next.chain.buffers.size(), 3u);
    EXPECT_TRUE(q.add_used(mem, good, 7));
    EXPECT_EQ(drv.used_elem(static_cast<uint16_t>(used_before + 1) % kSize).id, good);
  }

  GuestMemory mem{{{0, kMemSize}}};
  VirtqueueDriver drv{mem, 0x1000, kSize, 0x10000, 0x80000};
  Queue q = make_queue();
};

TEST_F(QueueTest, ValidateChecksSizeAlignmentAndPlacement) {
  EXPECT_EQ(q.validate(mem), "");
  Queue bad = q;
  bad.size = 6;
  EXPECT_NE(bad.validate(mem), "");
  bad.size = 512;
  EXPECT_NE(bad.validate(mem), "");
  bad = q;
  bad.desc_table += 8;
  EXPECT_NE(bad.validate(mem), "");
  bad = q;
  bad.used_ring += 2;
  EXPECT_NE(bad.validate(mem), "");
  bad = q;
  bad.used_ring = kMemSize - 16;  // ring runs past the end
  EXPECT_NE(bad.validate(mem), "");
  bad = q;
  bad.avail_ring = kMemSize + 0x1000;
  EXPECT_NE(bad.validate(mem), "");
}

TEST_F(QueueTest, EmptyQueuePopsNothing) {
  EXPECT_EQ(q.pop(mem).kind, Kind::kEmpty);
  EXPECT_EQ(q.next_avail(), 0);
}

TEST_F(QueueTest, PopsDirectChainInOrder) {
  const auto bufs = good_buffers();
  const uint16_t head = drv.submit(bufs);
  Queue::Pop pop = q.pop(mem);
  ASSERT_EQ(pop.kind, Kind::kChain) << pop.error;
  EXPECT_EQ(pop.chain.head, head);
  ASSERT_EQ(pop.chain.buffers.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(pop.chain.buffers[i].addr, bufs[i].addr);
    EXPECT_EQ(pop.chain.buffers[i].len, bufs[i].len);
    EXPECT_EQ(pop.chain.buffers[i].device_writable, bufs[i].writable);
  }
  EXPECT_EQ(pop.chain.readable_bytes, 16u);
  EXPECT_EQ(pop.chain.writable_bytes, 513u);
  EXPECT_EQ(q.next_avail(), 1);
  EXPECT_EQ(q.pop(mem).kind, Kind::kEmpty);

  ASSERT_TRUE(q.add_used(mem, head, 513));
  EXPECT_EQ(drv.used_idx(), 1);
  auto e = drv.pop_used();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->id, head);
  EXPECT_EQ(e->len, 513u);
}

TEST_F(QueueTest, PopsIndirectChain) {
  q.set_features(false, true);
  const auto bufs = good_buffers();
  const uint16_t head = drv.submit(bufs, /*indirect=*/true);
  Queue::Pop pop = q.pop(mem);
  ASSERT_EQ(pop.kind, Kind::kChain) << pop.error;
  EXPECT_EQ(pop.chain.head, head);
  ASSERT_EQ(pop.chain.buffers.size(), 3u);
  EXPECT_EQ(pop.chain.buffers[1].addr, bufs[1].addr);
  EXPECT_TRUE(pop.chain.buffers[2].device_writable);
  EXPECT_EQ(pop.chain.readable_bytes, 16u);
  EXPECT_EQ(pop.chain.writable_bytes, 513u);
}

TEST_F(QueueTest, IndirectTableMayHoldAsManyDescriptorsAsTheQueue) {
  q.set_features(false, true);
  std::vector<DriverBuffer> bufs;
  for (int i = 0; i < kSize; ++i) bufs.push_back({drv.alloc(8), 8, i >= 4});
  drv.submit(bufs, true);
  Queue::Pop pop = q.pop(mem);
  ASSERT_EQ(pop.kind, Kind::kChain) << pop.error;
  EXPECT_EQ(pop.chain.buffers.size(), kSize);
}

TEST_F(QueueTest, DirectDescriptorsFollowedByIndirectTable) {
  // virtio 1.x 2.7.5.3.2: the device must handle normal descriptors followed by one indirect.
  q.set_features(false, true);
  const Gpa hdr = drv.alloc(16), data = drv.alloc(512), status = drv.alloc(1);
  const Descriptor table[] = {{data, 512, kDescFWrite | kDescFNext, 1},
                              {status, 1, kDescFWrite, 0}};
  drv.write_desc(5, {hdr, 16, kDescFNext, 6});
  // The WRITE flag of the descriptor naming the table must be ignored.
  drv.write_desc(6,
                 {drv.write_indirect_table(table), sizeof(table), kDescFIndirect | kDescFWrite, 0});
  drv.publish(5);
  Queue::Pop pop = q.pop(mem);
  ASSERT_EQ(pop.kind, Kind::kChain) << pop.error;
  ASSERT_EQ(pop.chain.buffers.size(), 3u);
  EXPECT_EQ(pop.chain.buffers[0].addr, hdr);
  EXPECT_FALSE(pop.chain.buffers[0].device_writable);
  EXPECT_EQ(pop.chain.buffers[2].addr, status);
  EXPECT_EQ(pop.chain.readable_bytes, 16u);
  EXPECT_EQ(pop.chain.writable_bytes, 513u);
}

TEST_F(QueueTest, ZeroLengthBufferAnywhereIsAccepted) {
  // A zero-length buffer is never accessed, so its address does not matter.
  drv.submit({{0xdead0000000, 0, false}, {drv.alloc(1), 1, true}});
  EXPECT_EQ(q.pop(mem).kind, Kind::kChain);
}

TEST_F(QueueTest, ChainIoSpansBuffers) {
  const Gpa a = drv.alloc(3), b = drv.alloc(5), w1 = drv.alloc(4), w2 = drv.alloc(4);
  const uint8_t src[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  mem.write(a, std::span(src, 3));
  mem.write(b, std::span(src + 3, 5));
  drv.submit({{a, 3, false}, {b, 5, false}, {w1, 4, true}, {w2, 4, true}});
  Queue::Pop pop = q.pop(mem);
  ASSERT_EQ(pop.kind, Kind::kChain);
  uint8_t out[6] = {};
  ASSERT_TRUE(chain_read(mem, pop.chain, 2, out));
  EXPECT_EQ(std::vector<uint8_t>(out, out + 6), std::vector<uint8_t>({3, 4, 5, 6, 7, 8}));
  EXPECT_FALSE(chain_read(mem, pop.chain, 3, out));  // runs past the readable part
  const uint8_t in[5] = {9, 9, 9, 9, 9};
  ASSERT_TRUE(chain_write(mem, pop.chain, 2, in));
  EXPECT_EQ(mem.read_obj<uint16_t>(w1 + 2), 0x0909);
  EXPECT_EQ(mem.read_obj<uint32_t>(w2), 0x00090909u);  // 2 bytes in w1, 3 in w2
  EXPECT_FALSE(chain_write(mem, pop.chain, 4, in));
}

TEST_F(QueueTest, RingWrapsAroundManyTimes) {
  // Past 65536 so that both the ring slots and the 16-bit indices wrap.
  for (int i = 0; i < 70000; ++i) {
    const Gpa buf = 0x20000;
    const uint16_t head = drv.submit({{buf, 8, false}, {buf + 8, 1, true}});
    Queue::Pop pop = q.pop(mem);
    ASSERT_EQ(pop.kind, Kind::kChain) << i << ": " << pop.error;
    ASSERT_EQ(pop.chain.head, head);
    ASSERT_TRUE(q.add_used(mem, head, 1));
    auto e = drv.pop_used();
    ASSERT_TRUE(e);
    ASSERT_EQ(e->id, head);
  }
  EXPECT_EQ(q.next_avail(), static_cast<uint16_t>(70000));
  EXPECT_EQ(q.next_used(), static_cast<uint16_t>(70000));
}

// ---- Malformed chains: returned with length 0, the queue keeps working ----

TEST_F(QueueTest, LoopIsBadChain) {
  const Gpa b = drv.alloc(8);
  drv.write_desc(6, {b, 8, kDescFNext, 7});
  drv.write_desc(7, {b, 8, kDescFNext, 6});
  expect_bad_chain(6, "longer than");
}

TEST_F(QueueTest, SelfLoopIsBadChain) {
  drv.write_desc(7, {drv.alloc(8), 8, kDescFNext | kDescFWrite, 7});
  expect_bad_chain(7, "longer than");
}

TEST_F(QueueTest, IndirectTableLongerThanQueueIsBadChain) {
  q.set_features(false, true);
  std::vector<DriverBuffer> bufs;
  for (int i = 0; i < kSize + 1; ++i) bufs.push_back({drv.alloc(8), 8, false});
  const Gpa table = drv.write_indirect_table(VirtqueueDriver::link(bufs));
  drv.write_desc(7, {table, static_cast<uint32_t>(16 * (kSize + 1)), kDescFIndirect, 0});
  expect_bad_chain(7, "exceeds the queue size");
}

TEST_F(QueueTest, LoopInsideIndirectTableIsBadChain) {
  q.set_features(false, true);
  const Gpa b = drv.alloc(8);
  const Descriptor table[] = {{b, 8, kDescFNext, 1}, {b, 8, kDescFNext, 0}};
  drv.write_desc(7, {drv.write_indirect_table(table), sizeof(table), kDescFIndirect, 0});
  expect_bad_chain(7, "longer than");
}

TEST_F(QueueTest, NextIndexOutOfRangeIsBadChain) {
  drv.write_desc(7, {drv.alloc(8), 8, kDescFNext, kSize});
  expect_bad_chain(7, "outside a table of 8");
}

TEST_F(QueueTest, IndirectNextIndexOutOfRangeIsBadChain) {
  q.set_features(false, true);
  const Gpa b = drv.alloc(8);
  const Descriptor table[] = {{b, 8, kDescFNext, 2}, {b, 8, 0, 0}};
  drv.write_desc(7, {drv.write_indirect_table(table), sizeof(table), kDescFIndirect, 0});
  expect_bad_chain(7, "outside a table of 2");
}

TEST_F(QueueTest, BufferOutsideMemoryIsBadChain) {
  drv.write_desc(7, {kMemSize - 8, 16, 0, 0});  // straddles the end of RAM
  expect_bad_chain(7, "outside guest memory");
}

TEST_F(QueueTest, BufferAddressWrapIsBadChain) {
  drv.write_desc(7, {UINT64_MAX - 7, 16, kDescFWrite, 0});
  expect_bad_chain(7, "outside guest memory");
}

TEST_F(QueueTest, ReadableAfterWritableIsBadChain) {
  const Gpa b = drv.alloc(8);
  drv.write_desc(6, {b, 8, kDescFWrite | kDescFNext, 7});
  drv.write_desc(7, {b, 8, 0, 0});
  expect_bad_chain(6, "readable buffer after");
}

TEST_F(QueueTest, NestedIndirectIsBadChain) {
  q.set_features(false, true);
  const Gpa b = drv.alloc(8);
  const Descriptor inner[] = {{b, 8, 0, 0}};
  const Gpa inner_table = drv.write_indirect_table(inner);
  const Descriptor outer[] = {{inner_table, 16, kDescFIndirect, 0}};
  drv.write_desc(7, {drv.write_indirect_table(outer), 16, kDescFIndirect, 0});
  expect_bad_chain(7, "inside an indirect table");
}

TEST_F(QueueTest, IndirectWithNextIsBadChain) {
  q.set_features(false, true);
  const Gpa b = drv.alloc(8);
  const Descriptor table[] = {{b, 8, 0, 0}};
  drv.write_desc(6, {drv.write_indirect_table(table), 16, kDescFIndirect | kDescFNext, 7});
  drv.write_desc(7, {b, 8, kDescFWrite, 0});
  expect_bad_chain(6, "NEXT");
}

TEST_F(QueueTest, IndirectLengthNotMultipleOf16IsBadChain) {
  q.set_features(false, true);
  const Gpa b = drv.alloc(8);
  const Descriptor table[] = {{b, 8, 0, 0}, {b, 8, 0, 0}};
  drv.write_desc(7, {drv.write_indirect_table(table), 24, kDescFIndirect, 0});
  expect_bad_chain(7, "not a multiple of 16");
}

TEST_F(QueueTest, EmptyIndirectTableIsBadChain) {
  q.set_features(false, true);
  drv.write_desc(7, {drv.alloc(16), 0, kDescFIndirect, 0});
  expect_bad_chain(7, "not a multiple of 16");
}

TEST_F(QueueTest, IndirectTableOutsideMemoryIsBadChain) {
  q.set_features(false, true);
  drv.write_desc(7, {kMemSize - 16, 32, kDescFIndirect, 0});
  expect_bad_chain(7, "outside guest memory");
}

TEST_F(QueueTest, IndirectWithoutNegotiationIsBadChain) {
  const Gpa b = drv.alloc(8);
  const Descriptor table[] = {{b, 8, 0, 0}};
  drv.write_desc(7, {drv.write_indirect_table(table), 16, kDescFIndirect, 0});
  expect_bad_chain(7, "not negotiated");
}

TEST(QueueOverflow, TotalLengthOver32BitsIsBadChain) {
  // 3 GiB of (lazily allocated) guest RAM: two 2 GiB buffers fit, their sum does not fit in the
  // 32-bit used length.
  constexpr uint64_t kGiB = uint64_t{1} << 30;
  GuestMemory mem({{0, 3 * kGiB}});
  VirtqueueDriver drv(mem, 0x1000, 8, 0x10000, 0x10000);
  Queue q;
  q.size = 8;
  q.desc_table = drv.desc_table();
  q.avail_ring = drv.avail_ring();
  q.used_ring = drv.used_ring();
  ASSERT_EQ(q.validate(mem), "");
  q.ready = true;

  // Exactly UINT32_MAX bytes in all: fine.
  drv.submit({{kGiB, 0x80000000, false}, {kGiB, 0x7fffffff, true}});
  Queue::Pop ok = q.pop(mem);
  ASSERT_EQ(ok.kind, Kind::kChain) << ok.error;
  EXPECT_EQ(ok.chain.readable_bytes + ok.chain.writable_bytes, uint64_t{UINT32_MAX});

  // One byte more: rejected.
  const uint16_t head = drv.submit({{kGiB, 0x80000000, false}, {kGiB, 0x80000000, true}});
  Queue::Pop bad = q.pop(mem);
  EXPECT_EQ(bad.kind, Kind::kBadChain);
  EXPECT_NE(bad.error.find("overflows"), std::string::npos) << bad.error;
  ASSERT_EQ(drv.used_idx(), 1);
  EXPECT_EQ(drv.used_elem(0).id, head);
  EXPECT_EQ(drv.used_elem(0).len, 0u);

  drv.submit({{0x20000, 16, false}});
  EXPECT_EQ(q.pop(mem).kind, Kind::kChain);
}

// ---- Broken rings: the device must be reset ----

TEST_F(QueueTest, HeadIndexOutOfRangeBreaksRing) {
  drv.set_avail_entry(0, kSize);
  drv.set_avail_idx(1);
  Queue::Pop pop = q.pop(mem);
  EXPECT_EQ(pop.kind, Kind::kBrokenRing);
  EXPECT_NE(pop.error.find("names descriptor 8"), std::string::npos) << pop.error;
  EXPECT_EQ(drv.used_idx(), 0);  // nothing returned
  EXPECT_EQ(q.next_avail(), 0);
}

TEST_F(QueueTest, AvailIndexJumpBeyondSizeBreaksRing) {
  drv.submit(good_buffers());
  drv.set_avail_idx(kSize + 1);
  Queue::Pop pop = q.pop(mem);
  EXPECT_EQ(pop.kind, Kind::kBrokenRing);
  EXPECT_NE(pop.error.find("more than the queue size"), std::string::npos) << pop.error;
  EXPECT_EQ(drv.used_idx(), 0);
}

TEST_F(QueueTest, AvailIndexJumpOfExactlySizeIsFine) {
  for (int i = 0; i < kSize; ++i) drv.submit({{drv.alloc(4), 4, false}});
  for (int i = 0; i < kSize; ++i) ASSERT_EQ(q.pop(mem).kind, Kind::kChain);
  EXPECT_EQ(q.pop(mem).kind, Kind::kEmpty);
}

TEST_F(QueueTest, AvailRingOutsideMemoryBreaksRing) {
  q.avail_ring = kMemSize + 0x1000;
  EXPECT_EQ(q.pop(mem).kind, Kind::kBrokenRing);
}

TEST_F(QueueTest, AddUsedFailsWhenUsedRingOutsideMemory) {
  q.used_ring = kMemSize + 0x1000;
  EXPECT_FALSE(q.add_used(mem, 0, 1));
}

// ---- Notification suppression ----

TEST_F(QueueTest, EventIdxInterruptsExactlyWhenUsedIndexCrossesUsedEvent) {
  q.set_features(true, false);
  auto complete = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const uint16_t head = drv.submit({{drv.alloc(4), 4, true}});
      ASSERT_EQ(q.pop(mem).kind, Kind::kChain);
      ASSERT_TRUE(q.add_used(mem, head, 4));
      drv.pop_used();
    }
  };
  EXPECT_FALSE(q.needs_interrupt(mem));  // nothing used yet

  drv.set_used_event(0);
  complete(1);  // used idx 0 -> 1 crosses 0
  EXPECT_TRUE(q.needs_interrupt(mem));
  EXPECT_FALSE(q.needs_interrupt(mem));  // nothing new since

  drv.set_used_event(2);
  complete(1);  // 1 -> 2: event 2 not yet crossed (it is when idx moves past 2)
  EXPECT_FALSE(q.needs_interrupt(mem));
  complete(1);  // 2 -> 3
  EXPECT_TRUE(q.needs_interrupt(mem));

  drv.set_used_event(4);
  complete(3);  // 3 -> 6 in one batch crosses 4
  EXPECT_TRUE(q.needs_interrupt(mem));

  drv.set_used_event(10);
  complete(2);  // 6 -> 8
  EXPECT_FALSE(q.needs_interrupt(mem));
  complete(2);  // 8 -> 10
  EXPECT_FALSE(q.needs_interrupt(mem));
  complete(1);  // 10 -> 11
  EXPECT_TRUE(q.needs_interrupt(mem));

  drv.set_used_event(5);  // in the past: no interrupt until the index wraps around to it
  complete(1);
  EXPECT_FALSE(q.needs_interrupt(mem));
  // The NO_INTERRUPT flag is ignored with EVENT_IDX.
  drv.set_avail_flags(kAvailFNoInterrupt);
  drv.set_used_event(q.next_used());
  complete(1);
  EXPECT_TRUE(q.needs_interrupt(mem));
}

TEST_F(QueueTest, EventIdxAcrossIndexWrap) {
  q.set_features(true, false);
  for (int i = 0; i < 65534; ++i) {
    const uint16_t head = drv.submit({{0x20000, 4, true}});
    ASSERT_EQ(q.pop(mem).kind, Kind::kChain);
    ASSERT_TRUE(q.add_used(mem, head, 4));
    drv.pop_used();
  }
  drv.set_used_event(0xffff);
  q.needs_interrupt(mem);
  ASSERT_EQ(q.next_used(), 0xfffe);
  for (int i = 0; i < 3; ++i) {  // 0xfffe -> 0x0001 crosses 0xffff
    const uint16_t head = drv.submit({{0x20000, 4, true}});
    ASSERT_EQ(q.pop(mem).kind, Kind::kChain);
    ASSERT_TRUE(q.add_used(mem, head, 4));
    drv.pop_used();
  }
  EXPECT_TRUE(q.needs_interrupt(mem));
}

TEST_F(QueueTest, EnableNotificationPublishesAvailEventAndReportsNewBuffers) {
  q.set_features(true, false);
  drv.submit({{drv.alloc(4), 4, false}});
  drv.submit({{drv.alloc(4), 4, false}});
  ASSERT_EQ(q.pop(mem).kind, Kind::kChain);
  ASSERT_EQ(q.pop(mem).kind, Kind::kChain);
  ASSERT_EQ(q.pop(mem).kind, Kind::kEmpty);
  EXPECT_FALSE(q.enable_notification(mem));
  EXPECT_EQ(drv.avail_event(), 2);
  EXPECT_EQ(drv.avail_event(), q.next_avail());

  // A buffer arrives before the device sleeps: it must look again.
  drv.submit({{drv.alloc(4), 4, false}});
  EXPECT_TRUE(q.enable_notification(mem));
  EXPECT_EQ(drv.avail_event(), 2);
  ASSERT_EQ(q.pop(mem).kind, Kind::kChain);
  EXPECT_FALSE(q.enable_notification(mem));
  EXPECT_EQ(drv.avail_event(), 3);
}

TEST_F(QueueTest, WithoutEventIdxNoInterruptFlagIsHonoured) {
  const uint16_t sentinel = 0xabcd;
  mem.write_obj<uint16_t>(drv.used_ring() + 4 + 8 * kSize, sentinel);  // avail_event slot
  auto complete = [&] {
    const uint16_t head = drv.submit({{drv.alloc(4), 4, true}});
    ASSERT_EQ(q.pop(mem).kind, Kind::kChain);
    ASSERT_TRUE(q.add_used(mem, head, 4));
  };
  drv.set_used_event(100);  // ignored without EVENT_IDX
  complete();
  EXPECT_TRUE(q.needs_interrupt(mem));
  EXPECT_FALSE(q.needs_interrupt(mem));
  drv.set_avail_flags(kAvailFNoInterrupt);
  complete();
  EXPECT_FALSE(q.needs_interrupt(mem));
  drv.set_avail_flags(0);
  complete();
  EXPECT_TRUE(q.needs_interrupt(mem));

  EXPECT_FALSE(q.enable_notification(mem));
  EXPECT_EQ(drv.avail_event(), sentinel);  // not written without EVENT_IDX
  drv.submit({{drv.alloc(4), 4, true}});
  EXPECT_TRUE(q.enable_notification(mem));
}

TEST_F(QueueTest, ResetForgetsIndicesAndFeatures) {
  q.set_features(true, true);
  drv.submit(good_buffers());
  ASSERT_EQ(q.pop(mem).kind, Kind::kChain);
  q.reset();
  EXPECT_EQ(q.next_avail(), 0);
  EXPECT_EQ(q.next_used(), 0);
  EXPECT_FALSE(q.ready);
  EXPECT_EQ(q.size, Queue::kMaxSize);
}

}  // namespace
}  // namespace kiln::virtio
