// One snapshot test over every virtio device (crosvm's model): each device, driven through the
// virtio-mmio transport to a live state with requests done, is saved while paused and
// restored into a fresh device built the same way. The restored transport shows the driver
// the same registers, goes on serving the queues where the first one stopped, and every
// corruption of the state is refused with the fresh device left as it was. A device without
// snapshots is refused by name.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <functional>
#include <memory>

#include "devices/virtio/balloon/balloon_device.h"
#include "devices/virtio/block/block_device.h"
#include "devices/virtio/console/console_device.h"
#include "devices/virtio/fs/fs_device.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/rng/rng_device.h"
#include "devices/virtio/vsock/vsock_device.h"
#include "tests/support/snapshot_checks.h"
#include "tests/support/test_files.h"
#include "tests/support/virtqueue_driver.h"

namespace kiln::virtio {
namespace {

using testsupport::MmioDriver;
using testsupport::VirtqueueDriver;
namespace reg = testsupport::mmio;

constexpr uint64_t kMemSize = 8 << 20;
// The transport state's layout up to the first queue (mmio_transport.cc): version, device id,
// status, two feature selectors, driver features, queue select, config generation, activated,
// interrupt status, queue count; then per queue its size, ready, the three ring addresses.
constexpr size_t kStatusAt = 6;
constexpr size_t kFirstQueueAt = 43;
constexpr size_t kFirstQueueDescAt = kFirstQueueAt + 3;

struct DeviceCase {
  const char* name;
  // Builds the device; `instance` 0 is the one saved, 1 the one restored.
  std::function<std::shared_ptr<VirtioDevice>(int instance)> make;
};

class VirtioSnapshot : public ::testing::TestWithParam<int> {
 protected:
  // A live transport over `device`: every queue set up (8 entries), each with one chain the
  // device had to serve (a readable and a writable buffer).
  struct Live {
    std::shared_ptr<VirtioDevice> device;
    std::unique_ptr<MmioTransport> transport;
    std::unique_ptr<MmioDriver> driver;
    std::vector<std::unique_ptr<VirtqueueDriver>> queues;
  };
  Live live(std::shared_ptr<VirtioDevice> device, bool with_requests) {
    Live l;
    l.device = std::move(device);
    l.transport = std::make_unique<MmioTransport>(l.device, mem_, [this] { ++irqs_; });
    l.driver = std::make_unique<MmioDriver>(*l.transport);
    std::vector<const VirtqueueDriver*> queues;
    for (size_t i = 0; i < l.device->num_queues(); ++i) {
      l.queues.push_back(std::make_unique<VirtqueueDriver>(mem_, 0x10000 * (i + 1), 8,
                                                           0x100000 * (i + 1), 0x100000));
      queues.push_back(l.queues.back().get());
    }
    l.driver->init(~uint64_t{0}, queues);
    if (with_requests) {
      for (size_t i = 0; i < l.queues.size(); ++i) {
        VirtqueueDriver& q = *l.queues[i];
        q.submit({{q.alloc(64), 64, false}, {q.alloc(64), 64, true}});
        l.transport->process_queue(i);
      }
    }
    return l;
  }
  // Every register the driver can read, for each queue.
  static std::vector<uint32_t> registers(MmioDriver& d, size_t queues) {
    std::vector<uint32_t> values;
    for (uint64_t r : {reg::kStatus, reg::kInterruptStatus, reg::kConfigGeneration})
      values.push_back(d.read32(r));
    for (uint32_t q = 0; q < queues; ++q) {
      d.write32(reg::kQueueSel, q);
      for (uint64_t r : {reg::kQueueNum, reg::kQueueReady, reg::kQueueDescLow, reg::kQueueDriverLow,
                         reg::kQueueDeviceLow})
        values.push_back(d.read32(r));
    }
    d.write32(reg::kQueueSel, 0);
    return values;
  }

