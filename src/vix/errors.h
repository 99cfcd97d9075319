// VixError texts (VDDK-like English for every code of vixDiskLib.h) and the per-thread memory of
// the detailed message that came with the most recent error of each code, so that
// GetErrorText can say *why* ("The file is corrupted (disk.vmdk: grain table 3 ...)").
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace vix {

// The fixed English text of a code (upper bits ignored); never empty.
std::string_view base_error_text(VixError code);

// Remembers err.message as this thread's latest detail for err.code. Bounded: a few codes, each
// message cut to a few hundred bytes.
void note_error_detail(const Error& err);
// Forgets every remembered detail of this thread (tests).
void clear_error_details();

// base text, plus " (<detail>)" when this thread remembers a detail for the code.
std::string error_text(VixError code);

}  // namespace vix
