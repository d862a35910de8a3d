#!/usr/bin/env python3
"""flashattn side by side with torch.nn.functional.scaled_dot_product_attention.

Same inputs, same process: random bf16 q, k, v are made by torch in
flashattn's (B, S, H, D) layout; flashattn gets them through its C ABI
(libflashattn_c, loaded with ctypes) on torch's current stream, and SDPA
gets their (B, H, S, D) transposed views of the same storage. Each SDPA
backend runs restricted with torch.nn.attention.sdpa_kernel; one that torch
refuses is reported as "unavailable: <reason>", never skipped silently.

  --device cuda: SDPA's FLASH_ATTENTION and CUDNN_ATTENTION backends against
      flashattn's CUDA backend, on the issue's target rows; times are the
      median of --repeat (>= 20) runs between CUDA events, after 3 warm-ups.
  --device cpu: torch's default CPU choice and its FLASH_ATTENTION backend
      against flashattn's CPU backend on small rows, timed with
      time.perf_counter, so the plumbing is testable without a GPU.

ratio = SDPA ms / flashattn ms (> 1: flashattn is faster); a row's target
is on the ratio to SDPA's flash backend. Outputs must agree within a bf16
tolerance (see `agree`), else the script exits with status 1.

Causal: SDPA's is_causal is top-left aligned, flashattn's causal
bottom-right; they coincide because every row here has S_q == S_k.
"""

import argparse
import contextlib
import ctypes
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:
    sys.exit(f"sdpa_compare: torch {torch.__version__} has no torch.nn.attention.sdpa_kernel (torch >= 2.3 has)")

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 3
MIN_REPEAT = 20

# --- the C ABI (include/flashattn/c_api.h), declared for ctypes -------------

C_API_VERSION = 1
MAX_NDIM = 4
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
DEVICE_CODES = {"cpu": 0, "cuda": 1}


class CTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32), ("device_type", ctypes.c_int32),
                ("device_index", ctypes.c_int32), ("ndim", ctypes.c_int32),
                ("shape", ctypes.c_int64 * MAX_NDIM), ("stride", ctypes.c_int64 * MAX_NDIM)]


class COptions(ctypes.Structure):
    _fields_ = [("has_softmax_scale", ctypes.c_int32), ("softmax_scale", ctypes.c_float),
                ("causal", ctypes.c_int32), ("window_left", ctypes.c_int64), ("window_right", ctypes.c_int64),
                ("softcap", ctypes.c_float), ("stream", ctypes.c_void_p), ("workspace", ctypes.c_void_p),
                ("workspace_bytes", ctypes.c_int64)]


def c_tensor(t):
    """A descriptor of a torch tensor: its own data pointer, shape and element strides."""
    assert t.dim() <= MAX_NDIM
    d = CTensor(t.data_ptr(), DTYPE_CODES[t.dtype], DEVICE_CODES[t.device.type], t.device.index or 0, t.dim())
    d.shape[:t.dim()] = t.shape
    d.stride[:t.dim()] = t.stride()
    return d


class FlashAttnC:
    """libflashattn_c through ctypes; a failed call raises with the library's message."""

    def __init__(self, path):
        self.path = path
        lib = ctypes.CDLL(str(path))
        lib.flashattn_c_api_version.restype = ctypes.c_int
        if lib.flashattn_c_api_version() != C_API_VERSION:
            sys.exit(f"{path}: C API version {lib.flashattn_c_api_version()}, this script speaks {C_API_VERSION}")
        lib.flashattn_flash_attn_default_options.restype = COptions
        tensor = ctypes.POINTER(CTensor)
        common = [tensor] * 5 + [ctypes.POINTER(COptions)]
        lib.flashattn_flash_attn.argtypes = common + [ctypes.c_char_p, ctypes.c_size_t]
        lib.flashattn_flash_attn_workspace_bytes.argtypes = common + [ctypes.POINTER(ctypes.c_int64),
                                                                      ctypes.c_char_p, ctypes.c_size_t]
        self.lib = lib
        self.message = ctypes.create_string_buffer(1024)

    def _check(self, status):
        if status != 0:
            raise RuntimeError(f"flashattn (status {status}): {self.message.value.decode()}")

    def forward(self, q, k, v, out, causal):
        """A no-argument callable running flash_attn(q, k, v) -> out; descriptors and workspace made once."""
        tensors = [ctypes.byref(c_tensor(t)) for t in (q, k, v, out)] + [None]
        options = self.lib.flashattn_flash_attn_default_options()
        options.causal = int(causal)
        if q.is_cuda:
            options.stream = torch.cuda.current_stream(q.device).cuda_stream
        workspace_bytes = ctypes.c_int64(0)
        self._check(self.lib.flashattn_flash_attn_workspace_bytes(
            *tensors, ctypes.byref(options), ctypes.byref(workspace_bytes), self.message, len(self.message)))
        workspace = None
        if workspace_bytes.value > 0:
            workspace = torch.empty(workspace_bytes.value, dtype=torch.uint8, device=q.device)
            options.workspace, options.workspace_bytes = workspace.data_ptr(), workspace_bytes.value

        def run():
            self._check(self.lib.flashattn_flash_attn(*tensors, ctypes.byref(options), self.message,
                                                      len(self.message)))
        run.workspace = workspace  # lives as long as run; tensors and options are in its closure
        return run


