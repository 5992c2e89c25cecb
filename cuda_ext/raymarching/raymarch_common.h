// Shared by the CPU (raymarch_cpu.cpp) and CUDA (raymarch_cuda.cu) kernels of the ray marcher: the
// arithmetic of one ray, written once so both devices compute what the pure-PyTorch references in
// ernerf_core/model/rays.py (near_far_from_aabb), renderer.py (march_rays, composite_weights) and
// occupancy.py (OccupancyGrid.lookup, refresh) compute, in the same float32 operations and order.
// Built with -ffp-contract=off (no fused multiply-adds), so positions and cells round as the
// reference's tensors do.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define RM_HD __host__ __device__ __forceinline__
#else
#define RM_HD inline
#endif

namespace ernerf_rm {

// Slab test of one ray against aabb [xmin, ymin, zmin, xmax, ymax, zmax]; a miss gives +inf twice.
RM_HD void near_far(const float* o, const float* d, const float* aabb, float min_near, float* near_out,
                    float* far_out) {
  float near = -INFINITY, far = INFINITY;
  for (int c = 0; c < 3; ++c) {
    const float dc = fabsf(d[c]) < 1e-15f ? 1e-15f : d[c];
    const float inv = 1.0f / dc;
    const float t0 = (aabb[c] - o[c]) * inv;
    const float t1 = (aabb[c + 3] - o[c]) * inv;
    const float lo = t0 < t1 ? t0 : t1, hi = t0 > t1 ? t0 : t1;
    near = c == 0 ? lo : (lo > near ? lo : near);
    far = c == 0 ? hi : (hi < far ? hi : far);
  }
  near = near > min_near ? near : min_near;
  if (far <= near) near = far = INFINITY;
  *near_out = near;
  *far_out = far;
}

// The occupancy grid as the marcher reads it: OccupancyGrid.padded, a (R+2)^3 copy of the R^3
// grid with one empty cell on every side, so a point outside the grid lands on an empty cell.
struct Grid {
  const uint8_t* padded;  // [(R+2)^3] bool
  int32_t R;              // resolution
  float bound;            // the grid spans [-bound, bound]^3
  float inv_cell;         // 1 / cell size
};

RM_HD bool occupied(const Grid& g, float x, float y, float z) {
  const float p[3] = {x, y, z};
  int32_t c[3];
  for (int a = 0; a < 3; ++a) {
    float v = floorf((p[a] + g.bound) * g.inv_cell);
    v = v < -1.0f ? -1.0f : (v > (float)g.R ? (float)g.R : v);  // NaN stays NaN -> cast below
    c[a] = (v == v ? (int32_t)v : -1) + 1;
  }
  const int32_t R2 = g.R + 2;
  return g.padded[(c[0] * R2 + c[1]) * R2 + c[2]] != 0;
}

// Samples of one ray: candidates t_k = near + (k + jitter) * dt inside [near, far), the first K that
// fall in occupied cells, packed to the front of t_out / valid_out (the rest stay as given: zeros).
// Returns how many were kept.
RM_HD int march_ray(const Grid& g, const float* o, const float* d, float near, float far, float jitter,
                    float dt, int K, float* t_out, uint8_t* valid_out) {
  if (!(near < INFINITY) || K <= 0) return 0;  // a miss (inf) or NaN
  int n = 0;
  for (int64_t k = 0;; ++k) {
    const float t = near + ((float)k + jitter) * dt;
    if (!(t < far)) break;
    if (occupied(g, o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2])) {
      t_out[n] = t;
      valid_out[n] = 1;
      if (++n == K) break;
    }
  }
  return n;
}

// Front-to-back weights of G consecutive samples of one ray (renderer.composite_weights):
//   front_k = cumsum(tau)_k - tau_k - log_T0   (the cumulative sum kept in double, as torch's CPU cumsum)
//   T_k = exp(-front_k); lit_k = T_k >= T_thresh; w_k = (1 - exp(-tau_k)) * T_k * lit_k
RM_HD void composite_forward(const float* tau, int G, float log_T0, float T_thresh, float* w, uint8_t* lit) {
  double acc = 0.0;
  for (int k = 0; k < G; ++k) {
    acc += (double)tau[k];
    const float front = ((float)acc - tau[k]) - log_T0;
    const float T = expf(-front);
    const bool on = T >= T_thresh;
    lit[k] = on;
    w[k] = (1.0f - expf(-tau[k])) * T * (on ? 1.0f : 0.0f);
  }
}

