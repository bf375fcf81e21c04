#include "api/balloon_json.h"

#include "api/json_fields.h"

namespace kiln::api {

namespace {

using nlohmann::json;

constexpr uint64_t kPagesPerMib = 256;

// The guest's statistics by tag (virtio_balloon.h), in Firecracker's names.
constexpr const char* kStatNames[] = {
    "swap_in",       "swap_out",         "major_faults", "minor_faults",        "free_memory",
    "total_memory",  "available_memory", "disk_caches",  "hugetlb_allocations", "hugetlb_failures",
    "oom_kill",      "alloc_stall",      "async_scan",   "direct_scan",         "async_reclaim",
    "direct_reclaim"};

uint32_t interval(const std::optional<uint64_t>& seconds) {
  if (seconds && *seconds > BalloonConfig::kMaxStatsIntervalS)
    throw FieldError(
        "balloon", "stats_polling_interval_s",
        "must be at most " + std::to_string(BalloonConfig::kMaxStatsIntervalS) + " (a day)");
  return static_cast<uint32_t>(seconds.value_or(0));
}

}  // namespace

BalloonConfig parse_balloon(const json& body) {
  JsonFields f(body, "balloon");
  BalloonConfig b;
  b.amount_mib = f.required<uint64_t>("amount_mib");
  b.deflate_on_oom = f.required<bool>("deflate_on_oom");
  auto stats = f.optional<uint64_t>("stats_polling_interval_s");
  auto hinting = f.optional<bool>("free_page_hinting");
  auto reporting = f.optional<bool>("free_page_reporting");
  f.reject_unknown();
  b.stats_polling_interval_s = interval(stats);
  if (hinting.value_or(false))
    throw FieldError("balloon", "free_page_hinting",
                     "is not supported by Kiln; free_page_reporting gives free memory back");
  b.free_page_reporting = reporting.value_or(false);
  return b;
}

request::PatchBalloon parse_balloon_patch(const json& body) {
  JsonFields f(body, "balloon");
  request::PatchBalloon p;
  p.amount_mib = f.required<uint64_t>("amount_mib");
  f.reject_unknown();
  return p;
}

request::PatchBalloonStats parse_balloon_stats_patch(const json& body) {
  JsonFields f(body, "balloon");
  auto seconds = f.required<uint64_t>("stats_polling_interval_s");
  f.reject_unknown();
  return {interval(seconds)};
}

json balloon_json(const BalloonConfig& b) {
  return {{"amount_mib", b.amount_mib},
          {"deflate_on_oom", b.deflate_on_oom},
          {"stats_polling_interval_s", b.stats_polling_interval_s},
          {"free_page_hinting", false},
          {"free_page_reporting", b.free_page_reporting}};
}

json balloon_stats_json(const BalloonStatsInfo& s) {
  json j{{"target_pages", s.target_pages},
         {"actual_pages", s.actual_pages},
         {"target_mib", s.target_pages / kPagesPerMib},
         {"actual_mib", s.actual_pages / kPagesPerMib}};
  for (const auto& [tag, value] : s.values)
    if (tag < std::size(kStatNames)) j[kStatNames[tag]] = value;
  return j;
}

}  // namespace kiln::api
