#include "base/metrics.h"

#include <nlohmann/json.hpp>

#include <chrono>

namespace kiln {

std::string Metrics::to_json_line(const std::string& id,
                                  const std::map<std::string, std::string>& properties) const {
  auto v = [](const Counter& c) { return c.load(std::memory_order_relaxed); };
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  nlohmann::json j{
      {"utc_timestamp_ms", now},
      {"api", {{"requests", v(api_requests)}, {"errors", v(api_errors)}}},
      {"vcpu",
       {{"exits_io", v(vcpu_exits_io)},
        {"exits_mmio", v(vcpu_exits_mmio)},
        {"exits_other", v(vcpu_exits_other)}}},
      {"block",
       {{"read_ops", v(block_read_ops)},
        {"write_ops", v(block_write_ops)},
        {"read_bytes", v(block_read_bytes)},
        {"write_bytes", v(block_write_bytes)},
        {"flush_ops", v(block_flush_ops)},
        {"errors", v(block_errors)},
        {"rate_limiter_throttled_events", v(block_throttled)}}},
      {"entropy",
       {{"bytes", v(entropy_bytes)},
        {"throttled", v(entropy_throttled)},
        {"errors", v(entropy_errors)}}},
      {"net",
       {{"rx_frames", v(net_rx_frames)},
        {"rx_bytes", v(net_rx_bytes)},
        {"rx_dropped", v(net_rx_dropped)},
        {"rx_errors", v(net_rx_errors)},
        {"rx_no_buffers", v(net_rx_no_buffers)},
        {"rx_rate_limiter_throttled", v(net_rx_throttled)},
        {"tx_rate_limiter_throttled", v(net_tx_throttled)},
        {"tx_frames", v(net_tx_frames)},
        {"tx_bytes", v(net_tx_bytes)},
        {"tx_errors", v(net_tx_errors)}}},
      {"balloon",
       {{"inflate_count", v(balloon_inflate_count)},
        {"deflate_count", v(balloon_deflate_count)},
        {"stats_updates_count", v(balloon_stats_updates)},
        {"free_page_report_count", v(balloon_report_count)},
        {"released_bytes", v(balloon_released_bytes)},
        {"errors", v(balloon_errors)}}},
  };
  if (!id.empty()) j["id"] = id;
  if (!properties.empty()) j["properties"] = properties;
  // Properties come from the API as UTF-8; replace keeps a line whatever they hold.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace kiln
