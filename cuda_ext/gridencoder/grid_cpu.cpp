// CPU (OpenMP) kernels of the grid encoder. See grid_common.h for the arithmetic.
//
// Work goes in blocks of kBlock points. For one (block, level), phase A computes every corner's
// row and weight into small arrays (straight-line arithmetic the compiler vectorises), phase B
// gathers the table rows (forward) or scatters into the table gradient (backward). A block's
// inputs, outputs and corner arrays stay in L1; the level tables (about 0.6 MB for ER-NeRF's head)
// stay in L2.
//
// forward:  blocks are shared out between threads (outputs are disjoint).
// backward: the table gradient is split by level between threads (a level only touches its own
//           rows, so no two threads add into one row); the input gradient is split by block.
//
// Inputs are clamped once, into an axis-major scratch copy. When every row of `proj` has one
// non-negative entry (tri-planes, plain grids, the torso: always, in this project) a level's
// position is x[axis] * scale + 0.5, bit for bit what the general dot product gives, and floor()
// is a truncation (positions are >= 0.5); otherwise the general locate() of grid_common.h runs.
//
// Output layouts: level-major [L, P, F] (hash_grid_encode's), or point-major [P, L * F] with level
// l written at slot out_slot[l] (the modules' final layout: no index_select / permute afterwards).
#include <cmath>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "grid_common.h"

