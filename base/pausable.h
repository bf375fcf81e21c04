// The device-lifecycle hook for pausing: PATCH /vm Paused (and later snapshots) stop every
// piece of device-side work, not only the vCPUs. Implemented by the virtio transport (queue
// notifications deferred, host fds disarmed) and the console reader.
#pragma once

namespace kiln {

class Pausable {
 public:
  virtual ~Pausable() = default;
  // Any thread. Returns once no work of this object runs and none starts until resume(): no
  // guest-memory writes, no host I/O. What arrives meanwhile waits (nothing is lost, nothing
  // spins). Idempotent.
  virtual void pause() = 0;
  // Any thread. The work that waited is done (on its usual thread). Idempotent.
  virtual void resume() = 0;
};

}  // namespace kiln
