#include "writeapi/clock.h"

namespace writeapi {
namespace {

class RealClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace

const Clock* real_clock() noexcept {
  static const RealClock clock;
  return &clock;
}

}  // namespace writeapi