namespace ernerf_grid {
namespace {

constexpr int kBlock = 128;  // points per block: its outputs and corner arrays fit in L1

template <int D>
struct LevelPos {
  int32_t axis[D];
  float scale[D];
};

template <int D>
bool one_hot_levels(const Levels& lv, std::vector<LevelPos<D>>& out) {
  out.resize(lv.L);
  for (int l = 0; l < lv.L; ++l) {
    for (int d = 0; d < D; ++d) {
      const float* pr = lv.proj + (int64_t)(d * lv.L + l) * lv.A;
      int axis = -1;
      for (int a = 0; a < lv.A; ++a) {
        if (pr[a] != 0.0f) {
          if (axis >= 0) return false;
          axis = a;
        }
      }
      if (axis < 0) axis = 0;  // an all-zero row: scale 0 on any axis
      const float s = pr[axis];
      if (!(s >= 0.0f) || !(s < 1.0e9f)) return false;
      out[l].axis[d] = axis;
      out[l].scale[d] = s;
    }
  }
  return true;
}

// kinds of level: 0 = xor + mask (hashed, power-of-two table), 1 = add + mask (dense, tiled),
// 2 = anything (runtime xor/add, mask, modulo)
inline int level_kind(const LevelConst& k) {
  if (k.modulo) return 2;
  return k.use_xor ? 0 : 1;
}

template <int D, int KIND>
inline uint32_t row_of(const LevelConst& k, const uint32_t g[D]) {
  uint32_t h = g[0] * k.mult[0];
  for (int d = 1; d < D; ++d) {
    const uint32_t t = g[d] * k.mult[d];
    if (KIND == 0) h ^= t;
    else if (KIND == 1) h += t;
    else h = k.use_xor ? (h ^ t) : (h + t);
  }
  h &= k.mask;
  if (KIND == 2 && k.modulo) h %= k.modulo;
  return h + k.offset;
}

// Phase A: rows [C][kBlock] and weights [C][kBlock] of points p0..p0+n at level l; returns the
// largest row (the bounds check, folded in here: a separate pass reloads every row)
template <int D, bool FAST, int KIND>
inline uint32_t corners(const Levels& lv, const LevelPos<D>& q, const LevelConst& k, int l, const float* xt,
                        const float* xc, int64_t P, int64_t p0, int n, uint32_t (*rows)[kBlock],
                        float (*w)[kBlock]) {
  constexpr int C = 1 << D;
  uint32_t top = 0;
  for (int i = 0; i < n; ++i) {
    uint32_t cell[D];
    float frac[D];
    if (FAST) {
      for (int d = 0; d < D; ++d) {
        const float pos = xt[(int64_t)q.axis[d] * P + p0 + i] * q.scale[d] + 0.5f;
        const int32_t c = (int32_t)pos;  // pos >= 0.5: truncation is floor
        cell[d] = (uint32_t)c;
        frac[d] = pos - (float)c;
      }
    } else {
      locate<D>(lv, l, xc + (p0 + i) * lv.A, cell, frac);
    }
    for (int c = 0; c < C; ++c) {
      uint32_t g[D];
      for (int d = 0; d < D; ++d) g[d] = cell[d] + (uint32_t)((c >> d) & 1);
      const uint32_t row = row_of<D, KIND>(k, g);
      rows[c][i] = row;
      top = row > top ? row : top;
      w[c][i] = corner_weight<D>(frac, c);
    }
  }
  return top;
}

template <int D, int FT, bool FAST, int KIND>
void forward_block_level(const Levels& lv, const LevelPos<D>& q, const LevelConst& k, int l, const float* xt,
                         const float* xc, int64_t P, int64_t p0, int n, const float* table, int F_rt, float* out,
                         const OutLayout& lay, bool* bad) {
  constexpr int C = 1 << D;
  const int F = FT > 0 ? FT : F_rt;
  uint32_t rows[C][kBlock];
  float w[C][kBlock];
  if ((uint64_t)corners<D, FAST, KIND>(lv, q, k, l, xt, xc, P, p0, n, rows, w) >= (uint64_t)lv.rows) {
    *bad = true;
    return;
  }
  float* o = out + lay.base(l) + p0 * lay.point_stride();
  const int64_t ps = lay.point_stride();
  for (int i = 0; i < n; ++i) {
    float acc[FT > 0 ? FT : 1];
    float* res = o + i * ps;
    if (FT > 0) {
      for (int f = 0; f < F; ++f) acc[f] = 0.0f;
      for (int c = 0; c < C; ++c) {
        const float* v = table + (int64_t)rows[c][i] * F;
        for (int f = 0; f < F; ++f) acc[f] += v[f] * w[c][i];
      }
      for (int f = 0; f < F; ++f) res[f] = acc[f];
    } else {
      for (int f = 0; f < F; ++f) res[f] = 0.0f;
      for (int c = 0; c < C; ++c) {
        const float* v = table + (int64_t)rows[c][i] * F;
        for (int f = 0; f < F; ++f) res[f] += v[f] * w[c][i];
      }
    }
  }
}

template <int D, int FT, bool FAST, int KIND>
void backward_block_level(const Levels& lv, const LevelPos<D>& q, const LevelConst& k, int l, const float* xt,
                          const float* xc, int64_t P, int64_t p0, int n, int F_rt, const float* grad_out,
                          const OutLayout& lay, float* grad_table, bool* bad) {
  constexpr int C = 1 << D;
  const int F = FT > 0 ? FT : F_rt;
  uint32_t rows[C][kBlock];
  float w[C][kBlock];
  if ((uint64_t)corners<D, FAST, KIND>(lv, q, k, l, xt, xc, P, p0, n, rows, w) >= (uint64_t)lv.rows) {
    *bad = true;
    return;
  }
  const float* g = grad_out + lay.base(l) + p0 * lay.point_stride();
  const int64_t ps = lay.point_stride();
  for (int i = 0; i < n; ++i) {
    const float* gp = g + i * ps;
    if (FT > 0) {
      // the point's gradient in registers: the table rows written below could alias it as far
      // as the compiler knows, which made it reload gp[f] after every corner's store
      float gl[FT > 0 ? FT : 1];
      for (int f = 0; f < FT; ++f) gl[f] = gp[f];
      for (int c = 0; c < C; ++c) {
        float* t = grad_table + (int64_t)rows[c][i] * FT;
        const float wc = w[c][i];
        for (int f = 0; f < FT; ++f) t[f] += wc * gl[f];
      }
    } else {
      for (int c = 0; c < C; ++c) {
        float* t = grad_table + (int64_t)rows[c][i] * F;
        for (int f = 0; f < F; ++f) t[f] += w[c][i] * gp[f];
      }
    }
  }
}

template <int D, int FT, bool FAST>
void backward_input_point(const Levels& lv, const LevelPos<D>* qs, const float* x, const float* xt, const float* xc,
                          int64_t p, int64_t P, const float* table, int F_rt, const float* grad_out,
                          const OutLayout& lay, float* grad_x, bool* bad) {
  const int F = FT > 0 ? FT : F_rt;
  const uint64_t limit = (uint64_t)lv.rows;
  float gx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int l = 0; l < lv.L; ++l) {
    const LevelConst k = level_const(lv, l);
    uint32_t cell[D];
    float frac[D];
    if (FAST) {
      for (int d = 0; d < D; ++d) {
        const float pos = xt[(int64_t)qs[l].axis[d] * P + p] * qs[l].scale[d] + 0.5f;
        const int32_t c = (int32_t)pos;
        cell[d] = (uint32_t)c;
        frac[d] = pos - (float)c;
      }
    } else {
      locate<D>(lv, l, xc + p * lv.A, cell, frac);
    }
    const float* gp = grad_out + lay.base(l) + p * lay.point_stride();
    float dpos[D];
    for (int d = 0; d < D; ++d) dpos[d] = 0.0f;
    for (int c = 0; c < (1 << D); ++c) {
      const uint32_t row = corner_row<D>(k, cell, c);
      if ((uint64_t)row >= limit) { *bad = true; continue; }
      const float* v = table + (int64_t)row * F;
      float s = 0.0f;
      for (int f = 0; f < F; ++f) s += gp[f] * v[f];
      for (int d = 0; d < D; ++d) dpos[d] += s * corner_weight_grad<D>(frac, c, d);
    }
    for (int d = 0; d < D; ++d) {
      const float* pr = lv.proj + (int64_t)(d * lv.L + l) * lv.A;
      for (int a = 0; a < lv.A; ++a) gx[a] += pr[a] * dpos[d];
    }
  }
  const float* xp = x + p * lv.A;
  for (int a = 0; a < lv.A; ++a) {
    const float v = xp[a];
    grad_x[p * lv.A + a] = (v >= 0.0f && v <= 1.0f) ? gx[a] : 0.0f;  // clamp's gradient
  }
}

// Clamped inputs: axis-major xt [A, P] (fast path) and point-major xc [P, A] (general path).
struct Clamped {
  std::vector<float> xt, xc;
  Clamped(const float* x, int64_t P, int A, bool fast, int threads) {
    if (fast) {
      xt.resize((size_t)P * A);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && P > 65536)
      for (int64_t p = 0; p < P; ++p)
        for (int a = 0; a < A; ++a) xt[(size_t)a * P + p] = clamp01(x[p * A + a]);
    } else {
      xc.resize((size_t)P * A);
      for (int64_t i = 0; i < P * A; ++i) xc[i] = clamp01(x[i]);
    }
  }
};

