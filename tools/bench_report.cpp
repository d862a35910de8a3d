// Table and JSON-lines printing for `flashattn bench` (see bench_report.hpp).
#include "bench_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

namespace flashattn::tools {
namespace {

std::string format(const char* spec, double x) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, spec, x);
  return buffer;
}

// "-" for NaN (a skipped baseline).
std::string optional_number(const char* spec, double x) { return std::isnan(x) ? "-" : format(spec, x); }

std::string mask_label(const BenchRow& r) {
  if (r.window_left < 0 && r.window_right < 0) return "none";
  if (r.causal && r.window_left < 0) return "causal";
  const std::string band = "window(" + std::to_string(r.window_left) + "," + std::to_string(r.window_right) + ")";
  return r.causal ? "causal " + band : band;
}

std::string features_label(const BenchRow& r) {
  std::string s;
  auto add = [&](const std::string& word) {
    if (!s.empty()) s += ' ';
    s += word;
  };
  if (r.softcap > 0) add("softcap=" + format("%g", r.softcap));
  if (r.alibi) add("alibi");
  if (r.dropout_p > 0) add("dropout=" + format("%g", r.dropout_p));
  return s.empty() ? "-" : s;
}

struct Column {
  const char* title;
  bool right_aligned;
  std::function<std::string(const BenchRow&)> cell;
};

std::vector<Column> table_columns() {
  auto num = [](std::int64_t x) { return std::to_string(x); };
  return {
      {"backend", false, [](const BenchRow& r) { return r.backend; }},
      {"isa", false, [](const BenchRow& r) { return r.isa; }},
      {"dtype", false, [](const BenchRow& r) { return r.dtype; }},
      {"B", true, [=](const BenchRow& r) { return num(r.batch); }},
      {"H", true, [=](const BenchRow& r) { return num(r.heads); }},
      {"HKV", true, [=](const BenchRow& r) { return num(r.heads_kv); }},
      {"Sq", true, [=](const BenchRow& r) { return num(r.seqlen_q); }},
      {"Sk", true, [=](const BenchRow& r) { return num(r.seqlen_k); }},
      {"D", true, [=](const BenchRow& r) { return num(r.head_dim); }},
      {"mask", false, mask_label},
      {"features", false, features_label},
      {"threads", true, [=](const BenchRow& r) { return num(r.threads); }},
      {"ms", true, [](const BenchRow& r) { return format("%.3f", r.ms); }},
      {"GFLOP/s", true, [](const BenchRow& r) { return format("%.1f", r.gflops); }},
      {"path", false, [](const BenchRow& r) { return r.path; }},
      {"peak", true, [](const BenchRow& r) { return format("%.0f", r.peak_gflops); }},
      {"%peak", true, [](const BenchRow& r) { return format("%.1f", 100 * r.fraction_of_peak); }},
      {"max_abs_err", true, [](const BenchRow& r) { return format("%.2e", r.verdict.max_abs_err); }},
      {"bound", true, [](const BenchRow& r) { return format("%.2e", r.verdict.bound); }},
      {"baseline", false, [](const BenchRow& r) { return r.baseline; }},
      {"base_ms", true, [](const BenchRow& r) { return optional_number("%.3f", r.baseline_ms); }},
      {"speedup", true, [](const BenchRow& r) { return optional_number("%.2f", r.speedup_vs_baseline); }},
      {"ws_MiB", true, [](const BenchRow& r) { return format("%.1f", static_cast<double>(r.workspace_bytes) / kMiB); }},
      {"tensor_MiB", true, [](const BenchRow& r) { return format("%.1f", r.tensor_mb); }},
      {"rss_MiB", true, [](const BenchRow& r) { return format("%.1f", r.peak_rss_mb); }},
      {"oracle", false, [](const BenchRow& r) { return std::string(r.verdict.ok ? "ok" : "FAIL"); }},
  };
}

// Finite numbers as %.6g; NaN and infinities (not JSON) as null.
std::string json_number(double x) { return std::isfinite(x) ? format("%.6g", x) : "null"; }

