// Table and JSON-lines printing for `flashattn bench` (see bench_report.hpp).
#include "bench_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <utility>
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
  std::string title;
  bool right_aligned;
  std::function<std::string(const BenchRow&)> cell;
};

// The gradients a bwd row checks, by name.
constexpr std::pair<const char*, GradientError BackwardVerdict::*> kGradients[] = {
    {"dq", &BackwardVerdict::dq}, {"dk", &BackwardVerdict::dk}, {"dv", &BackwardVerdict::dv}};

std::string mib(std::int64_t bytes) { return format("%.1f", static_cast<double>(bytes) / kMiB); }

// The error columns of a mode: out's for fwd, dq's, dk's and dv's for bwd
// ("-" for dk and dv when they were not checked).
std::vector<Column> error_columns(BenchMode mode) {
  if (mode != BenchMode::bwd) {
    return {{"max_abs_err", true, [](const BenchRow& r) { return format("%.2e", r.verdict.max_abs_err); }},
            {"bound", true, [](const BenchRow& r) { return format("%.2e", r.verdict.bound); }}};
  }
  std::vector<Column> columns;
  for (const auto& [name, grad] : kGradients) {
    columns.push_back({std::string(name) + "_err", true,
                       [grad](const BenchRow& r) { return optional_number("%.2e", (r.grad_verdict.*grad).err); }});
    columns.push_back({std::string(name) + "_bound", true,
                       [grad](const BenchRow& r) { return optional_number("%.2e", (r.grad_verdict.*grad).bound); }});
  }
  return columns;
}

std::string num(std::int64_t x) { return std::to_string(x); }

// "4096", or "1024-4096" when decode drew the cache lengths from a range.
std::string seqlen_k_label(const BenchRow& r) {
  const std::string max = num(r.seqlen_k);
  return r.seqlen_k_min > 0 && r.seqlen_k_min < r.seqlen_k ? num(r.seqlen_k_min) + "-" + max : max;
}

// Backend, ISA, dtype and sizes: the first columns of every mode.
std::vector<Column> problem_columns() {
  return {
      {"backend", false, [](const BenchRow& r) { return r.backend; }},
      {"isa", false, [](const BenchRow& r) { return r.isa; }},
      {"dtype", false, [](const BenchRow& r) { return r.dtype; }},
      {"B", true, [](const BenchRow& r) { return num(r.batch); }},
      {"H", true, [](const BenchRow& r) { return num(r.heads); }},
      {"HKV", true, [](const BenchRow& r) { return num(r.heads_kv); }},
      {"Sq", true, [](const BenchRow& r) { return num(r.seqlen_q); }},
      {"Sk", true, seqlen_k_label},
      {"D", true, [](const BenchRow& r) { return num(r.head_dim); }},
  };
}

// Memory and the verdict: the last columns of every mode.
std::vector<Column> footer_columns() {
  return {
      {"ws_MiB", true, [](const BenchRow& r) { return mib(r.workspace_bytes); }},
      {"tensor_MiB", true, [](const BenchRow& r) { return format("%.1f", r.tensor_mb); }},
      {"rss_MiB", true, [](const BenchRow& r) { return format("%.1f", r.peak_rss_mb); }},
      {"oracle", false, [](const BenchRow& r) { return std::string(r.oracle_ok() ? "ok" : "FAIL"); }},
  };
}

std::vector<Column> concatenated(std::initializer_list<std::vector<Column>> parts) {
  std::vector<Column> columns;
  for (const std::vector<Column>& part : parts) columns.insert(columns.end(), part.begin(), part.end());
  return columns;
}

// The page size, "/shuf" when the pages are shuffled; "-": contiguous.
std::string page_cell(const BenchRow& r) {
  if (r.page_size == 0) return "-";
  return num(r.page_size) + (r.page_order == "shuffled" ? "/shuf" : "");
}

std::vector<Column> decode_columns() {
  const std::vector<Column> cache = {
      {"page", true, [](const BenchRow& r) { return page_cell(r); }},
      {"splits", true, [](const BenchRow& r) { return r.num_splits > 0 ? num(r.num_splits) : std::string("auto"); }},
      {"threads", true, [](const BenchRow& r) { return num(r.threads); }},
      {"ms", true, [](const BenchRow& r) { return format("%.3f", r.ms); }},
      {"MiB", true, [](const BenchRow& r) { return format("%.1f", static_cast<double>(r.bytes) / kMiB); }},
      {"GB/s", true, [](const BenchRow& r) { return format("%.1f", r.gbps); }},
      {"bw", true, [](const BenchRow& r) { return format("%.1f", r.bandwidth_gbps); }},
      {"%bw", true, [](const BenchRow& r) { return format("%.1f", 100 * r.fraction_of_bandwidth); }},
      {"GFLOP/s", true, [](const BenchRow& r) { return format("%.1f", r.gflops); }},
  };
  return concatenated({problem_columns(), cache, error_columns(BenchMode::decode), footer_columns()});
}

