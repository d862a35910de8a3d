// Hand-written argument scanning for the `flashattn` command line: a cursor
// over a command's arguments and strict parsers for numbers and pairs. Every
// problem throws CliError, whose message main() prints as one line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace flashattn::cli {

// A bad command line (unknown flag, missing or malformed value).
class CliError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Walks "--flag [value]" arguments left to right.
class ArgCursor {
 public:
  explicit ArgCursor(std::span<const std::string_view> args) : args_(args) {}

  bool done() const { return next_ >= args_.size(); }
  // The next argument, which must be a flag ("--name" or "-h").
  std::string_view next_flag();
  // The argument after `flag`: its value. Throws when absent or another flag.
  std::string_view value_of(std::string_view flag);

 private:
  std::span<const std::string_view> args_;
  std::size_t next_ = 0;
};

// A whole decimal integer in [min, max] (no sign games, no trailing text).
std::int64_t parse_int(std::string_view flag, std::string_view text, std::int64_t min, std::int64_t max);
// A finite decimal number.
double parse_double(std::string_view flag, std::string_view text);
// "L,R": two integers, each >= min.
std::pair<std::int64_t, std::int64_t> parse_int_pair(std::string_view flag, std::string_view text, std::int64_t min);

}  // namespace flashattn::cli
