// Python bindings of the grid encoder: argument checks, then the CPU or CUDA kernel.
// Called from ernerf_core/model/native_grid.py (GridEncodeFunction); the level constants are the
// buffers of ernerf_core.model.encoders.GridLevels (see grid_common.h).
//
// Light includes on purpose (ATen + torch's pybind casters, not torch/extension.h): this file is
// the slow one to compile, and the build must stay short on a 2-core machine.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/utils/pybind.h>

#ifdef WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <tuple>
#include <vector>

#include "grid_common.h"

namespace {

using ernerf_grid::Levels;

void check(const at::Tensor& t, const char* name, at::ScalarType type, int dim, const at::Tensor& like) {
  TORCH_CHECK(t.scalar_type() == type, name, " must be ", at::toString(type), ", got ", at::toString(t.scalar_type()));
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions, got ", t.dim());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.device() == like.device(), name, " is on ", t.device(), ", expected ", like.device());
}

Levels levels_of(const at::Tensor& x, const at::Tensor& table, const at::Tensor& proj, const at::Tensor& mult,
                 const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& modulo, int64_t n_xor) {
  check(x, "x", at::kFloat, 2, table);
  check(table, "table", at::kFloat, 2, table);
  check(proj, "proj", at::kFloat, 2, table);
  check(mult, "mult", at::kInt, 2, table);
  check(offset, "offset", at::kInt, 1, table);
  check(mask, "mask", at::kInt, 1, table);
  check(modulo, "modulo", at::kInt, 1, table);
  const int64_t L = mult.size(0), D = mult.size(1), A = x.size(1);
  TORCH_CHECK(D >= 1 && D <= ernerf_grid::kMaxDims, "grid levels must have 1 to 4 dimensions, got ", D);
  TORCH_CHECK(A >= 1 && A <= 8, "x must have 1 to 8 columns, got ", A);
  TORCH_CHECK(proj.size(0) == D * L && proj.size(1) == A, "proj must be [D*L, A] = [", D * L, ", ", A, "]");
  TORCH_CHECK(offset.size(0) == L && mask.size(0) == L && modulo.size(0) == L, "offset, mask, modulo must be [L]");
  TORCH_CHECK(n_xor >= 0 && n_xor <= L, "n_xor out of range");
  TORCH_CHECK(table.size(0) < (int64_t(1) << 32), "table has too many rows");
  Levels lv;
  lv.L = (int32_t)L;
  lv.D = (int32_t)D;
  lv.A = (int32_t)A;
  lv.n_xor = (int32_t)n_xor;
  lv.proj = proj.data_ptr<float>();
  lv.mult = mult.data_ptr<int32_t>();
  lv.offset = offset.data_ptr<int32_t>();
  lv.mask = mask.data_ptr<int32_t>();
  lv.modulo = modulo.data_ptr<int32_t>();
  lv.rows = table.size(0);
  return lv;
}

#ifdef WITH_CUDA
bool cuda_flag_set(const at::Tensor& flag) { return flag.item<int>() != 0; }
#endif

// out_slot: undefined / empty (level l at slot l) or an int32 permutation of 0..L-1
const int32_t* slots_of(const at::Tensor& out_slot, const at::Tensor& table, int64_t L) {
  if (!out_slot.defined() || out_slot.numel() == 0) return nullptr;
  check(out_slot, "out_slot", at::kInt, 1, table);
  TORCH_CHECK(out_slot.size(0) == L, "out_slot must be [L]");
  if (out_slot.is_cpu()) {  // (CUDA callers pass GridLevels' slots, checked when made on the CPU)
    std::vector<char> seen(L, 0);
    const int32_t* s = out_slot.data_ptr<int32_t>();
    for (int64_t l = 0; l < L; ++l) {
      TORCH_CHECK(s[l] >= 0 && s[l] < L && !seen[s[l]], "out_slot must be a permutation of 0..L-1");
      seen[s[l]] = 1;
    }
  }
  return out_slot.data_ptr<int32_t>();
}

// x [P, A], table [T, F] -> [L, P, F] (levels in mult's row order), or point_major [P, L * F] with
// level l at slot out_slot[l]
at::Tensor forward(const at::Tensor& x, const at::Tensor& table, const at::Tensor& proj, const at::Tensor& mult,
                   const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& modulo, int64_t n_xor,
                   const at::Tensor& out_slot, bool point_major) {
  const Levels lv = levels_of(x, table, proj, mult, offset, mask, modulo, n_xor);
  const int64_t P = x.size(0), F = table.size(1);
  const int32_t* slot = slots_of(out_slot, table, lv.L);
  at::Tensor out = point_major ? at::empty({P, lv.L * F}, table.options()) : at::empty({lv.L, P, F}, table.options());
  if (P == 0) return out;
  if (x.is_cuda()) {
#ifdef WITH_CUDA
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor flag = at::zeros({1}, mult.options());
    ernerf_grid::forward_cuda(lv, x.data_ptr<float>(), P, table.data_ptr<float>(), (int)F, out.data_ptr<float>(),
                              slot, point_major, flag.data_ptr<int>(), c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(!cuda_flag_set(flag), "grid encoder: a corner's row is outside the table");
    return out;
#else
    TORCH_CHECK(false, "this build of the grid encoder has no CUDA kernels");
#endif
  }
  TORCH_CHECK(x.is_cpu(), "grid encoder: unsupported device ", x.device());
  bool bad = false;
  ernerf_grid::forward_cpu(lv, x.data_ptr<float>(), P, table.data_ptr<float>(), (int)F, out.data_ptr<float>(), slot,
                           point_major, at::get_num_threads(), &bad);
  TORCH_CHECK(!bad, "grid encoder: a corner's row is outside the table");
  return out;
}

// grad_out in forward's layout -> (grad_table [T, F] or undefined, grad_x [P, A] or undefined)
std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& table,
                                            const at::Tensor& proj, const at::Tensor& mult,
                                            const at::Tensor& offset, const at::Tensor& mask,
                                            const at::Tensor& modulo, int64_t n_xor, const at::Tensor& out_slot,
                                            bool point_major, bool need_table, bool need_x) {
  const Levels lv = levels_of(x, table, proj, mult, offset, mask, modulo, n_xor);
  const int64_t P = x.size(0), F = table.size(1);
  const int32_t* slot = slots_of(out_slot, table, lv.L);
  if (point_major) {
    check(grad_out, "grad_out", at::kFloat, 2, table);
    TORCH_CHECK(grad_out.size(0) == P && grad_out.size(1) == lv.L * F, "grad_out must be [P, L * F]");
  } else {
    check(grad_out, "grad_out", at::kFloat, 3, table);
    TORCH_CHECK(grad_out.size(0) == lv.L && grad_out.size(1) == P && grad_out.size(2) == F,
                "grad_out must be [L, P, F]");
  }
  at::Tensor grad_table, grad_x;
  if (need_table) grad_table = at::zeros_like(table);
  if (need_x) grad_x = at::zeros_like(x);
  if (P == 0 || (!need_table && !need_x)) return {grad_table, grad_x};
  float* gt = need_table ? grad_table.data_ptr<float>() : nullptr;
  float* gx = need_x ? grad_x.data_ptr<float>() : nullptr;
  if (x.is_cuda()) {
#ifdef WITH_CUDA
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor flag = at::zeros({1}, mult.options());
    ernerf_grid::backward_cuda(lv, x.data_ptr<float>(), P, table.data_ptr<float>(), (int)F,
                               grad_out.data_ptr<float>(), slot, point_major, gt, gx, flag.data_ptr<int>(),
                               c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(!cuda_flag_set(flag), "grid encoder: a corner's row is outside the table");
    return {grad_table, grad_x};
#else
    TORCH_CHECK(false, "this build of the grid encoder has no CUDA kernels");
#endif
  }
  TORCH_CHECK(x.is_cpu(), "grid encoder: unsupported device ", x.device());
  bool bad = false;
  ernerf_grid::backward_cpu(lv, x.data_ptr<float>(), P, table.data_ptr<float>(), (int)F,
                            grad_out.data_ptr<float>(), slot, point_major, gt, gx, at::get_num_threads(), &bad);
  TORCH_CHECK(!bad, "grid encoder: a corner's row is outside the table");
  return {grad_table, grad_x};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ernerf multiresolution grid encoder (cuda_ext/gridencoder)";
  m.def("forward", &forward, "x [P, A], table [T, F], level constants, out_slot, point_major -> [L, P, F] or [P, L*F]");
  m.def("backward", &backward, "grad_out (forward's layout) -> (grad_table, grad_x)");
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
