// libFuzzer target for what a guest controls of Kiln's devices: the virtio-mmio transport's
// registers, the split virtqueue (descriptor chains, indirect tables, event idx, rings anywhere
// in guest memory) and the requests of virtio-blk, virtio-rng, virtio-balloon and
// virtio-console; and the port accesses of the serial UART, the i8042 and ACPI PM.
// An input is:
//   u8 device (rng, blk, balloon, console, serial, i8042, acpi-pm), u8 options,
//   u16 n: n bytes copied to guest memory at 0 (the guest's rings, tables and buffers),
//   then operations of 7 bytes: u8 kind, u16 offset, u32 value:
//     virtio: 0 register write (4 bytes), 1 register read, 2 queue kick, 3 a guest memory word,
//             4 the device's host events, 5 a 1-byte config write, 6 a driver's initialization
//             (status steps, every offered feature, each queue at a fuzzer-chosen place)
//     legacy: even kinds write the value's low byte to the port at offset, odd ones read.
// Checks: no crash or sanitizer report, and guest memory stays mapped (a device never unmaps
// or shrinks it). Host resources: the disk is a 1 MiB temporary file made once.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>

#include "base/guest_memory.h"
#include "devices/legacy/acpi_pm.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"
#include "devices/virtio/balloon/balloon_device.h"
#include "devices/virtio/block/block_device.h"
#include "devices/virtio/console/console_device.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/rng/rng_device.h"

