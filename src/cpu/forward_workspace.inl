// Per-thread scratch of the CPU forward, carved from one 64-byte aligned
// allocation (no std containers inside an ISA region). Included inside
// namespace flashattn::cpu::<isa> after micro_kernel.inl.

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int kW = Vec::kWidth;
constexpr std::int64_t kMaxBlockLanes = Vec::kMaxCols * Vec::kWidth;

inline std::int64_t round_up(std::int64_t x, std::int64_t m) { return (x + m - 1) / m * m; }

// The next `count` elements of T at address `at` (64-byte aligned slots),
// advancing `at`: workspaces carve one allocation, or measure it from 0.
template <class T>
inline T* take(std::uintptr_t& at, std::int64_t count) {
  T* slot = reinterpret_cast<T*>(at);
  at += static_cast<std::uintptr_t>(round_up(count * static_cast<std::int64_t>(sizeof(T)), 64));
  return slot;
}

// Lanes that go through the micro-kernel together: `cols` vectors starting
// at lane first_lane; its real lanes hold query rows [row_begin, row_end).
struct LaneBlock {
  std::int64_t first_lane = 0;
  int cols = 0;
  std::int64_t row_begin = 0, row_end = 0;
};

// Sizes of everything a work item needs, in elements.
struct ForwardDims {
  std::int64_t lanes_pad;     // query lanes of the largest item, whole vectors
  std::int64_t depth_steps;   // head_dim / kPack, rounded up
  std::int64_t d_pad;         // depth_steps * kPack
  std::int64_t dv_pad;        // head_dim_v rounded up to micro-kernel rows
  std::int64_t k_cols;        // keys per tile
  bool decode = false;        // the decode layout (decode_kernel.inl): Q and O by rows, K and V unpacked
  std::int64_t kv_heads = 1;  // kv heads per work item (decode: up to kDecodeKvHeads)

  template <class Math>
  static ForwardDims of(const AttentionParams& p, const TileShape& t) {
    ForwardDims d;
    d.lanes_pad = round_up(t.rows * (p.heads_q / p.heads_kv), kW);
    d.depth_steps = (p.head_dim + Math::kPack - 1) / Math::kPack;
    d.d_pad = d.depth_steps * Math::kPack;
    d.dv_pad = round_up(p.head_dim_v, Vec::kRows);
    d.k_cols = t.k_cols;
    return d;
  }
};

template <class Math>
class Workspace {
 public:
  using Elem = typename Math::Elem;

