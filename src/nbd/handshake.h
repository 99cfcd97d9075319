// The fixed newstyle handshake, apart from the transmission phase (connection.cc).
#pragma once

#include <cstdint>
#include <memory>

#include "nbd/connection.h"

namespace vix::nbd {

struct Negotiated {
  std::unique_ptr<Stream> stream;  // the TLS stream after STARTTLS, else the one passed in
  ExportInfo info;
  uint32_t meta_context_id = 0;  // base:allocation, valid when info.base_allocation
};

// Runs the handshake up to the transmission phase, within options.deadline.
Result<Negotiated> negotiate(std::unique_ptr<Stream> stream, const HandshakeOptions& options);

}  // namespace vix::nbd