namespace {

constexpr uint64_t kMemSize = 256 << 10;
constexpr size_t kMaxOps = 4096;

// Reads fixed-size fields off the input; past its end, zeros.
struct Reader {
  const uint8_t* p;
  size_t left;
  template <typename T>
  T take() {
    T v{};
    const size_t n = std::min(sizeof(T), left);
    std::memcpy(&v, p, n);
    p += n;
    left -= n;
    return v;
  }
};

const std::string& disk() {
  static const std::string path = [] {
    const char* t = std::getenv("TMPDIR");
    std::string p = std::string(t && *t ? t : "/tmp") + "/kiln-devices-fuzz-XXXXXX";
    const int fd = ::mkstemp(p.data());
    if (fd < 0 || ::ftruncate(fd, 1 << 20) != 0) std::abort();
    ::close(fd);
    spdlog::set_level(spdlog::level::off);
    std::atexit([] { ::unlink(disk().c_str()); });
    return p;
  }();
  return path;
}

std::shared_ptr<kiln::virtio::VirtioDevice> make_virtio(uint8_t kind, uint8_t options) {
  using namespace kiln::virtio;
  switch (kind) {
    case 0:
      return std::make_shared<RngDevice>(std::nullopt);
    case 1:
      return std::make_shared<BlockDevice>(BlockOptions{disk(), (options & 1) != 0, "fuzz"});
    case 2:
      return std::make_shared<BalloonDevice>(
          BalloonOptions{options, (options & 1) != 0, (options & 2) ? 1u : 0u, (options & 4) != 0});
    default:
      return std::make_shared<ConsoleDevice>([](std::span<const uint8_t> b) { return b.size(); },
                                             [] {});
  }
}

void write32(kiln::virtio::MmioTransport& t, uint64_t offset, uint32_t v) {
  t.write(offset, std::span(reinterpret_cast<const uint8_t*>(&v), 4));
}

// What a driver does to bring the device up, with the queues where `base` says.
void init(kiln::virtio::MmioTransport& t, size_t queues, uint32_t base) {
  using namespace kiln::virtio;
  write32(t, 0x70, 0);
  write32(t, 0x70, kStatusAcknowledge);
  write32(t, 0x70, kStatusAcknowledge | kStatusDriver);
  for (uint32_t sel = 0; sel < 2; ++sel) {
    write32(t, 0x14, sel);
    uint32_t f = 0;
    t.read(0x10, std::span(reinterpret_cast<uint8_t*>(&f), 4));
    write32(t, 0x24, sel);
    write32(t, 0x20, f);
  }
  write32(t, 0x70, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  for (uint32_t q = 0; q < queues; ++q) {
    const uint64_t at = (uint64_t{base} + q * 0x1000) % (kMemSize - 0x1000);
    write32(t, 0x30, q);
    write32(t, 0x38, 8 << (base & 3));
    write32(t, 0x80, static_cast<uint32_t>(at));
    write32(t, 0x84, 0);
    write32(t, 0x90, static_cast<uint32_t>(at + 0x400));
    write32(t, 0x94, 0);
    write32(t, 0xa0, static_cast<uint32_t>(at + 0x800));
    write32(t, 0xa4, 0);
    write32(t, 0x44, 1);
  }
  write32(t, 0x70, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
}

void fuzz_virtio(uint8_t kind, uint8_t options, Reader& in, kiln::GuestMemory& mem) {
  std::shared_ptr<kiln::virtio::VirtioDevice> device;
  try {
    device = make_virtio(kind, options);
  } catch (const kiln::Error&) {
    return;  // e.g. the disk locked: not the guest's doing
  }
  kiln::virtio::MmioTransport t(device, mem, [] {});
  const size_t queues = device->num_queues();
  for (size_t op = 0; op < kMaxOps && in.left >= 7; ++op) {
    const uint8_t what = in.take<uint8_t>();
    const uint16_t offset = in.take<uint16_t>();
    const uint32_t value = in.take<uint32_t>();
    switch (what % 7) {
      case 0:
        write32(t, offset % 0x200 & ~3u, value);
        break;
      case 1: {
        uint32_t v = 0;
        t.read(offset % 0x200 & ~3u, std::span(reinterpret_cast<uint8_t*>(&v), 4));
        break;
      }
      case 2:
        t.process_queue(value % (queues + 1));  // one past the last: ignored
        break;
      case 3:
        mem.write(uint64_t{offset} * 4 % kMemSize,
                  std::span(reinterpret_cast<const uint8_t*>(&value), 4));
        break;
      case 4:
        t.process_host_events();
        break;
      case 5: {
        const uint8_t b = static_cast<uint8_t>(value);
        t.write(0x100 + offset % 0x100, std::span(&b, 1));
        break;
      }
      default:
        init(t, queues, value);
        break;
    }
  }
}

void fuzz_legacy(uint8_t kind, Reader& in) {
  std::unique_ptr<kiln::BusDevice> device;
  uint16_t ports = 0;
  if (kind == 4) {
    device =
        std::make_unique<kiln::Serial>([](std::span<const uint8_t> b) { return b.size(); }, [] {});
    ports = 8;
  } else if (kind == 5) {
    device = std::make_unique<kiln::I8042>([] {}, [] {});
    ports = 5;
  } else {
    device = std::make_unique<kiln::AcpiPm>([] {}, [] {});
    ports = kiln::AcpiPm::kPortCount;
  }
  for (size_t op = 0; op < kMaxOps && in.left >= 7; ++op) {
    const uint8_t what = in.take<uint8_t>();
    const uint16_t offset = in.take<uint16_t>() % ports;
    uint8_t value = static_cast<uint8_t>(in.take<uint32_t>());
    if (what % 2 == 0)
      device->write(offset, std::span<const uint8_t>(&value, 1));
    else
      device->read(offset, std::span<uint8_t>(&value, 1));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in{data, size};
  const uint8_t kind = in.take<uint8_t>() % 7;
  const uint8_t options = in.take<uint8_t>();
  if (kind >= 4) {
    fuzz_legacy(kind, in);
    return 0;
  }
  kiln::GuestMemory mem{{{0, kMemSize}}};
  const uint16_t n = std::min<size_t>(in.take<uint16_t>(), in.left);
  if (n) mem.write(0, std::span(in.p, n));
  in.p += n;
  in.left -= n;
  fuzz_virtio(kind, options, in, mem);
  if (mem.total_size() != kMemSize) std::abort();
  return 0;
}
