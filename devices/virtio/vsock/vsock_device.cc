#include "devices/virtio/vsock/vsock_device.h"

#include <spdlog/spdlog.h>

#include <cstring>

#include "base/fd_limit.h"
#include "devices/virtio/chain_io.h"
#include "devices/virtio/vsock/packet.h"

namespace kiln::virtio {

using vsock::PacketHeader;

VsockDevice::VsockDevice(const VsockOptions& options, std::optional<size_t> max_connections)
    : options_(options),
      muxer_(options.guest_cid, options.uds_path,
             max_connections.value_or(vsock::Muxer::connection_budget(fd_limit()))) {}

uint32_t VsockDevice::device_id() const {
  return kDeviceIdVsock;
}

uint64_t VsockDevice::device_features() const {
  return feature(kFVersion1) | feature(kFRingEventIdx) | feature(kFRingIndirectDesc);
}

void VsockDevice::activate(uint64_t /*features*/) {
  muxer_.activate();
}

void VsockDevice::reset() {
  reset_event_pending_ = false;
  event_drain_.reset();
  muxer_.reset();
  rx_drain_.reset();
  tx_drain_.reset();
}

std::string VsockDevice::process_queue(size_t index, Queue& queue, const GuestMemory& mem) {
  switch (index) {
    case vsock::kRxQueue:
      muxer_.set_rx_buffers(true);
      return fill_rx(queue, mem);
    case vsock::kTxQueue:
      return process_tx(queue, mem);
    default:
      return send_reset_event(queue, mem);  // buffers wait for a TRANSPORT_RESET
  }
}

std::string VsockDevice::process_host_events(std::span<Queue> queues, const GuestMemory& mem) {
  if (reset_event_pending_ && queues.size() > vsock::kEventQueue &&
      queues[vsock::kEventQueue].ready) {
    if (std::string error = send_reset_event(queues[vsock::kEventQueue], mem); !error.empty())
      return error;
  }
  muxer_.on_host_events();
  if (queues.size() <= vsock::kRxQueue || !queues[vsock::kRxQueue].ready) return "";
  return fill_rx(queues[vsock::kRxQueue], mem);
}

std::string VsockDevice::process_tx(Queue& queue, const GuestMemory& mem) {
  const DrainResult result = tx_drain_.drain(
      queue, mem,
      [&](const std::string& error) {
        if (log_limit_.allow())
          spdlog::warn("virtio-vsock: bad tx chain dropped ({} so far): {}", log_limit_.events(),
                       error);
      },
      [&](const DescriptorChain& chain) {
        handle_tx(chain, mem);
        return DrainStep::used(0);
      });
  if (!result.error.empty()) return result.error;
  // Answers (RESPONSE, RST, credit) go out from process_host_events, which has the rx queue.
  if (muxer_.has_rx()) muxer_.wake();
  return "";
}

void VsockDevice::handle_tx(const DescriptorChain& chain, const GuestMemory& mem) {
  PacketHeader hdr{};
  if (chain.readable_bytes < sizeof(hdr) ||
      !chain_read(mem, chain, 0, std::span(reinterpret_cast<uint8_t*>(&hdr), sizeof(hdr)))) {
    if (log_limit_.allow())
      spdlog::warn("virtio-vsock: tx packet of {} bytes is shorter than its 44-byte header",
                   chain.readable_bytes);
    return;
  }
  if (hdr.src_cid != options_.guest_cid || hdr.dst_cid != vsock::kHostCid) {
    if (log_limit_.allow())
      spdlog::warn("virtio-vsock: packet from cid {} to cid {} dropped (guest is {}, host 2)",
                   uint64_t{hdr.src_cid}, uint64_t{hdr.dst_cid}, options_.guest_cid);
    return;
  }
  const bool bad_len =
      hdr.len > chain.readable_bytes - sizeof(hdr) || (hdr.op != vsock::kOpRw && hdr.len != 0);
  if (hdr.type != vsock::kTypeStream || bad_len) {
    if (log_limit_.allow())
      spdlog::warn("virtio-vsock: bad packet (type {}, op {}, len {} in {} bytes), sending RST",
                   uint16_t{hdr.type}, uint16_t{hdr.op}, uint32_t{hdr.len}, chain.readable_bytes);
    muxer_.reject(hdr);
    return;
  }
  muxer_.on_guest_packet(hdr, mem, chain);
}

std::string VsockDevice::fill_rx(Queue& queue, const GuestMemory& mem) {
  return rx_drain_
      .drain(
          queue, mem,
          [&](const std::string& error) {
            if (log_limit_.allow()) spdlog::warn("virtio-vsock: bad rx chain dropped: {}", error);
          },
          [&](const DescriptorChain& chain) {
            if (chain.writable_bytes <= sizeof(PacketHeader)) {
              if (log_limit_.allow())
                spdlog::warn("virtio-vsock: rx buffer of {} bytes cannot hold a packet, dropped",
                             chain.writable_bytes);
              return DrainStep::used(0);
            }
            muxer_.set_rx_buffers(true);
            const uint32_t written = muxer_.produce_rx(mem, chain);
            if (written == 0) return DrainStep::hold();  // keep the chain for the next packet
            return DrainStep::used(written);
          },
          [&] { return muxer_.has_rx(); },
          [&] { muxer_.set_rx_buffers(false); })  // until the guest kicks rx
      .error;
}

std::string VsockDevice::send_reset_event(Queue& queue, const GuestMemory& mem) {
  constexpr uint32_t kTransportReset = 0;  // VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
  return event_drain_
      .drain(
          queue, mem, [](const std::string&) {},
          [&](const DescriptorChain& chain) {
            const uint8_t* id = reinterpret_cast<const uint8_t*>(&kTransportReset);
            if (chain.writable_bytes < sizeof(kTransportReset) ||
                !chain_write(mem, chain, 0, std::span(id, sizeof(kTransportReset)))) {
              if (log_limit_.allow())
                spdlog::warn("virtio-vsock: event buffer too small or outside guest memory");
              return DrainStep::used(0);
            }
            reset_event_pending_ = false;
            return DrainStep::used(sizeof(kTransportReset));
          },
          [&] { return reset_event_pending_; })
      .error;
}

std::optional<std::vector<uint8_t>> VsockDevice::save_state() const {
  snapshot::ByteWriter w;
  w.u16(1);
  w.u8(rx_drain_.held() ? 1 : 0);
  w.u8(reset_event_pending_ ? 1 : 0);
  return w.take();
}

void VsockDevice::restore_state(std::span<const uint8_t> state, std::span<Queue> queues) {
  snapshot::ByteReader r(state.data(), state.size(), "virtio-vsock state");
  r.expect_version(1);
  const uint8_t held = r.u8(), pending = r.u8();
  r.finish();
  if (held > 1 || pending > 1 || queues.size() <= vsock::kEventQueue ||
      (held && !queues[vsock::kRxQueue].ready))
    throw kiln::Error("virtio-vsock state: a value the device never holds");
  // The held rx chain had nothing written: it goes back to the driver's ring.
  if (held) queues[vsock::kRxQueue].undo_pop();
  rx_drain_.reset();
  tx_drain_.reset();
  event_drain_.reset();
  reset_event_pending_ = true;
}

}  // namespace kiln::virtio
