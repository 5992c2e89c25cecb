// CUDA kernels of the ray marcher: the algorithms of raymarch_cpu.cpp (same per-ray arithmetic, from
// raymarch_common.h), one thread per ray (or per grid cell for refresh), on the caller's stream
// (bindings.cpp passes torch's current one).
#include <cuda_runtime.h>

#include "raymarch_common.h"

namespace ernerf_rm {
namespace {

constexpr int kThreads = 128;

inline unsigned blocks_for(int64_t n) { return (unsigned)((n + kThreads - 1) / kThreads); }

__global__ void near_far_kernel(const float* __restrict__ o, const float* __restrict__ d, int64_t R,
                                const float* __restrict__ aabb, float min_near, float* near, float* far) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r < R) near_far(o + 3 * r, d + 3 * r, aabb, min_near, near + r, far + r);
}

__global__ void march_kernel(const Grid g, const float* __restrict__ o, const float* __restrict__ d,
                             const float* __restrict__ near, const float* __restrict__ far,
                             const float* __restrict__ jitter, int64_t R, float dt, int K, float* t_out,
                             uint8_t* valid) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r < R)
    march_ray(g, o + 3 * r, d + 3 * r, near[r], far[r], jitter ? jitter[r] : 0.0f, dt, K, t_out + r * K,
              valid + r * K);
}

__global__ void composite_forward_kernel(const float* __restrict__ tau, int64_t R, int G,
                                         const float* __restrict__ log_T0, float T_thresh, float* w,
                                         uint8_t* lit) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r < R) composite_forward(tau + r * G, G, log_T0 ? log_T0[r] : 0.0f, T_thresh, w + r * G, lit + r * G);
}

__global__ void composite_backward_kernel(const float* __restrict__ tau, const float* __restrict__ w,
                                          const float* __restrict__ grad_w, int64_t R, int G,
                                          const float* __restrict__ log_T0, float T_thresh, float* grad_tau,
                                          float* grad_log_T0) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= R) return;
  const float g0 = composite_backward(tau + r * G, w + r * G, grad_w + r * G, G, log_T0 ? log_T0[r] : 0.0f,
                                      T_thresh, grad_tau + r * G);
  if (grad_log_T0) grad_log_T0[r] = g0;
}

__global__ void refresh_kernel(const float* __restrict__ density, int R, float thresh, uint8_t* occupied) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t n = (int64_t)R * R * R;
  if (i >= n) return;
  const int z = (int)(i % R), y = (int)((i / R) % R), x = (int)(i / ((int64_t)R * R));
  occupied[i] = refresh_cell(density, R, thresh, x, y, z);
}

}  // namespace

void near_far_cuda(const float* o, const float* d, int64_t R, const float* aabb, float min_near, float* near,
                   float* far, void* stream) {
  if (R == 0) return;
  near_far_kernel<<<blocks_for(R), kThreads, 0, (cudaStream_t)stream>>>(o, d, R, aabb, min_near, near, far);
}

void march_cuda(const Grid& g, const float* o, const float* d, const float* near, const float* far,
                const float* jitter, int64_t R, float dt, int K, float* t_out, uint8_t* valid, void* stream) {
  if (R == 0) return;
  march_kernel<<<blocks_for(R), kThreads, 0, (cudaStream_t)stream>>>(g, o, d, near, far, jitter, R, dt, K, t_out,
                                                                      valid);
}

void composite_forward_cuda(const float* tau, int64_t R, int G, const float* log_T0, float T_thresh, float* w,
                            uint8_t* lit, void* stream) {
  if (R == 0) return;
  composite_forward_kernel<<<blocks_for(R), kThreads, 0, (cudaStream_t)stream>>>(tau, R, G, log_T0, T_thresh, w,
                                                                                  lit);
}

void composite_backward_cuda(const float* tau, const float* w, const float* grad_w, int64_t R, int G,
                             const float* log_T0, float T_thresh, float* grad_tau, float* grad_log_T0,
                             void* stream) {
  if (R == 0) return;
  composite_backward_kernel<<<blocks_for(R), kThreads, 0, (cudaStream_t)stream>>>(tau, w, grad_w, R, G, log_T0,
                                                                                   T_thresh, grad_tau, grad_log_T0);
}

void refresh_cuda(const float* density, int R, float thresh, uint8_t* occupied, void* stream) {
  const int64_t n = (int64_t)R * R * R;
  if (n == 0) return;
  refresh_kernel<<<blocks_for(n), kThreads, 0, (cudaStream_t)stream>>>(density, R, thresh, occupied);
}

}  // namespace ernerf_rm