template <int D, int FT, bool FAST>
void forward_impl(const Levels& lv, const std::vector<LevelPos<D>>& qs, const Clamped& xs, int64_t P,
                  const float* table, int F, float* out, const OutLayout& lay, int threads, bool* out_of_range) {
  const int64_t blocks = (P + kBlock - 1) / kBlock;
  bool bad = false;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && blocks > 1) reduction(|| : bad)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t p0 = b * kBlock;
    const int n = (int)(p0 + kBlock < P ? kBlock : P - p0);
    bool bb = false;
    for (int l = 0; l < lv.L; ++l) {
      const LevelConst k = level_const(lv, l);
      const float* xt = xs.xt.data();
      const float* xc = xs.xc.data();
      switch (level_kind(k)) {
        case 0: forward_block_level<D, FT, FAST, 0>(lv, qs[l], k, l, xt, xc, P, p0, n, table, F, out, lay, &bb); break;
        case 1: forward_block_level<D, FT, FAST, 1>(lv, qs[l], k, l, xt, xc, P, p0, n, table, F, out, lay, &bb); break;
        default: forward_block_level<D, FT, FAST, 2>(lv, qs[l], k, l, xt, xc, P, p0, n, table, F, out, lay, &bb);
      }
    }
    bad = bad || bb;
  }
  *out_of_range = bad;
}

template <int D, int FT, bool FAST>
void backward_impl(const Levels& lv, const std::vector<LevelPos<D>>& qs, const float* x, const Clamped& xs,
                   int64_t P, const float* table, int F, const float* grad_out, const OutLayout& lay,
                   float* grad_table, float* grad_x, int threads, bool* out_of_range) {
  const int64_t blocks = (P + kBlock - 1) / kBlock;
  const float* xt = xs.xt.data();
  const float* xc = xs.xc.data();
  bool bad = false;
  if (grad_table) {
    const int T = threads > lv.L ? lv.L : (threads < 1 ? 1 : threads);
#pragma omp parallel num_threads(T) if (T > 1) reduction(|| : bad)
    {
#ifdef _OPENMP
      const int me = omp_get_thread_num(), nt = omp_get_num_threads();
#else
      const int me = 0, nt = 1;
#endif
      bool bb = false;
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t p0 = b * kBlock;
        const int n = (int)(p0 + kBlock < P ? kBlock : P - p0);
        for (int l = me; l < lv.L; l += nt) {  // levels split between threads: disjoint rows
          const LevelConst k = level_const(lv, l);
          switch (level_kind(k)) {
            case 0:
              backward_block_level<D, FT, FAST, 0>(lv, qs[l], k, l, xt, xc, P, p0, n, F, grad_out, lay, grad_table,
                                                   &bb);
              break;
            case 1:
              backward_block_level<D, FT, FAST, 1>(lv, qs[l], k, l, xt, xc, P, p0, n, F, grad_out, lay, grad_table,
                                                   &bb);
              break;
            default:
              backward_block_level<D, FT, FAST, 2>(lv, qs[l], k, l, xt, xc, P, p0, n, F, grad_out, lay, grad_table,
                                                   &bb);
          }
        }
      }
      bad = bad || bb;
    }
  }
  if (grad_x) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && P > 256) reduction(|| : bad)
    for (int64_t p = 0; p < P; ++p) {
      bool bb = false;
      backward_input_point<D, FT, FAST>(lv, qs.data(), x, xt, xc, p, P, table, F, grad_out, lay, grad_x, &bb);
      bad = bad || bb;
    }
  }
  *out_of_range = bad;
}