  GuestMemory mem_{{{0, kMemSize}}};
  int irqs_ = 0;
  testsupport::TempFile disk_{1 << 20};
  test::TempDir dir_;
};

std::vector<DeviceCase> cases(const std::string& disk, const std::string& dir) {
  return {
      {"rng", [](int) { return std::make_shared<RngDevice>(std::nullopt); }},
      {"blk",
       [disk](int) {
         // Read-only: both devices hold the image's (shared) lock at once.
         return std::make_shared<BlockDevice>(BlockOptions{disk, true, "snap"});
       }},
      {"console",
       [](int) {
         return std::make_shared<ConsoleDevice>([](std::span<const uint8_t> b) { return b.size(); },
                                                [] {});
       }},
      {"fs",
       [dir](int) {
         FsOptions o;
         o.tag = "share";
         o.path = dir;
         return std::make_shared<FsDevice>(o);
       }},
      {"vsock",
       [dir](int instance) {
         // Each its own socket, as a restored clone gets through vsock_override.
         return std::make_shared<VsockDevice>(
             VsockOptions{3, dir + "/v" + std::to_string(instance) + ".sock"});
       }},
      {"balloon",
       [](int) {
         // Every queue: inflate, deflate, statistics (its buffer held when saved), reporting.
         return std::make_shared<BalloonDevice>(BalloonOptions{256, true, 5, true});
       }},
  };
}

TEST_P(VirtioSnapshot, RestoresWhatTheDriverSeesAndGoesOn) {
  const DeviceCase c = cases(disk_.path(), dir_.path())[GetParam()];
  SCOPED_TRACE(c.name);
  Live a = live(c.make(0), true);
  a.transport->pause();
  const std::vector<uint8_t> state = a.transport->save();
  const std::vector<uint32_t> seen = registers(*a.driver, a.queues.size());

  // The fresh device sits on the same guest memory, as a restored VM's does.
  auto device = c.make(1);
  MmioTransport restored(device, mem_, [this] { ++irqs_; });
  restored.pause();
  restored.restore(state);
  MmioDriver driver(restored);
  EXPECT_EQ(registers(driver, a.queues.size()), seen);
  EXPECT_EQ(restored.status() & kStatusDriverOk, kStatusDriverOk);
  // Its queues go on from where the first one's stopped: a new request on queue 0 is served
  // into the next used slot.
  restored.resume();
  VirtqueueDriver& q0 = *a.queues[0];
  const uint16_t used_before = q0.used_idx();
  if (std::string(c.name) == "rng") {
    q0.submit({{q0.alloc(32), 32, true}});
    restored.process_queue(0);
    EXPECT_EQ(q0.used_idx(), static_cast<uint16_t>(used_before + 1));
  }
  if (std::string(c.name) == "vsock") {
    // Connections did not survive: the guest hears VIRTIO_VSOCK_EVENT_TRANSPORT_RESET in the
    // event buffer it had posted (4 bytes, id 0).
    VirtqueueDriver& events = *a.queues[vsock::kEventQueue];
    restored.process_queue(vsock::kEventQueue);
    const auto used = events.pop_used();
    ASSERT_TRUE(used);
    EXPECT_EQ(used->len, 4u);
  }
  // A second save of the restored device restores again (the state is whole).
  restored.pause();
  a = {};  // frees instance 0's socket for the third device
  MmioTransport again(c.make(0), mem_, [] {});
  EXPECT_NO_THROW(again.restore(restored.save()));
}

TEST_P(VirtioSnapshot, CorruptStatesAreRefusedAndLeaveTheDeviceAsItWas) {
  const DeviceCase c = cases(disk_.path(), dir_.path())[GetParam()];
  SCOPED_TRACE(c.name);
  Live a = live(c.make(0), true);
  a.transport->pause();
  const std::vector<uint8_t> state = a.transport->save();
  Live fresh = live(c.make(1), false);
  fresh.transport->pause();

  std::vector<std::vector<uint8_t>> bad;
  bad.push_back(state);
  bad.back()[2] ^= 0x01;  // another device id
  bad.push_back(state);
  bad.back()[kStatusAt] |= 0x10;  // a status bit virtio does not define
  bad.push_back(state);
  bad.back()[kFirstQueueAt] = 3;  // a queue size that is not a power of two
  bad.push_back(state);
  bad.back()[kFirstQueueDescAt + 4] = 0x10;  // a ready queue's descriptor table past RAM
  testing::expect_bad_states_refused(*fresh.transport, state, bad);
}

INSTANTIATE_TEST_SUITE_P(EveryDevice, VirtioSnapshot, ::testing::Range(0, 6),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(cases("", "")[info.param].name);
                         });

TEST(VirtioSnapshotRefusal, ADeviceWithoutSnapshotsIsNamed) {
  // The default VirtioDevice: no state to save.
  class NoSnapshot : public VirtioDevice {
   public:
    uint32_t device_id() const override { return 42; }
    uint64_t device_features() const override { return feature(kFVersion1); }
    size_t num_queues() const override { return 1; }
    std::string process_queue(size_t, Queue&, const GuestMemory&) override { return ""; }
  };
  GuestMemory mem{{{0, 1 << 20}}};
  MmioTransport t(std::make_shared<NoSnapshot>(), mem, [] {});
  try {
    t.save();
    ADD_FAILURE() << "saved";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "virtio device 42 cannot be snapshotted yet");
  }
}

}  // namespace
}  // namespace kiln::virtio
