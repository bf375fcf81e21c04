// The management API's HTTP/1.1 server on a Unix socket: one epoll thread ("kiln-api") serving
// many keep-alive connections, one request at a time per connection, in order. Handlers answer
// through a Respond callback that any thread may call later; the server never waits for it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "api/http/http.h"

namespace kiln::api {

class ApiServer {
 public:
  // Called on the server thread for each request. `respond` may be called later, from ANY
  // thread, exactly once (further calls are ignored); the server thread then writes the
  // response. If every copy of `respond` is destroyed uncalled, or the handler throws before
  // responding, the client gets a 500. Responses for a connection that has closed are dropped.
  using Respond = std::function<void(HttpResponse)>;
  using Handler = std::function<void(HttpRequest, Respond)>;

  static constexpr size_t kMaxConnections = 64;  // more are accepted and closed at once

  // Binds and listens on a Unix socket at `path`, created with mode 0600. An existing path is
  // refused (kiln::UsageError naming the path) unless it is a stale socket (connect() fails with
  // ECONNREFUSED), which is replaced. Throws kiln::Error on other failures.
  ApiServer(std::string path, Handler handler);
  // Stops, joins, closes every fd and removes the socket file (if it is still the one bound
  // here). Must not run on the server thread (i.e. from a handler).
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Runs the server on its own thread. Once only.
  void start();
  // Thread-safe, idempotent: the server thread closes every connection and exits; joined here
  // unless called from the server thread itself. The socket file stays until destruction.
  void stop();

  const std::string& path() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::api