std::string json_string(const std::string& s) {
  std::string quoted = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "\"";
}

}  // namespace

void print_table(std::ostream& os, std::span<const BenchRow> rows) {
  const std::vector<Column> columns = table_columns();
  std::vector<std::vector<std::string>> cells(rows.size());  // (rows, columns)
  std::vector<std::size_t> widths;
  for (const Column& c : columns) widths.push_back(std::string(c.title).size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    for (std::size_t c = 0; c < columns.size(); ++c) {
      cells[r].push_back(columns[c].cell(rows[r]));
      widths[c] = std::max(widths[c], cells[r][c].size());
    }
  }
  auto print_line = [&](auto&& text_of) {
    std::string line;
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const std::string text = text_of(c);
      const std::string pad(widths[c] - text.size(), ' ');
      line += (c ? "  " : "") + (columns[c].right_aligned ? pad + text : text + pad);
    }
    line.erase(line.find_last_not_of(' ') + 1);
    os << line << '\n';
  };
  print_line([&](std::size_t c) { return std::string(columns[c].title); });
  for (std::size_t r = 0; r < rows.size(); ++r) print_line([&](std::size_t c) { return cells[r][c]; });
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const OracleVerdict& v = rows[r].verdict;
    if (v.ok) continue;
    os << "row " << r + 1 << ": FAIL: " << v.failure << " (out error " << format("%.3e", v.max_abs_err) << ", bound "
       << format("%.3e", v.bound) << "; lse error " << format("%.3e", v.lse_err) << ", bound "
       << format("%.3e", v.lse_bound) << "; " << v.rows_checked << " rows checked)\n";
  }
  os.flush();
}

void print_json_line(std::ostream& os, const BenchRow& r) {
  const OracleVerdict& v = r.verdict;
  auto b = [](bool x) { return x ? "true" : "false"; };
  os << "{\"mode\": \"fwd\", \"backend\": " << json_string(r.backend) << ", \"isa\": " << json_string(r.isa)
     << ", \"dtype\": " << json_string(r.dtype) << ", \"batch\": " << r.batch << ", \"heads\": " << r.heads
     << ", \"heads_kv\": " << r.heads_kv << ", \"seqlen_q\": " << r.seqlen_q << ", \"seqlen_k\": " << r.seqlen_k
     << ", \"head_dim\": " << r.head_dim << ", \"causal\": " << b(r.causal) << ", \"window_left\": " << r.window_left
     << ", \"window_right\": " << r.window_right << ", \"softcap\": " << json_number(r.softcap)
     << ", \"alibi\": " << b(r.alibi) << ", \"dropout_p\": " << json_number(r.dropout_p)
     << ", \"threads\": " << r.threads << ", \"repeat\": " << r.repeat << ", \"ms\": " << json_number(r.ms)
     << ", \"gflops\": " << json_number(r.gflops) << ", \"path\": " << json_string(r.path)
     << ", \"peak_gflops\": " << json_number(r.peak_gflops)
     << ", \"fraction_of_peak\": " << json_number(r.fraction_of_peak)
     << ", \"baseline\": " << json_string(r.baseline) << ", \"baseline_note\": " << json_string(r.baseline_note)
     << ", \"baseline_ms\": " << json_number(r.baseline_ms)
     << ", \"speedup_vs_baseline\": " << json_number(r.speedup_vs_baseline) << ", \"workspace_bytes\": " << r.workspace_bytes << ", \"peak_rss_mb\": " << json_number(r.peak_rss_mb)
     << ", \"tensor_mb\": " << json_number(r.tensor_mb) << ", \"max_abs_err\": " << json_number(v.max_abs_err)
     << ", \"err_bound\": " << json_number(v.bound) << ", \"lse_err\": " << json_number(v.lse_err)
     << ", \"lse_bound\": " << json_number(v.lse_bound) << ", \"rows_checked\": " << v.rows_checked
     << ", \"oracle_ok\": " << b(v.ok);
  if (!v.ok) os << ", \"failure\": " << json_string(v.failure);
  os << "}\n" << std::flush;
}

}  // namespace flashattn::tools