# --- the comparison ------------------------------------------------------


@dataclass(frozen=True)
class Row:
    batch: int
    heads: int
    seqlen: int
    head_dim: int
    causal: bool
    target: float | None = None  # least flashattn speed / SDPA flash speed

    def name(self):
        return f"B{self.batch} H{self.heads} S{self.seqlen} D{self.head_dim}" + (" causal" if self.causal else "")

    def flops(self):
        # 4·B·H·D per kept (i, j) pair: all S² of them, or S(S+1)/2 under a causal mask.
        pairs = self.seqlen * (self.seqlen + 1) // 2 if self.causal else self.seqlen**2
        return 4 * self.batch * self.heads * self.head_dim * pairs


# The bf16 rows and their targets.
CUDA_ROWS = [Row(2, 16, 8192, 128, False, 1.0), Row(2, 16, 8192, 128, True, 1.0), Row(8, 32, 2048, 64, False, 0.9)]
CPU_ROWS = [Row(1, 4, 256, 64, False), Row(1, 4, 256, 64, True), Row(2, 8, 128, 64, False)]
# Column name -> SDPBackend member name (None: torch chooses). On the CPU,
# cudnn is asked for too: torch refuses it there, which exercises the
# "unavailable" path that a GPU run may need.
CUDA_BACKENDS = {"sdpa-flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION"}
CPU_BACKENDS = {"sdpa-default": None, "sdpa-flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION"}


def backend_context(backend):
    return contextlib.nullcontext() if backend is None else sdpa_kernel(getattr(SDPBackend, backend))


def median_ms(fn, device, repeat):
    for _ in range(WARMUP):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(repeat):
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
    else:
        for _ in range(repeat):
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


def run_sdpa_once(backend, q, k, v, causal):
    """SDPA's output, or the reason torch gives for refusing this backend."""
    if backend is not None and not hasattr(SDPBackend, backend):
        return None, f"torch {torch.__version__} has no SDPBackend.{backend}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with backend_context(backend):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal), None
        except RuntimeError as error:
            reasons = list(dict.fromkeys(str(w.message).strip() for w in caught)) + [str(error).strip()]
            return None, "; ".join(r.replace("\n", " ") for r in reasons if r)


def agree(ours, theirs, v):
    """Elementwise |ours - theirs| <= atol + rtol·|theirs|, and the largest difference.

    Both sides accumulate in fp32 and round the output to bf16 once: two
    roundings of nearly equal values differ by up to one bf16 ulp (<= 2^-7
    relative), given 2x room (rtol 2^-6). Both also round P to bf16 before
    P·V and sum in different orders: at most 2^-9·Σ p_j|v_j| <= 2^-9·max|v|
    per output (atol), which matters where outputs cancel towards 0.
    """
    ours, theirs = ours.float(), theirs.float()
    diff = (ours - theirs).abs()
    allowed = 2.0**-9 * v.abs().max().float() + 2.0**-6 * theirs.abs()
    ok = bool(torch.isfinite(ours).all()) and bool((diff <= allowed).all())
    return ok, diff.max().item(), (diff / allowed).max().item()