template <int D, int FT>
void forward_ft(const Levels& lv, const float* x, int64_t P, const float* table, int F, float* out,
                const OutLayout& lay, int threads, bool* bad) {
  std::vector<LevelPos<D>> qs;
  const bool fast = one_hot_levels<D>(lv, qs);
  const Clamped xs(x, P, lv.A, fast, threads);
  if (fast) return forward_impl<D, FT, true>(lv, qs, xs, P, table, F, out, lay, threads, bad);
  return forward_impl<D, FT, false>(lv, qs, xs, P, table, F, out, lay, threads, bad);
}

template <int D, int FT>
void backward_ft(const Levels& lv, const float* x, int64_t P, const float* table, int F, const float* grad_out,
                 const OutLayout& lay, float* grad_table, float* grad_x, int threads, bool* bad) {
  std::vector<LevelPos<D>> qs;
  const bool fast = one_hot_levels<D>(lv, qs);
  const Clamped xs(x, P, lv.A, fast, threads);
  if (fast)
    return backward_impl<D, FT, true>(lv, qs, x, xs, P, table, F, grad_out, lay, grad_table, grad_x, threads, bad);
  return backward_impl<D, FT, false>(lv, qs, x, xs, P, table, F, grad_out, lay, grad_table, grad_x, threads, bad);
}

template <int D>
void forward_f(const Levels& lv, const float* x, int64_t P, const float* table, int F, float* out,
               const OutLayout& lay, int threads, bool* bad) {
  switch (F) {
    case 1: return forward_ft<D, 1>(lv, x, P, table, F, out, lay, threads, bad);
    case 2: return forward_ft<D, 2>(lv, x, P, table, F, out, lay, threads, bad);
    case 4: return forward_ft<D, 4>(lv, x, P, table, F, out, lay, threads, bad);
    default: return forward_ft<D, 0>(lv, x, P, table, F, out, lay, threads, bad);
  }
}

template <int D>
void backward_f(const Levels& lv, const float* x, int64_t P, const float* table, int F, const float* grad_out,
                const OutLayout& lay, float* grad_table, float* grad_x, int threads, bool* bad) {
  switch (F) {
    case 1: return backward_ft<D, 1>(lv, x, P, table, F, grad_out, lay, grad_table, grad_x, threads, bad);
    case 2: return backward_ft<D, 2>(lv, x, P, table, F, grad_out, lay, grad_table, grad_x, threads, bad);
    case 4: return backward_ft<D, 4>(lv, x, P, table, F, grad_out, lay, grad_table, grad_x, threads, bad);
    default: return backward_ft<D, 0>(lv, x, P, table, F, grad_out, lay, grad_table, grad_x, threads, bad);
  }
}

}  // namespace

void forward_cpu(const Levels& lv, const float* x, int64_t P, const float* table, int F, float* out,
                 const int32_t* out_slot, bool point_major, int threads, bool* out_of_range) {
  const OutLayout lay{point_major, out_slot, P, lv.L, F};
  switch (lv.D) {
    case 1: return forward_f<1>(lv, x, P, table, F, out, lay, threads, out_of_range);
    case 2: return forward_f<2>(lv, x, P, table, F, out, lay, threads, out_of_range);
    case 3: return forward_f<3>(lv, x, P, table, F, out, lay, threads, out_of_range);
    default: return forward_f<4>(lv, x, P, table, F, out, lay, threads, out_of_range);
  }
}

void backward_cpu(const Levels& lv, const float* x, int64_t P, const float* table, int F, const float* grad_out,
                  const int32_t* out_slot, bool point_major, float* grad_table, float* grad_x, int threads,
                  bool* out_of_range) {
  const OutLayout lay{point_major, out_slot, P, lv.L, F};
  switch (lv.D) {
    case 1: return backward_f<1>(lv, x, P, table, F, grad_out, lay, grad_table, grad_x, threads, out_of_range);
    case 2: return backward_f<2>(lv, x, P, table, F, grad_out, lay, grad_table, grad_x, threads, out_of_range);
    case 3: return backward_f<3>(lv, x, P, table, F, grad_out, lay, grad_table, grad_x, threads, out_of_range);
    default: return backward_f<4>(lv, x, P, table, F, grad_out, lay, grad_table, grad_x, threads, out_of_range);
  }
}

}  // namespace ernerf_grid
