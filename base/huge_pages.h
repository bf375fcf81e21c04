// How guest RAM is backed: Firecracker's machine-config "huge_pages" (None, Transparent, 2M).
#pragma once

#include <optional>
#include <string_view>

namespace kiln {

enum class HugePages {
  kNone,         // 4 KiB pages (the default: an idle guest costs only the pages it touched)
  kTransparent,  // transparent huge pages: madvise(MADV_HUGEPAGE) on 2 MiB-aligned guest RAM
  k2M,           // hugetlbfs 2 MiB pages (MAP_HUGETLB), reserved on the host beforehand
};

// The API's names: "None", "Transparent", "2M".
constexpr std::string_view huge_pages_name(HugePages h) {
  switch (h) {
    case HugePages::kTransparent:
      return "Transparent";
    case HugePages::k2M:
      return "2M";
    case HugePages::kNone:
      break;
  }
  return "None";
}

constexpr std::optional<HugePages> huge_pages_from_name(std::string_view name) {
  for (HugePages h : {HugePages::kNone, HugePages::kTransparent, HugePages::k2M})
    if (huge_pages_name(h) == name) return h;
  return std::nullopt;
}

}  // namespace kiln