def compare_row(row, device, flashattn, backends, repeat, failures):
    torch.manual_seed(0)
    shape = (row.batch, row.seqlen, row.heads, row.head_dim)  # (B, S, H, D): flashattn's layout
    q, k, v = (torch.randn(shape, dtype=torch.bfloat16, device=device) for _ in range(3))
    out = torch.empty_like(q)
    run_flashattn = flashattn.forward(q, k, v, out, row.causal)
    run_flashattn()
    # (B, H, S, D) views of the same storage for SDPA; S_q == S_k, so top-left causal == bottom-right.
    q_t, k_t, v_t = (t.transpose(1, 2) for t in (q, k, v))
    result = {"flashattn": median_ms(run_flashattn, device, repeat)}
    for column, backend in backends.items():
        sdpa_out, reason = run_sdpa_once(backend, q_t, k_t, v_t, row.causal)
        if sdpa_out is None:
            print(f"{row.name()}: {column} unavailable: {reason}")
            result[column] = None
            continue
        ok, max_diff, fraction = agree(out, sdpa_out.transpose(1, 2), v)
        print(f"{row.name()}: flashattn vs {column}: max |diff| {max_diff:.3e} "
              f"({fraction:.2f} of the bf16 tolerance) {'ok' if ok else 'MISMATCH'}")
        if not ok:
            failures.append(f"{row.name()}: flashattn and {column} disagree (max |diff| {max_diff:.3e})")
        with backend_context(backend):
            result[column] = median_ms(lambda: F.scaled_dot_product_attention(q_t, k_t, v_t, is_causal=row.causal),
                                       device, repeat)
    return result


def print_table(rows, results, backends):
    header = ["case", "flashattn ms", "TFLOP/s"]
    for column in backends:
        header += [f"{column} ms", "ratio"]
    header += ["target", "met"]
    lines = [header]
    for row, result in zip(rows, results):
        ms = result["flashattn"]
        line = [row.name(), f"{ms:.3f}", f"{row.flops() / (ms * 1e-3) / 1e12:.3f}"]
        for column in backends:
            theirs = result[column]
            line += ["unavailable", "-"] if theirs is None else [f"{theirs:.3f}", f"{theirs / ms:.2f}x"]
        flash = result.get("sdpa-flash")
        if row.target is None:
            line += ["-", "-"]
        elif flash is None:
            line += [f">= {row.target:.1f}x sdpa-flash", "n/a (sdpa-flash unavailable)"]
        else:
            line += [f">= {row.target:.1f}x sdpa-flash", "met" if flash / ms >= row.target else "not met"]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in
                        enumerate(zip(line, widths))).rstrip())


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--lib", type=Path,
                        help="libflashattn_c.so (default: build/cuda/ for cuda, build/release/ for cpu)")
    parser.add_argument("--repeat", type=int, default=MIN_REPEAT, help=f"timed runs per median (>= {MIN_REPEAT})")
    args = parser.parse_args()
    if args.repeat < MIN_REPEAT:
        parser.error(f"--repeat must be >= {MIN_REPEAT}")
    if args.lib is None:
        args.lib = ROOT / "build" / ("cuda" if args.device == "cuda" else "release") / "libflashattn_c.so"
    if not args.lib.exists():
        parser.error(f"{args.lib} does not exist (build the flashattn_c target, or pass --lib)")
    return args


def main():
    args = parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("sdpa_compare: torch sees no CUDA device")
        rows, backends = CUDA_ROWS, CUDA_BACKENDS
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__} (CUDA {torch.version.cuda}, "
              f"cuDNN {torch.backends.cudnn.version()})")
    else:
        rows, backends = CPU_ROWS, CPU_BACKENDS
        print(f"device: cpu, torch {torch.__version__} ({torch.get_num_threads()} threads), "
              f"flashattn's threads: its OpenMP default")
    flashattn = FlashAttnC(args.lib)
    print(f"flashattn: {args.lib}; bf16; median of {args.repeat} runs after {WARMUP} warm-ups; "
          f"ratio = SDPA ms / flashattn ms")
    failures = []
    results = [compare_row(row, device, flashattn, backends, args.repeat, failures) for row in rows]
    print()
    print_table(rows, results, backends)
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