std::vector<Column> table_columns(BenchMode mode) {
  if (mode == BenchMode::decode) return decode_columns();
  std::vector<Column> features = {
      {"mask", false, mask_label},
      {"features", false, features_label},
      {"threads", true, [](const BenchRow& r) { return num(r.threads); }},
  };
  if (mode == BenchMode::bwd) {
    features.push_back({"det", false, [](const BenchRow& r) { return std::string(r.deterministic ? "yes" : "no"); }});
  }
  const std::vector<Column> timing = {
      {"ms", true, [](const BenchRow& r) { return format("%.3f", r.ms); }},
      {"GFLOP/s", true, [](const BenchRow& r) { return format("%.1f", r.gflops); }},
      {"path", false, [](const BenchRow& r) { return r.path; }},
      {"peak", true, [](const BenchRow& r) { return format("%.0f", r.peak_gflops); }},
      {"%peak", true, [](const BenchRow& r) { return format("%.1f", 100 * r.fraction_of_peak); }},
  };
  const std::vector<Column> baseline = {
      {"baseline", false, [](const BenchRow& r) { return r.baseline; }},
      {"base_ms", true, [](const BenchRow& r) { return optional_number("%.3f", r.baseline_ms); }},
      {"speedup", true, [](const BenchRow& r) { return optional_number("%.2f", r.speedup_vs_baseline); }},
  };
  return concatenated({problem_columns(), features, timing, error_columns(mode), baseline, footer_columns()});
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

// Why a row's oracle verdict failed, with its numbers.
std::string failure_details(const BenchRow& r) {
  if (r.mode != BenchMode::bwd) {
    const OracleVerdict& v = r.verdict;
    return v.failure + " (out error " + format("%.3e", v.max_abs_err) + ", bound " + format("%.3e", v.bound) +
           "; lse error " + format("%.3e", v.lse_err) + ", bound " + format("%.3e", v.lse_bound) + "; " +
           std::to_string(v.rows_checked) + " rows checked)";
  }
  const BackwardVerdict& v = r.grad_verdict;
  std::string details = v.failure + " (";
  for (const auto& [name, grad] : kGradients) {
    details += std::string(name) + " error " + format("%.3e", (v.*grad).err) + ", bound " +
               format("%.3e", (v.*grad).bound) + "; ";
  }
  return details + std::to_string(v.rows_checked) + " rows and " + std::to_string(v.keys_checked) +
         " keys checked)";
}

}  // namespace

std::string_view bench_mode_name(BenchMode mode) {
  switch (mode) {
    case BenchMode::bwd: return "bwd";
    case BenchMode::decode: return "decode";
    default: return "fwd";
  }
}

void print_table(std::ostream& os, std::span<const BenchRow> rows) {
  const std::vector<Column> columns = table_columns(rows.empty() ? BenchMode::fwd : rows.front().mode);
  std::vector<std::vector<std::string>> cells(rows.size());  // (rows, columns)
  std::vector<std::size_t> widths;
  for (const Column& c : columns) widths.push_back(c.title.size());
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
  print_line([&](std::size_t c) { return columns[c].title; });
  for (std::size_t r = 0; r < rows.size(); ++r) print_line([&](std::size_t c) { return cells[r][c]; });
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (!rows[r].oracle_ok()) os << "row " << r + 1 << ": FAIL: " << failure_details(rows[r]) << '\n';
  }
  os.flush();
}