// Gradients of composite_forward's weights (lit carries none, as the reference's detached mask):
//   dL/dtau_j = g_j * exp(-tau_j) * T_j * lit_j - sum_{k>j} g_k w_k;   dL/dlog_T0 = sum_k g_k w_k
// T is recomputed as the forward pass does (front to back), then the sums run back to front.
// Returns dL/dlog_T0.
RM_HD float composite_backward(const float* tau, const float* w, const float* grad_w, int G, float log_T0,
                               float T_thresh, float* grad_tau) {
  double acc = 0.0;
  for (int k = 0; k < G; ++k) {
    acc += (double)tau[k];
    const float T = expf(-(((float)acc - tau[k]) - log_T0));
    grad_tau[k] = T >= T_thresh ? grad_w[k] * expf(-tau[k]) * T : 0.0f;
  }
  float suffix = 0.0f;  // sum_{k > j} g_k w_k
  for (int j = G - 1; j >= 0; --j) {
    grad_tau[j] -= suffix;
    suffix += grad_w[j] * w[j];
  }
  return suffix;
}

// One cell of OccupancyGrid.refresh: occupied = usable and some cell of its 3x3x3 neighbourhood
// (clipped to the grid) has density above the threshold.
RM_HD bool refresh_cell(const float* density, int R, float thresh, int x, int y, int z) {
  if (!(density[((int64_t)x * R + y) * R + z] >= 0.0f)) return false;  // unusable (-1)
  for (int i = x - 1; i <= x + 1; ++i) {
    if (i < 0 || i >= R) continue;
    for (int j = y - 1; j <= y + 1; ++j) {
      if (j < 0 || j >= R) continue;
      for (int k = z - 1; k <= z + 1; ++k) {
        if (k < 0 || k >= R) continue;
        if (density[((int64_t)i * R + j) * R + k] > thresh) return true;
      }
    }
  }
  return false;
}

// Entry points (raymarch_cpu.cpp, raymarch_cuda.cu); pointers are contiguous float32 / uint8 arrays,
// optional inputs are nullptr. R: rays (or cells for refresh), G: samples per ray.
void near_far_cpu(const float* o, const float* d, int64_t R, const float* aabb, float min_near, float* near,
                  float* far, int threads);
void march_cpu(const Grid& g, const float* o, const float* d, const float* near, const float* far,
               const float* jitter, int64_t R, float dt, int K, float* t_out, uint8_t* valid, int threads);
void composite_forward_cpu(const float* tau, int64_t R, int G, const float* log_T0, float T_thresh, float* w,
                           uint8_t* lit, int threads);
void composite_backward_cpu(const float* tau, const float* w, const float* grad_w, int64_t R, int G,
                            const float* log_T0, float T_thresh, float* grad_tau, float* grad_log_T0, int threads);
void refresh_cpu(const float* density, int R, float thresh, uint8_t* occupied, int threads);

#ifdef WITH_CUDA
void near_far_cuda(const float* o, const float* d, int64_t R, const float* aabb, float min_near, float* near,
                   float* far, void* stream);
void march_cuda(const Grid& g, const float* o, const float* d, const float* near, const float* far,
                const float* jitter, int64_t R, float dt, int K, float* t_out, uint8_t* valid, void* stream);
void composite_forward_cuda(const float* tau, int64_t R, int G, const float* log_T0, float T_thresh, float* w,
                            uint8_t* lit, void* stream);
void composite_backward_cuda(const float* tau, const float* w, const float* grad_w, int64_t R, int G,
                             const float* log_T0, float T_thresh, float* grad_tau, float* grad_log_T0,
                             void* stream);
void refresh_cuda(const float* density, int R, float thresh, uint8_t* occupied, void* stream);
#endif

}  // namespace ernerf_rm
