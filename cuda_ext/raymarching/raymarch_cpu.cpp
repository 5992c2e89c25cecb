// CPU kernels of the ray marcher: one ray (or one grid cell) per loop iteration, rays split between
// OpenMP threads. The per-ray arithmetic is raymarch_common.h's; no torch headers here.
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "raymarch_common.h"

namespace ernerf_rm {

void near_far_cpu(const float* o, const float* d, int64_t R, const float* aabb, float min_near, float* near,
                  float* far, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && R > 16384)
  for (int64_t r = 0; r < R; ++r) near_far(o + 3 * r, d + 3 * r, aabb, min_near, near + r, far + r);
}

void march_cpu(const Grid& g, const float* o, const float* d, const float* near, const float* far,
               const float* jitter, int64_t R, float dt, int K, float* t_out, uint8_t* valid, int threads) {
  // dynamic: rays that cross more of the box cost more
#pragma omp parallel for schedule(dynamic, 256) num_threads(threads) if (threads > 1 && R > 4096)
  for (int64_t r = 0; r < R; ++r)
    march_ray(g, o + 3 * r, d + 3 * r, near[r], far[r], jitter ? jitter[r] : 0.0f, dt, K, t_out + r * K,
              valid + r * K);
}

void composite_forward_cpu(const float* tau, int64_t R, int G, const float* log_T0, float T_thresh, float* w,
                           uint8_t* lit, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && R > 16384)
  for (int64_t r = 0; r < R; ++r)
    composite_forward(tau + r * G, G, log_T0 ? log_T0[r] : 0.0f, T_thresh, w + r * G, lit + r * G);
}

void composite_backward_cpu(const float* tau, const float* w, const float* grad_w, int64_t R, int G,
                            const float* log_T0, float T_thresh, float* grad_tau, float* grad_log_T0, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && R > 16384)
  for (int64_t r = 0; r < R; ++r) {
    const float g0 = composite_backward(tau + r * G, w + r * G, grad_w + r * G, G, log_T0 ? log_T0[r] : 0.0f,
                                        T_thresh, grad_tau + r * G);
    if (grad_log_T0) grad_log_T0[r] = g0;
  }
}

void refresh_cpu(const float* density, int R, float thresh, uint8_t* occupied, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int x = 0; x < R; ++x)
    for (int y = 0; y < R; ++y)
      for (int z = 0; z < R; ++z)
        occupied[((int64_t)x * R + y) * R + z] = refresh_cell(density, R, thresh, x, y, z);
}

}  // namespace ernerf_rm