namespace {

void print_forward_errors(std::ostream& os, const OracleVerdict& v) {
  os << ", \"max_abs_err\": " << json_number(v.max_abs_err) << ", \"err_bound\": " << json_number(v.bound)
     << ", \"lse_err\": " << json_number(v.lse_err) << ", \"lse_bound\": " << json_number(v.lse_bound)
     << ", \"rows_checked\": " << v.rows_checked;
}

void print_oracle_end(std::ostream& os, const BenchRow& r) {
  os << ", \"oracle_ok\": " << (r.oracle_ok() ? "true" : "false");
  if (!r.oracle_ok())
    os << ", \"failure\": " << json_string(r.mode == BenchMode::bwd ? r.grad_verdict.failure : r.verdict.failure);
  os << "}\n" << std::flush;
}

void print_decode_json_line(std::ostream& os, const BenchRow& r) {
  os << "{\"mode\": \"decode\", \"backend\": " << json_string(r.backend) << ", \"isa\": " << json_string(r.isa)
     << ", \"dtype\": " << json_string(r.dtype) << ", \"batch\": " << r.batch << ", \"heads\": " << r.heads
     << ", \"heads_kv\": " << r.heads_kv << ", \"seqlen_q\": " << r.seqlen_q << ", \"seqlen_k\": " << r.seqlen_k
     << ", \"seqlen_k_min\": " << r.seqlen_k_min << ", \"head_dim\": " << r.head_dim
     << ", \"page_size\": " << r.page_size << ", \"page_order\": " << json_string(r.page_order)
     << ", \"num_splits\": " << r.num_splits
     << ", \"causal\": " << (r.causal ? "true" : "false") << ", \"threads\": " << r.threads
     << ", \"repeat\": " << r.repeat << ", \"ms\": " << json_number(r.ms) << ", \"bytes\": " << r.bytes
     << ", \"gbps\": " << json_number(r.gbps) << ", \"bandwidth_gbps\": " << json_number(r.bandwidth_gbps)
     << ", \"fraction_of_bandwidth\": " << json_number(r.fraction_of_bandwidth)
     << ", \"gflops\": " << json_number(r.gflops) << ", \"workspace_bytes\": " << r.workspace_bytes
     << ", \"peak_rss_mb\": " << json_number(r.peak_rss_mb) << ", \"tensor_mb\": " << json_number(r.tensor_mb);
  print_forward_errors(os, r.verdict);
  print_oracle_end(os, r);
}

}  // namespace

void print_json_line(std::ostream& os, const BenchRow& r) {
  if (r.mode == BenchMode::decode) return print_decode_json_line(os, r);
  auto b = [](bool x) { return x ? "true" : "false"; };
  os << "{\"mode\": " << json_string(std::string(bench_mode_name(r.mode))) << ", \"backend\": " << json_string(r.backend)
     << ", \"isa\": " << json_string(r.isa) << ", \"dtype\": " << json_string(r.dtype) << ", \"batch\": " << r.batch
     << ", \"heads\": " << r.heads << ", \"heads_kv\": " << r.heads_kv << ", \"seqlen_q\": " << r.seqlen_q
     << ", \"seqlen_k\": " << r.seqlen_k << ", \"head_dim\": " << r.head_dim << ", \"causal\": " << b(r.causal)
     << ", \"window_left\": " << r.window_left << ", \"window_right\": " << r.window_right
     << ", \"softcap\": " << json_number(r.softcap) << ", \"alibi\": " << b(r.alibi)
     << ", \"dropout_p\": " << json_number(r.dropout_p);
  if (r.mode == BenchMode::bwd) os << ", \"deterministic\": " << b(r.deterministic);
  os << ", \"threads\": " << r.threads << ", \"repeat\": " << r.repeat << ", \"ms\": " << json_number(r.ms)
     << ", \"gflops\": " << json_number(r.gflops) << ", \"path\": " << json_string(r.path)
     << ", \"peak_gflops\": " << json_number(r.peak_gflops)
     << ", \"fraction_of_peak\": " << json_number(r.fraction_of_peak)
     << ", \"baseline\": " << json_string(r.baseline) << ", \"baseline_note\": " << json_string(r.baseline_note)
     << ", \"baseline_ms\": " << json_number(r.baseline_ms)
     << ", \"speedup_vs_baseline\": " << json_number(r.speedup_vs_baseline)
     << ", \"workspace_bytes\": " << r.workspace_bytes << ", \"peak_rss_mb\": " << json_number(r.peak_rss_mb)
     << ", \"tensor_mb\": " << json_number(r.tensor_mb);
  if (r.mode == BenchMode::fwd) {
    print_forward_errors(os, r.verdict);
  } else {
    const BackwardVerdict& v = r.grad_verdict;
    for (const auto& [name, grad] : kGradients) {
      os << ", \"" << name << "_err\": " << json_number((v.*grad).err) << ", \"" << name
         << "_bound\": " << json_number((v.*grad).bound);
    }
    os << ", \"rows_checked\": " << v.rows_checked << ", \"keys_checked\": " << v.keys_checked;
  }
  print_oracle_end(os, r);
}

}  // namespace flashattn::tools
