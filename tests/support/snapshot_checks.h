// What every Snapshottable device's test checks about a refused state (crosvm's one snapshot
// test over every device, per device here): each truncation of a good `state`, the state with
// a trailing byte, another version (its first two bytes) and each of `bad` are refused with
// kiln::Error, and `fresh` is left exactly as it was.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/error.h"
#include "base/snapshottable.h"

namespace kiln::testing {

inline void expect_bad_states_refused(Snapshottable& fresh, const std::vector<uint8_t>& state,
                                      std::vector<std::vector<uint8_t>> bad) {
  std::vector<uint8_t> before = fresh.save();
  for (size_t n = 0; n < state.size(); ++n)
    EXPECT_THROW(fresh.restore(std::span(state.data(), n)), kiln::Error) << "truncated to " << n;
  bad.push_back(state);
  bad.back().push_back(0);  // a trailing byte
  bad.push_back(state);
  bad.back().at(0) = 0x7f;  // another version
  for (const auto& b : bad) EXPECT_THROW(fresh.restore(b), kiln::Error);
  EXPECT_EQ(fresh.save(), before);
}

}  // namespace kiln::testing
