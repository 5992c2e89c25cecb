// CUDA kernels of the grid encoder: the algorithms of grid_cpu.cpp (same arithmetic, from
// grid_common.h), one thread per (point, level) for the forward pass and the table gradient
// (atomicAdd: levels share nothing but points of one level collide), one thread per point for
// the input gradient. Launched on the caller's stream (bindings.cpp passes torch's current one).
#include <cuda_runtime.h>

#include "grid_common.h"

namespace ernerf_grid {
namespace {

constexpr int kThreads = 256;

template <int D, int FT>
__global__ void forward_kernel(const Levels lv, const float* __restrict__ x, int64_t P,
                               const float* __restrict__ table, int F_rt, float* __restrict__ out,
                               const OutLayout lay, int* flag) {
  const int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int l = blockIdx.y;
  if (p >= P) return;
  const int F = FT > 0 ? FT : F_rt;
  const LevelConst k = level_const(lv, l);
  uint32_t cell[D];
  float frac[D];
  locate<D>(lv, l, x + p * lv.A, cell, frac);
  float* res = out + lay.base(l) + p * lay.point_stride();
  float acc[FT > 0 ? FT : 1];
  if (FT > 0) {
    for (int f = 0; f < F; ++f) acc[f] = 0.0f;
  } else {
    for (int f = 0; f < F; ++f) res[f] = 0.0f;
  }
  for (int c = 0; c < (1 << D); ++c) {
    const uint32_t row = corner_row<D>(k, cell, c);
    if ((uint64_t)row >= (uint64_t)lv.rows) { atomicExch(flag, 1); continue; }
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

template <int D, int FT>
__global__ void backward_table_kernel(const Levels lv, const float* __restrict__ x, int64_t P, int F_rt,
                                      const float* __restrict__ grad_out, const OutLayout lay,
                                      float* __restrict__ grad_table, int* flag) {
  const int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int l = blockIdx.y;
  if (p >= P) return;
  const int F = FT > 0 ? FT : F_rt;
  const LevelConst k = level_const(lv, l);
  uint32_t cell[D];
  float frac[D];
  locate<D>(lv, l, x + p * lv.A, cell, frac);
  const float* gp = grad_out + lay.base(l) + p * lay.point_stride();
  for (int c = 0; c < (1 << D); ++c) {
    const uint32_t row = corner_row<D>(k, cell, c);
    if ((uint64_t)row >= (uint64_t)lv.rows) { atomicExch(flag, 1); continue; }
    const float w = corner_weight<D>(frac, c);
    float* t = grad_table + (int64_t)row * F;
    for (int f = 0; f < F; ++f) atomicAdd(t + f, w * gp[f]);
  }
}

template <int D, int FT>
__global__ void backward_input_kernel(const Levels lv, const float* __restrict__ x, int64_t P,
                                      const float* __restrict__ table, int F_rt, const float* __restrict__ grad_out,
                                      const OutLayout lay, float* __restrict__ grad_x, int* flag) {
  const int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= P) return;
  const int F = FT > 0 ? FT : F_rt;
  const float* xp = x + p * lv.A;
  float gx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int l = 0; l < lv.L; ++l) {
    const LevelConst k = level_const(lv, l);
    uint32_t cell[D];
    float frac[D];
    locate<D>(lv, l, xp, cell, frac);
    const float* gp = grad_out + lay.base(l) + p * lay.point_stride();
    float dpos[D];
    for (int d = 0; d < D; ++d) dpos[d] = 0.0f;
    for (int c = 0; c < (1 << D); ++c) {
      const uint32_t row = corner_row<D>(k, cell, c);
      if ((uint64_t)row >= (uint64_t)lv.rows) { atomicExch(flag, 1); continue; }
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
    grad_x[p * lv.A + a] = (v >= 0.0f && v <= 1.0f) ? gx[a] : 0.0f;
  }
}

template <int D, int FT>
void launch(const Levels& lv, const float* x, int64_t P, const float* table, int F, const float* grad_out,
            float* out, float* grad_table, float* grad_x, const OutLayout& lay, int* flag, cudaStream_t stream) {
  const dim3 grid((unsigned)((P + kThreads - 1) / kThreads), (unsigned)lv.L);
  if (out) forward_kernel<D, FT><<<grid, kThreads, 0, stream>>>(lv, x, P, table, F, out, lay, flag);
  if (grad_table)
    backward_table_kernel<D, FT><<<grid, kThreads, 0, stream>>>(lv, x, P, F, grad_out, lay, grad_table, flag);
  if (grad_x) {
    const unsigned blocks = (unsigned)((P + kThreads - 1) / kThreads);
    backward_input_kernel<D, FT><<<blocks, kThreads, 0, stream>>>(lv, x, P, table, F, grad_out, lay, grad_x, flag);
  }
}

template <int D>
void launch_f(const Levels& lv, const float* x, int64_t P, const float* table, int F, const float* grad_out,
              float* out, float* grad_table, float* grad_x, const OutLayout& lay, int* flag, cudaStream_t stream) {
  switch (F) {
    case 1: return launch<D, 1>(lv, x, P, table, F, grad_out, out, grad_table, grad_x, lay, flag, stream);
    case 2: return launch<D, 2>(lv, x, P, table, F, grad_out, out, grad_table, grad_x, lay, flag, stream);
    case 4: return launch<D, 4>(lv, x, P, table, F, grad_out, out, grad_table, grad_x, lay, flag, stream);
    default: return launch<D, 0>(lv, x, P, table, F, grad_out, out, grad_table, grad_x, lay, flag, stream);
  }
}

void launch_d(const Levels& lv, const float* x, int64_t P, const float* table, int F, const float* grad_out,
              float* out, float* grad_table, float* grad_x, const OutLayout& lay, int* flag, cudaStream_t stream) {
  switch (lv.D) {
    case 1: return launch_f<1>(lv, x, P, table, F, grad_out, out, grad_table, grad_x, lay, flag, stream);
    case 2: return launch_f<2>(lv, x, P, table, F, grad_out, out, grad_table, grad_x, lay, flag, stream);
    case 3: return launch_f<3>(lv, x, P, table, F, grad_out, out, grad_table, grad_x, lay, flag, stream);
    default: return launch_f<4>(lv, x, P, table, F, grad_out, out, grad_table, grad_x, lay, flag, stream);
  }
}

}  // namespace

void forward_cuda(const Levels& lv, const float* x, int64_t P, const float* table, int F, float* out,
                  const int32_t* out_slot, bool point_major, int* flag, void* stream) {
  const OutLayout lay{point_major, out_slot, P, lv.L, F};
  launch_d(lv, x, P, table, F, nullptr, out, nullptr, nullptr, lay, flag, (cudaStream_t)stream);
}

void backward_cuda(const Levels& lv, const float* x, int64_t P, const float* table, int F, const float* grad_out,
                   const int32_t* out_slot, bool point_major, float* grad_table, float* grad_x, int* flag,
                   void* stream) {
  const OutLayout lay{point_major, out_slot, P, lv.L, F};
  launch_d(lv, x, P, table, F, grad_out, nullptr, grad_table, grad_x, lay, flag, (cudaStream_t)stream);
}

}  // namespace ernerf_grid
