// A request to a VMM's management API (`kiln --api-sock`, Firecracker's HTTP API on a Unix
// socket), as its clients inside Kiln make it: kiln-oci pauses, resumes and asks the state of a
// container's microVM, `kiln snapshot create` pauses and snapshots a running VM.
#pragma once

#include <string>

namespace kiln {

struct ApiReply {
  int status = 0;    // the HTTP status
  std::string body;  // at most 64 KiB
};

// One request, Connection: close; the answer within `timeout_ms`. kiln::Error if the socket
// cannot be reached or answers something that is not HTTP.
ApiReply vmm_api_call(const std::string& socket_path, const std::string& method,
                      const std::string& path, const std::string& body = "", int timeout_ms = 5000);

}  // namespace kiln
