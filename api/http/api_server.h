// The management API's HTTP/1.1 server on a Unix socket: one epoll thread ("kiln-api") serving
// many keep-alive connections, one request at a time per connection, in order. Handlers answer
// through a Respond callback that any thread may call later; the server never waits for it.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>

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

  static constexpr size_t kMaxConnections = 64;

  // So that clients which connect and stall cannot lock others out:
  //  - a request must arrive whole within `request_timeout` of its first byte (else the
  //    client gets 408 and the connection closes); a response the client does not read, or a
  //    client that does not close after "Connection: close", gets as long between progress;
  //  - a keep-alive connection with nothing pending closes after `idle_timeout`;
  //  - at `max_connections`, a new client makes the server close the connection idle longest;
  //    if none is idle (all are mid-request or waiting for their response), new clients wait
  //    in the listen backlog until one closes.
  // A request being handled has no time limit: the handler answers when it is done.
  struct Limits {
    size_t max_connections = kMaxConnections;
    std::chrono::milliseconds request_timeout{10'000};
    std::chrono::milliseconds idle_timeout{60'000};
  };

  // Binds and listens on a Unix socket at `path`, created with mode 0600. An existing path is
  // refused (kiln::UsageError naming the path) unless it is a stale socket (connect() fails with
  // ECONNREFUSED), which is replaced. Throws kiln::Error on other failures.
  ApiServer(std::string path, Handler handler, Limits limits);
  ApiServer(std::string path, Handler handler)
      : ApiServer(std::move(path), std::move(handler), Limits{}) {}
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
