// CPU (OpenMP) kernels of the grid encoder. See grid_common.h for the arithmetic.
//
// forward:  parallel over (level, block of points); out is level-major, so each task writes a
//           contiguous slice and reads one level's part of the table.
// backward: the table gradient is parallel over levels (a level only touches its own rows, so no
//           two threads add into one row); the input gradient is parallel over points.
#include <cmath>
#include <cstring>

#include "grid_common.h"

namespace ernerf_grid {
namespace {

constexpr int64_t kBlock = 2048;  // points per forward task

template <int D, int FT>
void forward_level(const Levels& lv, int l, const float* x, int64_t p0, int64_t p1, const float* table, int F_rt,
                   float* out, bool* bad) {
  const int F = FT > 0 ? FT : F_rt;
  const LevelConst k = level_const(lv, l);
  const uint64_t rows = (uint64_t)lv.rows;
  for (int64_t p = p0; p < p1; ++p) {
    uint32_t cell[D];
    float frac[D];
    locate<D>(lv, l, x + p * lv.A, cell, frac);
    float acc[FT > 0 ? FT : 16];
    float* res = out + p * F;  // `out` is this level's [P, F] slice
    if (FT > 0) {
      for (int f = 0; f < F; ++f) acc[f] = 0.0f;
    } else {
      for (int f = 0; f < F; ++f) res[f] = 0.0f;
    }
    for (int c = 0; c < (1 << D); ++c) {
      const uint32_t row = corner_row<D>(k, cell, c);
      if ((uint64_t)row >= rows) { *bad = true; continue; }
      const float w = corner_weight<D>(frac, c);
      const float* v = table + (int64_t)row * F;
      if (FT > 0) {
        for (int f = 0; f < F; ++f) acc[f] += v[f] * w;
      } else {
        for (int f = 0; f < F; ++f) res[f] += v[f] * w;
      }
    }
    if (FT > 0) {
      for (int f = 0; f < F; ++f) res[f] = acc[f];
    }
  }
}

template <int D, int FT>
void backward_table_level(const Levels& lv, int l, const float* x, int64_t P, int F_rt, const float* grad_out,
                          float* grad_table, bool* bad) {
  const int F = FT > 0 ? FT : F_rt;
  const LevelConst k = level_const(lv, l);
  const uint64_t rows = (uint64_t)lv.rows;
  const float* g = grad_out + (int64_t)l * P * F;
  for (int64_t p = 0; p < P; ++p) {
    uint32_t cell[D];
    float frac[D];
    locate<D>(lv, l, x + p * lv.A, cell, frac);
    const float* gp = g + p * F;
    for (int c = 0; c < (1 << D); ++c) {
      const uint32_t row = corner_row<D>(k, cell, c);
      if ((uint64_t)row >= rows) { *bad = true; continue; }
      const float w = corner_weight<D>(frac, c);
      float* t = grad_table + (int64_t)row * F;
      for (int f = 0; f < F; ++f) t[f] += w * gp[f];
    }
  }
}

template <int D, int FT>
void backward_input_point(const Levels& lv, const float* x, int64_t p, int64_t P, const float* table, int F_rt,
                          const float* grad_out, float* grad_x, bool* bad) {
  const int F = FT > 0 ? FT : F_rt;
  const uint64_t rows = (uint64_t)lv.rows;
  const float* xp = x + p * lv.A;
  float gx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int l = 0; l < lv.L; ++l) {
    const LevelConst k = level_const(lv, l);
    uint32_t cell[D];
    float frac[D];
    locate<D>(lv, l, xp, cell, frac);
    const float* gp = grad_out + ((int64_t)l * P + p) * F;
    float dpos[D];
    for (int d = 0; d < D; ++d) dpos[d] = 0.0f;
    for (int c = 0; c < (1 << D); ++c) {
      const uint32_t row = corner_row<D>(k, cell, c);
      if ((uint64_t)row >= rows) { *bad = true; continue; }
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
  for (int a = 0; a < lv.A; ++a) {
    const float v = xp[a];
    grad_x[p * lv.A + a] = (v >= 0.0f && v <= 1.0f) ? gx[a] : 0.0f;  // clamp's gradient
  }
}

template <int D, int FT>
void forward_impl(const Levels& lv, const float* x, int64_t P, const float* table, int F, float* out, int threads,
                  bool* out_of_range) {
  const int64_t blocks = (P + kBlock - 1) / kBlock;
  const int64_t tasks = blocks * lv.L;
  bool bad = false;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && tasks > 1) reduction(|| : bad)
  for (int64_t t = 0; t < tasks; ++t) {
    const int l = (int)(t / blocks);
    const int64_t p0 = (t % blocks) * kBlock;
    const int64_t p1 = p0 + kBlock < P ? p0 + kBlock : P;
    bool b = false;
    forward_level<D, FT>(lv, l, x, p0, p1, table, F, out + (int64_t)l * P * F, &b);
    bad = bad || b;
  }
  *out_of_range = bad;
}

template <int D, int FT>
void backward_impl(const Levels& lv, const float* x, int64_t P, const float* table, int F, const float* grad_out,
                   float* grad_table, float* grad_x, int threads, bool* out_of_range) {
  bool bad = false;
  if (grad_table) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1 && lv.L > 1) reduction(|| : bad)
    for (int l = 0; l < lv.L; ++l) {
      bool b = false;
      backward_table_level<D, FT>(lv, l, x, P, F, grad_out, grad_table, &b);
      bad = bad || b;
    }
  }
  if (grad_x) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && P > 256) reduction(|| : bad)
    for (int64_t p = 0; p < P; ++p) {
      bool b = false;
      backward_input_point<D, FT>(lv, x, p, P, table, F, grad_out, grad_x, &b);
      bad = bad || b;
    }
  }
  *out_of_range = bad;
}

