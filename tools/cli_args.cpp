// Argument scanning for the `flashattn` command line (see cli_args.hpp).
#include "cli_args.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <system_error>

namespace flashattn::cli {
namespace {

std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

// "--seqlen" and "-h" are flags; "-1" and "-0.5" are values.
bool looks_like_flag(std::string_view text) {
  return text.size() >= 2 && text[0] == '-' && !std::isdigit(static_cast<unsigned char>(text[1])) && text[1] != '.';
}

}  // namespace

std::string_view ArgCursor::next_flag() {
  const std::string_view arg = args_[next_++];
  if (!looks_like_flag(arg)) throw CliError("unexpected argument " + quoted(arg) + ", expected a --flag");
  return arg;
}

std::string_view ArgCursor::value_of(std::string_view flag) {
  if (done() || looks_like_flag(args_[next_])) throw CliError(std::string(flag) + " needs a value");
  return args_[next_++];
}

std::int64_t parse_int(std::string_view flag, std::string_view text, std::int64_t min, std::int64_t max) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range ||
      (ec == std::errc() && end == text.data() + text.size() && (value < min || value > max))) {
    throw CliError(std::string(flag) + " expects an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                   "], got " + quoted(text));
  }
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw CliError(std::string(flag) + " expects an integer, got " + quoted(text));
  }
  return value;
}

double parse_double(std::string_view flag, std::string_view text) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    throw CliError(std::string(flag) + " expects a number, got " + quoted(text));
  }
  return value;
}

std::pair<std::int64_t, std::int64_t> parse_int_pair(std::string_view flag, std::string_view text, std::int64_t min) {
  const std::size_t comma = text.find(',');
  if (comma == std::string_view::npos) {
    throw CliError(std::string(flag) + " expects two integers 'L,R', got " + quoted(text));
  }
  constexpr std::int64_t kMax = INT64_MAX;
  return {parse_int(flag, text.substr(0, comma), min, kMax), parse_int(flag, text.substr(comma + 1), min, kMax)};
}

}  // namespace flashattn::cli
