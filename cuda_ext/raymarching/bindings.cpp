// Python bindings of the ray marcher: argument checks, then the CPU or CUDA kernel.
// Called from ernerf_core/model/native_raymarch.py. The references these match are in
// ernerf_core/model/rays.py, renderer.py and occupancy.py (see raymarch_common.h).
//
// Light includes on purpose (ATen + torch's pybind casters, not torch/extension.h): the build must
// stay short on a 2-core machine.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/utils/pybind.h>

#ifdef WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <tuple>

#include "raymarch_common.h"

namespace {

void check(const at::Tensor& t, const char* name, at::ScalarType type, const at::Tensor& like) {
  TORCH_CHECK(t.scalar_type() == type, name, " must be ", at::toString(type), ", got ", at::toString(t.scalar_type()));
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.device() == like.device(), name, " is on ", t.device(), ", expected ", like.device());
}

void check_rays(const at::Tensor& o, const at::Tensor& d) {
  check(o, "rays_o", at::kFloat, o);
  check(d, "rays_d", at::kFloat, o);
  TORCH_CHECK(o.dim() == 2 && o.size(1) == 3 && d.sizes() == o.sizes(), "rays_o and rays_d must both be [R, 3]");
}

// an optional per-ray input: undefined or empty = absent
const float* optional_rays(const at::Tensor& t, const char* name, int64_t R, const at::Tensor& like) {
  if (!t.defined() || t.numel() == 0) return nullptr;
  check(t, name, at::kFloat, like);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == R, name, " must be [R] = [", R, "]");
  return t.data_ptr<float>();
}

uint8_t* bytes(at::Tensor& t) { return reinterpret_cast<uint8_t*>(t.data_ptr<bool>()); }

#ifdef WITH_CUDA
#define RM_DISPATCH(like, cpu_call, cuda_call)                                   \
  if ((like).is_cuda()) {                                                        \
    const c10::cuda::CUDAGuard guard((like).device());                           \
    void* stream = (void*)c10::cuda::getCurrentCUDAStream().stream();            \
    cuda_call;                                                                   \
  } else {                                                                       \
    TORCH_CHECK((like).is_cpu(), "ray marcher: unsupported device ", (like).device()); \
    const int threads = at::get_num_threads();                                   \
    cpu_call;                                                                    \
  }
#else
#define RM_DISPATCH(like, cpu_call, cuda_call)                                   \
  TORCH_CHECK((like).is_cpu(), "this build of the ray marcher has no CUDA kernels"); \
  {                                                                              \
    const int threads = at::get_num_threads();                                   \
    cpu_call;                                                                    \
  }
#endif

std::tuple<at::Tensor, at::Tensor> near_far(const at::Tensor& o, const at::Tensor& d, const at::Tensor& aabb,
                                            double min_near) {
  check_rays(o, d);
  check(aabb, "aabb", at::kFloat, o);
  TORCH_CHECK(aabb.numel() == 6, "aabb must have 6 values");
  const int64_t R = o.size(0);
  at::Tensor near = at::empty({R}, o.options()), far = at::empty({R}, o.options());
  const float* po = o.data_ptr<float>();
  const float* pd = d.data_ptr<float>();
  const float* pb = aabb.data_ptr<float>();
  float *pn = near.data_ptr<float>(), *pf = far.data_ptr<float>();
  RM_DISPATCH(o, ernerf_rm::near_far_cpu(po, pd, R, pb, (float)min_near, pn, pf, threads),
              ernerf_rm::near_far_cuda(po, pd, R, pb, (float)min_near, pn, pf, stream));
  return {near, far};
}

std::tuple<at::Tensor, at::Tensor> march(const at::Tensor& o, const at::Tensor& d, const at::Tensor& near,
                                         const at::Tensor& far, const at::Tensor& padded, int64_t resolution,
                                         double bound, double inv_cell, int64_t max_samples, double dt,
                                         const at::Tensor& jitter) {
  check_rays(o, d);
  const int64_t R = o.size(0);
  check(near, "nears", at::kFloat, o);
  check(far, "fars", at::kFloat, o);
  TORCH_CHECK(near.dim() == 1 && near.size(0) == R && far.dim() == 1 && far.size(0) == R, "nears, fars must be [R]");
  check(padded, "padded", at::kBool, o);
  TORCH_CHECK(resolution >= 1 && padded.numel() == (resolution + 2) * (resolution + 2) * (resolution + 2),
              "padded must have (resolution + 2)^3 cells");
  TORCH_CHECK(max_samples >= 1, "max_samples must be >= 1");
  TORCH_CHECK(dt > 0, "dt must be > 0");
  const float* pj = optional_rays(jitter, "jitter", R, o);
  at::Tensor t_out = at::zeros({R, max_samples}, o.options());
  at::Tensor valid = at::zeros({R, max_samples}, o.options().dtype(at::kBool));
  ernerf_rm::Grid g{reinterpret_cast<const uint8_t*>(padded.data_ptr<bool>()), (int32_t)resolution, (float)bound,
                    (float)inv_cell};
  const float* po = o.data_ptr<float>();
  const float* pd = d.data_ptr<float>();
  const float* pn = near.data_ptr<float>();
  const float* pf = far.data_ptr<float>();
  float* pt = t_out.data_ptr<float>();
  uint8_t* pv = bytes(valid);
  const int K = (int)max_samples;
  RM_DISPATCH(o, ernerf_rm::march_cpu(g, po, pd, pn, pf, pj, R, (float)dt, K, pt, pv, threads),
              ernerf_rm::march_cuda(g, po, pd, pn, pf, pj, R, (float)dt, K, pt, pv, stream));
  return {t_out, valid};
}