template <int D>
void forward_f(const Levels& lv, const float* x, int64_t P, const float* table, int F, float* out, int threads,
               bool* bad) {
  switch (F) {
    case 1: return forward_impl<D, 1>(lv, x, P, table, F, out, threads, bad);
    case 2: return forward_impl<D, 2>(lv, x, P, table, F, out, threads, bad);
    case 4: return forward_impl<D, 4>(lv, x, P, table, F, out, threads, bad);
    default: return forward_impl<D, 0>(lv, x, P, table, F, out, threads, bad);
  }
}

template <int D>
void backward_f(const Levels& lv, const float* x, int64_t P, const float* table, int F, const float* grad_out,
                float* grad_table, float* grad_x, int threads, bool* bad) {
  switch (F) {
    case 1: return backward_impl<D, 1>(lv, x, P, table, F, grad_out, grad_table, grad_x, threads, bad);
    case 2: return backward_impl<D, 2>(lv, x, P, table, F, grad_out, grad_table, grad_x, threads, bad);
    case 4: return backward_impl<D, 4>(lv, x, P, table, F, grad_out, grad_table, grad_x, threads, bad);
    default: return backward_impl<D, 0>(lv, x, P, table, F, grad_out, grad_table, grad_x, threads, bad);
  }
}

}  // namespace

void forward_cpu(const Levels& lv, const float* x, int64_t P, const float* table, int F, float* out, int threads,
                 bool* out_of_range) {
  switch (lv.D) {
    case 1: return forward_f<1>(lv, x, P, table, F, out, threads, out_of_range);
    case 2: return forward_f<2>(lv, x, P, table, F, out, threads, out_of_range);
    case 3: return forward_f<3>(lv, x, P, table, F, out, threads, out_of_range);
    default: return forward_f<4>(lv, x, P, table, F, out, threads, out_of_range);
  }
}

void backward_cpu(const Levels& lv, const float* x, int64_t P, const float* table, int F, const float* grad_out,
                  float* grad_table, float* grad_x, int threads, bool* out_of_range) {
  switch (lv.D) {
    case 1: return backward_f<1>(lv, x, P, table, F, grad_out, grad_table, grad_x, threads, out_of_range);
    case 2: return backward_f<2>(lv, x, P, table, F, grad_out, grad_table, grad_x, threads, out_of_range);
    case 3: return backward_f<3>(lv, x, P, table, F, grad_out, grad_table, grad_x, threads, out_of_range);
    default: return backward_f<4>(lv, x, P, table, F, grad_out, grad_table, grad_x, threads, out_of_range);
  }
}

}  // namespace ernerf_grid
