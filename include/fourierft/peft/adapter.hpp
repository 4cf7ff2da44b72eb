// fourierft/peft/adapter.hpp — what every LinearAdapter method shares, whatever its ΔW: adding a
// ΔW into a base weight of either layout, merge / unmerge over a model, finding attached adapters.
#pragma once

#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/half.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"

namespace fourierft::peft {

// The same on a 16-bit weight (nn::Linear::half_precision()): each touched stored row is converted
// to float, updated in float, and rounded back (nearest even), one row at a time — no float copy
// of the matrix. Rounding makes merge then unmerge inexact on BF16 (about 2^-9 relative per
// touched entry; F16 2^-12), unlike the float path, where it is exact up to float addition.
template <class Real>
void add_delta_weight_half(nn::Linear<Real>& base, std::span<const Real> dW, Index rows,
                           Index row_offset, Real factor) {
  HalfMatrix& w = base.half_weight();
  const Index d_in = base.d_in(), cols = w.cols();
  const bool out_in = base.layout() == ops::WeightLayout::out_in;
  std::uint16_t* bits = w.mutable_data();
  // Stored rows touched: out_in, rows row_offset.. of (d_out, d_in); in_out, all d_in rows of
  // (d_in, d_out), columns row_offset.. .
  const Index first = out_in ? row_offset : 0, count = out_in ? rows : d_in;
#pragma omp parallel for schedule(static) if (count * cols > 65536)
  for (Index r = first; r < first + count; ++r) {
    std::vector<float> row(static_cast<std::size_t>(cols));
    half_to_real(w.dtype(), bits + r * cols, row.data(), row.size());
    if (out_in)
      for (Index q = 0; q < d_in; ++q)
        row[q] += static_cast<float>(factor * dW[(r - row_offset) * d_in + q]);
    else
      for (Index p = 0; p < rows; ++p)
        row[row_offset + p] += static_cast<float>(factor * dW[p * d_in + r]);
    real_to_half(w.dtype(), row.data(), bits + r * cols, row.size());
  }
}

// W0[row_offset + p, q] += factor · dW[p, q]  for dW: (rows, d_in) row-major, whatever the base's
// layout (GPT-2's Conv1D stores (d_in, d_out): ΔWᵀ is added there). rows < d_out when the update
// covers one block of a fused projection (GPT-2's c_attn = q | k | v).
template <class Real>
void add_delta_weight(nn::Linear<Real>& base, std::span<const Real> dW, Index rows,
                      Index row_offset, Real factor) {
  const Index d_in = base.d_in();
  check<ShapeError>(row_offset >= 0 && rows >= 0 && row_offset + rows <= base.d_out() &&
                        static_cast<Index>(dW.size()) == rows * d_in,
                    "add_delta_weight: a (", rows, ", ", d_in, ") update at row ", row_offset,
                    " of ", dW.size(), " values does not fit a (", base.d_out(), ", ", d_in,
                    ") weight");
  if (base.half_precision()) {
    add_delta_weight_half(base, dW, rows, row_offset, factor);
    return;
  }
  Tensor<Real>& w = base.weight.value();
  for (Index p = 0; p < rows; ++p)
    for (Index q = 0; q < d_in; ++q) w[base.weight_index(row_offset + p, q)] += factor * dW[p * d_in + q];
}

// Merges every attached adapter of the model into its base weight (merge = false: unmerges).
// Adapters already in the requested state are left alone.
template <class Real>
void merge_adapters(nn::Module<Real>& model, bool merge = true) {
  for (auto& [name, module] : model.named_modules())
    if (auto* linear = dynamic_cast<nn::Linear<Real>*>(module))
      for (auto& [aname, adapter] : linear->adapters()) {
        if (merge && !adapter->merged()) adapter->merge(*linear);
        if (!merge && adapter->merged()) adapter->unmerge(*linear);
      }
}
template <class Real>
void unmerge_adapters(nn::Module<Real>& model) {
  merge_adapters(model, false);
}

// The Linear layers of the model that carry an adapter.
template <class Real>
Index adapted_layers(const nn::Module<Real>& model) {
  Index count = 0;
  for (auto& [name, module] : model.named_modules())
    if (auto* linear = dynamic_cast<const nn::Linear<Real>*>(module); linear && !linear->adapters().empty())
      ++count;
  return count;
}

// The adapter of type A attached to `layer`, or nullptr:
//   peft::attached_adapter<peft::LoraAdapter<float>>(net.query)->delta_weight()
template <class A, class Real>
A* attached_adapter(const nn::Linear<Real>& layer) {
  for (const auto& [name, adapter] : layer.adapters())
    if (auto* a = dynamic_cast<A*>(adapter.get())) return a;
  return nullptr;
}

// Dotted names of the parameters that LinearAdapter modules own ("layer.0.query.lora_A.weight"):
// what an adapter method trains besides modules_to_save.
template <class Real>
std::set<std::string> linear_adapter_parameters(const nn::Module<Real>& model) {
  std::set<std::string> names;
  for (const auto& [mname, module] : model.named_modules())
    if (dynamic_cast<const nn::LinearAdapter<Real>*>(module) != nullptr)
      for (const auto& [pname, p] : module->named_parameters())
        names.insert(mname.empty() ? pname : mname + "." + pname);
  return names;
}

}  // namespace fourierft::peft