std::tuple<at::Tensor, at::Tensor> composite_forward(const at::Tensor& tau, const at::Tensor& log_T0,
                                                     double T_thresh) {
  check(tau, "tau", at::kFloat, tau);
  TORCH_CHECK(tau.dim() == 2, "tau must be [R, G]");
  const int64_t R = tau.size(0);
  const int G = (int)tau.size(1);
  const float* pl = optional_rays(log_T0, "log_T0", R, tau);
  at::Tensor w = at::empty_like(tau);
  at::Tensor lit = at::empty(tau.sizes(), tau.options().dtype(at::kBool));
  const float* pt = tau.data_ptr<float>();
  float* pw = w.data_ptr<float>();
  uint8_t* pk = bytes(lit);
  RM_DISPATCH(tau, ernerf_rm::composite_forward_cpu(pt, R, G, pl, (float)T_thresh, pw, pk, threads),
              ernerf_rm::composite_forward_cuda(pt, R, G, pl, (float)T_thresh, pw, pk, stream));
  return {w, lit};
}

std::tuple<at::Tensor, at::Tensor> composite_backward(const at::Tensor& grad_w, const at::Tensor& tau,
                                                      const at::Tensor& w, const at::Tensor& log_T0,
                                                      double T_thresh, bool need_log_T0) {
  check(tau, "tau", at::kFloat, tau);
  check(w, "weights", at::kFloat, tau);
  check(grad_w, "grad_weights", at::kFloat, tau);
  TORCH_CHECK(tau.dim() == 2 && w.sizes() == tau.sizes() && grad_w.sizes() == tau.sizes(),
              "tau, weights and their gradient must all be [R, G]");
  const int64_t R = tau.size(0);
  const int G = (int)tau.size(1);
  const float* pl = optional_rays(log_T0, "log_T0", R, tau);
  at::Tensor grad_tau = at::empty_like(tau);
  at::Tensor grad_log;
  if (need_log_T0) grad_log = at::empty({R}, tau.options());
  const float* pt = tau.data_ptr<float>();
  const float* pw = w.data_ptr<float>();
  const float* pg = grad_w.data_ptr<float>();
  float* pgt = grad_tau.data_ptr<float>();
  float* pgl = need_log_T0 ? grad_log.data_ptr<float>() : nullptr;
  RM_DISPATCH(tau, ernerf_rm::composite_backward_cpu(pt, pw, pg, R, G, pl, (float)T_thresh, pgt, pgl, threads),
              ernerf_rm::composite_backward_cuda(pt, pw, pg, R, G, pl, (float)T_thresh, pgt, pgl, stream));
  return {grad_tau, grad_log};
}

at::Tensor refresh(const at::Tensor& density, int64_t resolution, double thresh) {
  check(density, "density", at::kFloat, density);
  TORCH_CHECK(resolution >= 1 && density.numel() == resolution * resolution * resolution,
              "density must have resolution^3 cells");
  at::Tensor occupied = at::empty(density.sizes(), density.options().dtype(at::kBool));
  const float* pd = density.data_ptr<float>();
  uint8_t* po = bytes(occupied);
  const int R = (int)resolution;
  RM_DISPATCH(density, ernerf_rm::refresh_cpu(pd, R, (float)thresh, po, threads),
              ernerf_rm::refresh_cuda(pd, R, (float)thresh, po, stream));
  return occupied;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ernerf ray marcher (cuda_ext/raymarching)";
  m.def("near_far", &near_far, "rays_o [R, 3], rays_d [R, 3], aabb [6], min_near -> (near [R], far [R]); miss: inf");
  m.def("march", &march,
        "rays, near, far, padded occupancy [(res+2)^3], res, bound, 1/cell, K, dt, jitter [R] or empty "
        "-> (t [R, K], valid [R, K] bool)");
  m.def("composite_forward", &composite_forward, "tau [R, G], log_T0 [R] or empty, T_thresh -> (weights, lit)");
  m.def("composite_backward", &composite_backward,
        "grad_weights, tau, weights, log_T0, T_thresh, need_log_T0 -> (grad_tau, grad_log_T0)");
  m.def("refresh", &refresh, "density [res^3], res, thresh -> occupied [res^3] bool (threshold, 3^3 dilation, usable)");
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
