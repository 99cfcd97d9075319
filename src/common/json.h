// JSON text output (vixdisk --json, snapshot.json): the one string-quoting rule both use.
#pragma once

#include <string>
#include <string_view>

namespace vix {

// s as a JSON string literal, quotes included; control characters escaped.
std::string json_string(std::string_view s);

}  // namespace vix
