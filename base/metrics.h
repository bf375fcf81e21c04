// Counters Kiln keeps while running, written as one JSON line per flush to the metrics file
// (PUT /metrics): periodically and on the FlushMetrics action. Counters only grow; writers
// are vCPU threads, the event loop and the controller, so they are relaxed atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>

namespace kiln {

struct Metrics {
  using Counter = std::atomic<uint64_t>;
  Counter api_requests{0};
  Counter api_errors{0};
  Counter vcpu_exits_io{0};
  Counter vcpu_exits_mmio{0};
  Counter vcpu_exits_other{0};
  Counter block_read_ops{0};
  Counter block_write_ops{0};
  Counter block_read_bytes{0};
  Counter block_write_bytes{0};
  Counter block_flush_ops{0};
  Counter block_errors{0};
  Counter block_throttled{0};  // requests that waited for the drive's rate limiter
  Counter entropy_bytes{0};
  Counter entropy_throttled{0};  // requests that waited for the rate limiter
  Counter entropy_errors{0};
  Counter net_rx_frames{0};
  Counter net_rx_bytes{0};
  Counter net_rx_dropped{0};  // frames longer than the guest's buffer (dropped, not delivered)
  Counter net_rx_errors{0};   // malformed RX chains (returned with length 0) and TAP read errors
  Counter net_tx_frames{0};
  Counter net_tx_bytes{0};
  Counter net_tx_errors{0};      // malformed TX chains and frames the TAP refused
  Counter net_rx_throttled{0};   // times RX waited for the interface's rx rate limiter
  Counter net_tx_throttled{0};   // TX frames that waited for its tx rate limiter
  Counter net_rx_no_buffers{0};  // times the TAP was dropped from polling: the guest had no buffers
  Counter balloon_inflate_count{0};   // inflate buffers served
  Counter balloon_deflate_count{0};   // deflate buffers served
  Counter balloon_stats_updates{0};   // statistics buffers received
  Counter balloon_report_count{0};    // free page reports served
  Counter balloon_released_bytes{0};  // guest memory given back to the host (inflate, reports)
  Counter balloon_errors{0};          // bad chains and page numbers outside guest RAM

  static void add(Counter& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }
  // {"utc_timestamp_ms": ..., "api": {...}, "vcpu": {...}, "block": {...},
  //  "entropy": {...}, "net": {...}, "balloon": {...}}, with "id": `id` when not empty and
  //  "properties": {...}
  // when not empty (PUT /metrics emit_id, properties).
  std::string to_json_line(const std::string& id = "",
                           const std::map<std::string, std::string>& properties = {}) const;
};

}  // namespace kiln
