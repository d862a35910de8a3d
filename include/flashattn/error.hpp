// flashattn::Error — the one exception type of the library.
#pragma once

#include <stdexcept>
#include <string>

namespace flashattn {

// Thrown for every invalid argument. The message names the function, the
// argument, what was expected and what was given, e.g.
//   "flash_attn: k has 5 heads, which does not divide q's 8 heads".
// Validation always happens before any output is written.
class Error : public std::invalid_argument {
 public:
  explicit Error(const std::string& message) : std::invalid_argument(message) {}
};

}  // namespace flashattn