  explicit Workspace(const ForwardDims& d) : memory_(::operator new (bytes(d), std::align_val_t{64})) {
    carve(d, reinterpret_cast<std::uintptr_t>(memory_));
  }
  ~Workspace() { ::operator delete (memory_, std::align_val_t{64}); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // The allocation's size (also what forward_workspace_bytes reports per thread).
  static std::int64_t bytes(const ForwardDims& d) {
    Workspace probe;
    return static_cast<std::int64_t>(probe.carve(d, 0));
  }

  Elem* qt;                  // (lanes_pad, d_pad) Q^T by lane block: (depth_steps, block lanes, kPack); decode: Q
  Elem* kp;                  // (k_cols, d_pad)    K, row by row
  Elem* vp;                  // (k_cols, dv_pad)   V: (k_cols / kPack, dv_pad, kPack)
  float* st;                 // (k_cols, kMaxBlockLanes) S^T, then P^T, of one lane block; decode: every block's, packed
  Elem* pt;                  // (k_cols, kMaxBlockLanes) P^T in the math type (bf16 path)
  float* ot;                 // (lanes_pad, dv_pad) O^T by lane block: (dv_pad, block lanes); decode: O (decode_row)
  std::int64_t* k_at;        // (2, k_cols) decode: element offsets of the tile's and the next tile's keys in k
  std::int64_t* v_at;        // (k_cols) and of the tile's keys in v
  std::int64_t next_n = 0;   // keys of the next tile (decode prefetch)
  Elem* row;                 // (max(d_pad, dv_pad)) one converted input row
  float* out_row;            // (dv_pad) one output row before conversion
  float* row_max;            // (lanes_pad)
  float* row_sum;            // (lanes_pad)
  float* row_aux;            // (lanes_pad) the statistics pass's D accumulator (RowStats)
  float* slope;              // (lanes_pad) alibi slope of the lane's head
  std::int64_t* lane_row;    // (lanes_pad) query row in the sequence; -1 for padding lanes
  std::int64_t* lane_head;   // (lanes_pad)
  std::int64_t* keep_begin;  // (lanes_pad) kept keys [keep_begin, keep_end) of the lane's row
  std::int64_t* keep_end;    // (lanes_pad)
  std::uint32_t* drop_row;   // (lanes_pad) dropout counter words: query row
  std::uint32_t* drop_stream;  // (lanes_pad) and batch * heads + head
  LaneBlock* blocks;           // (lanes_pad / kW)
  float* alpha;         // (max(kMaxBlockLanes, lanes_pad)) rescale of O for the current tile (decode: every block's)
  float* tile_o;        // decode: (lanes_pad, dv_pad) the tile's P V, laid out as O
  float* alibi_origin;  // (kMaxBlockLanes) the diagonal's key index, relative to the tile
  float* tile_slope;    // (kMaxBlockLanes) decode: the slopes of the packed lanes
  std::int32_t* tile_begin;  // (kMaxBlockLanes) kept keys relative to the tile
  std::int32_t* tile_end;    // (kMaxBlockLanes)

 private:
  Workspace() : memory_(nullptr) {}

  // Points every slot into the memory at `base` (0: only measures); returns its end.
  std::uintptr_t carve(const ForwardDims& d, std::uintptr_t base) {
    std::uintptr_t at = base;
    qt = take<Elem>(at, d.lanes_pad * d.d_pad);
    kp = take<Elem>(at, d.k_cols * d.d_pad);
    vp = take<Elem>(at, d.k_cols * d.dv_pad);
    st = take<float>(at, d.k_cols * std::max(kMaxBlockLanes, d.decode ? d.kv_heads * kW : 0));
    pt = take<Elem>(at, d.k_cols * kMaxBlockLanes);
    ot = take<float>(at, d.lanes_pad * d.dv_pad);
    k_at = take<std::int64_t>(at, 2 * d.k_cols);
    v_at = take<std::int64_t>(at, d.k_cols);
    row = take<Elem>(at, std::max(d.d_pad, d.dv_pad));
    out_row = take<float>(at, d.dv_pad);
    row_max = take<float>(at, d.lanes_pad);
    row_sum = take<float>(at, d.lanes_pad);
    row_aux = take<float>(at, d.lanes_pad);
    slope = take<float>(at, d.lanes_pad);
    lane_row = take<std::int64_t>(at, d.lanes_pad);
    lane_head = take<std::int64_t>(at, d.lanes_pad);
    keep_begin = take<std::int64_t>(at, d.lanes_pad);
    keep_end = take<std::int64_t>(at, d.lanes_pad);
    drop_row = take<std::uint32_t>(at, d.lanes_pad);
    drop_stream = take<std::uint32_t>(at, d.lanes_pad);
    blocks = take<LaneBlock>(at, d.lanes_pad / kW);
    alpha = take<float>(at, std::max(kMaxBlockLanes, d.lanes_pad));
    tile_o = take<float>(at, d.decode ? d.lanes_pad * d.dv_pad : 0);
    alibi_origin = take<float>(at, kMaxBlockLanes);
    tile_slope = take<float>(at, kMaxBlockLanes);
    tile_begin = take<std::int32_t>(at, kMaxBlockLanes);
    tile_end = take<std::int32_t>(at, kMaxBlockLanes);
    return at;
  }

  void* memory_;
};
