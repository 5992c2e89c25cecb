// Shared by the CPU (grid_cpu.cpp) and CUDA (grid_cuda.cu) kernels of the multiresolution grid
// encoder: the per-level constants and the arithmetic of one (point, level), written once so both
// devices compute the same thing as ernerf_core.model.encoders.hash_grid_encode_reference.
//
// A level reads D input axes through a row of `proj` (pos_d = sum_a proj[d*L+l, a] * x_a + 0.5,
// x clamped to [0, 1]); corner c (bit d = upper neighbour along d) has grid point g = floor(pos) + bits;
// its row is
//     h = combine_d(g_d * mult[l, d])   (xor for levels < n_xor, + for the others; uint32 wrap-around)
//     h &= mask[l]; if (modulo[l]) h %= modulo[l]; row = h + offset[l]
// which covers torch-ngp's hashed levels (xor of g_d * prime_d, masked or reduced % size), dense
// levels (g_0 + g_1 * stride + ...) and the torso's tiled levels (dense index, masked).
// Weights are the bilinear / trilinear products, multiplied in the reference's order.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define GRID_HD __host__ __device__ __forceinline__
#else
#define GRID_HD inline
#endif

namespace ernerf_grid {

constexpr int kMaxDims = 4;

struct Levels {
  int32_t L;              // levels
  int32_t D;              // dimensions of every level (1..4)
  int32_t A;              // input axes (columns of x)
  int32_t n_xor;          // levels [0, n_xor) combine their dimensions with xor, the others add
  const float* proj;      // [D * L, A]
  const int32_t* mult;    // [L, D]
  const int32_t* offset;  // [L]
  const int32_t* mask;    // [L], -1 = none
  const int32_t* modulo;  // [L], 0 = none
  int64_t rows;           // rows of the table (bounds check)
};

GRID_HD float clamp01(float v) {
  v = v > 0.0f ? v : 0.0f;  // NaN -> 0
  return v < 1.0f ? v : 1.0f;
}

// Grid cell and fractional position of point x (A floats) at level l.
template <int D>
GRID_HD void locate(const Levels& lv, int l, const float* x, uint32_t cell[D], float frac[D]) {
  for (int d = 0; d < D; ++d) {
    const float* pr = lv.proj + (int64_t)(d * lv.L + l) * lv.A;
    float acc = 0.0f;
    for (int a = 0; a < lv.A; ++a) acc += pr[a] * clamp01(x[a]);
    const float pos = acc + 0.5f;  // two roundings, as torch.addmm(0.5, proj, x^T)
    const float fl = floorf(pos);
    cell[d] = (uint32_t)(int32_t)fl;
    frac[d] = pos - fl;
  }
}

// The level's constants, loaded once per (level, block of points).
struct LevelConst {
  uint32_t mult[kMaxDims];
  uint32_t mask, modulo, offset;
  bool use_xor;
};

GRID_HD LevelConst level_const(const Levels& lv, int l) {
  LevelConst k;
  for (int d = 0; d < lv.D; ++d) k.mult[d] = (uint32_t)lv.mult[l * lv.D + d];
  k.mask = (uint32_t)lv.mask[l];
  k.modulo = (uint32_t)lv.modulo[l];
  k.offset = (uint32_t)lv.offset[l];
  k.use_xor = l < lv.n_xor;
  return k;
}

template <int D>
GRID_HD uint32_t corner_row(const LevelConst& k, const uint32_t cell[D], int c) {
  uint32_t h = 0;
  for (int d = 0; d < D; ++d) {
    const uint32_t t = (cell[d] + (uint32_t)((c >> d) & 1)) * k.mult[d];
    h = d == 0 ? t : (k.use_xor ? (h ^ t) : (h + t));
  }
  h &= k.mask;
  if (k.modulo) h %= k.modulo;
  return h + k.offset;
}

template <int D>
GRID_HD float corner_weight(const float frac[D], int c) {
  float w = (c & 1) ? frac[0] : 1.0f - frac[0];
  for (int d = 1; d < D; ++d) w = (((c >> d) & 1) ? frac[d] : 1.0f - frac[d]) * w;
  return w;
}

// d weight(c) / d frac[e]
template <int D>
GRID_HD float corner_weight_grad(const float frac[D], int c, int e) {
  float w = ((c >> e) & 1) ? 1.0f : -1.0f;
  for (int d = 0; d < D; ++d) {
    if (d == e) continue;
    w *= ((c >> d) & 1) ? frac[d] : 1.0f - frac[d];
  }
  return w;
}

// Where the output (or its gradient) of level l, point p, feature 0 lives: level-major [L, P, F]
// or point-major [P, L * F], level l at slot[l] (slot null: l).
struct OutLayout {
  bool point_major;
  const int32_t* slot;
  int64_t P;
  int L, F;
  GRID_HD int64_t base(int l) const {
    const int s = slot ? slot[l] : l;
    return point_major ? (int64_t)s * F : (int64_t)s * P * F;
  }
  GRID_HD int64_t point_stride() const { return point_major ? (int64_t)L * F : F; }
};

// ---- raw-pointer entry points (no torch headers: these files compile in seconds) ----------------

// out: [L, P, F] or, point_major, [P, L * F] with level l at out_slot[l] (out_slot may be null)
void forward_cpu(const Levels& lv, const float* x, int64_t P, const float* table, int F, float* out,
                 const int32_t* out_slot, bool point_major, int threads, bool* out_of_range);
// grad_out in out's layout; grad_table [rows, F] (zeroed, or null); grad_x [P, A] (or null)
void backward_cpu(const Levels& lv, const float* x, int64_t P, const float* table, int F, const float* grad_out,
                  const int32_t* out_slot, bool point_major, float* grad_table, float* grad_x, int threads,
                  bool* out_of_range);

#ifdef WITH_CUDA
// same contracts on device pointers (out_slot too); `stream` is a cudaStream_t; `flag` a device int
// set to 1 when a row falls outside the table
void forward_cuda(const Levels& lv, const float* x, int64_t P, const float* table, int F, float* out,
                  const int32_t* out_slot, bool point_major, int* flag, void* stream);
void backward_cuda(const Levels& lv, const float* x, int64_t P, const float* table, int F, const float* grad_out,
                   const int32_t* out_slot, bool point_major, float* grad_table, float* grad_x, int* flag,
                   void* stream);
#endif

}  // namespace ernerf_grid
