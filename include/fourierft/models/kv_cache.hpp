// fourierft/models/kv_cache.hpp — KvCache: every layer's keys and values of the tokens seen so far,
// for incremental decoding by any model; appending a token or reordering rows moves no key.
#pragma once

// How a model uses it (GPT2Model::forward does): once per forward pass, before its layers,
// append(mask) opens the T new positions of every row; then each attention layer l stores the
// keys and values of those positions (store) and reads all of them back, through layer_view(l)
// for a single new token (ops::step_attention_forward) or as gathered tensors otherwise
// (past_keys / past_values). The searches reorder rows between passes with select_rows.
//
// Layout, per layer:
//   key[l], value[l]: (slots, capacity, width): slot (p, t) holds position t of the row that was
//                     row p when position t was appended
//   source: (rows, capacity): row n's position t is in slot (source[n·capacity + t], t)
//   mask:   (rows, capacity): 1 token, 0 padding (attention_mask), per row and position
// Appending position t writes slot (n, t) for every row n, and every row appends the same t, so no
// slot is written twice. select_rows copies rows·length ints of `source` and `mask` and no key:
// continuing beam i from parent r[i] shares the parent's slots. (Gathering every layer's (N, T, C)
// keys and values instead, as HF's _reorder_cache does, moved 280 MB per step at GPT-2 small, 40
// beams of 96 tokens.) Storage is allocated at the first append for its T positions plus
// reserve(n) more, uninitialised, so only the slots written are ever touched; it grows (by
// copying) only if a caller goes past it. Inference only: nothing here carries a gradient.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/ops/attention.hpp"

namespace fourierft::models {

template <class Real>
class KvCache {
 public:
  std::vector<std::unique_ptr<Real[]>> key, value;  // per layer: (slots, capacity, width)

  Index layers() const { return static_cast<Index>(key.size()); }
  Index rows() const { return rows_; }
  Index length() const { return length_; }  // positions cached per row (padding included)
  Index capacity() const { return capacity_; }
  Index width() const { return width_; }        // values per position and layer (C for GPT-2)
  Index appended() const { return appended_; }  // T of the last append

  // Room for `positions` more positions beyond those of the first append (generation passes
  // max_new_tokens), so decoding never grows the storage.
  void reserve(Index positions) { reserve_ = positions; }
  void clear() {
    key.clear();
    value.clear();
    source_.clear();
    mask_.clear();
    rows_ = slots_ = capacity_ = length_ = width_ = appended_ = 0;
  }

  // Opens T new positions in every row; mask (N, T) of 1 / 0 marks them token / padding. The first
  // append after construction or clear() sizes the cache: N rows, `layers` layers of `width`
  // values per position.
  void append(const Tensor<std::int64_t>& mask, Index layers, Index width) {
    check<ShapeError>(mask.dim() == 2, "KvCache::append: mask must be (N, T), got ",
                      shape_str(mask.shape()));
    const Index N = mask.size(0), T = mask.size(1);
    if (key.empty()) {
      check<ShapeError>(layers > 0 && width > 0, "KvCache::append: ", layers, " layers of width ",
                        width);
      width_ = width;
      rows_ = slots_ = N;
      capacity_ = std::max(T + reserve_, T + 1);
      for (Index l = 0; l < layers; ++l) {
        key.push_back(allocate(slots_, capacity_));
        value.push_back(allocate(slots_, capacity_));
      }
      source_.assign(static_cast<std::size_t>(rows_ * capacity_), 0);
      mask_.assign(static_cast<std::size_t>(rows_ * capacity_), 0);
    }
    check<ShapeError>(N == rows_ && layers == this->layers() && width == width_,
                      "KvCache::append: ", N, " rows, ", layers, " layers of width ", width,
                      " for a cache of ", rows_, " rows, ", this->layers(), " layers of width ",
                      width_);
    if (length_ + T > capacity_) resize(slots_, std::max(2 * capacity_, length_ + T));
    for (Index n = 0; n < N; ++n)
      for (Index t = 0; t < T; ++t) {
        const auto at = static_cast<std::size_t>(n * capacity_ + length_ + t);
        source_[at] = static_cast<std::int32_t>(n);  // the new positions' slots are row n's own
        mask_[at] = mask[n * T + t];
      }
    length_ += T;
    appended_ = T;
  }

  // Layer l's keys and values of the appended positions: those of row n, new position t at
  // k + (n·T + t)·stride and v + (n·T + t)·stride, `width` values each (stride 3C for GPT-2's
  // packed [q | k | v] rows).
  void store(Index layer, const Real* k, const Real* v, Index stride) {
    const Index T = appended_, past = length_ - T;
    Real* keys = key.at(static_cast<std::size_t>(layer)).get();
    Real* values = value.at(static_cast<std::size_t>(layer)).get();
    for (Index n = 0; n < rows_; ++n)
      for (Index t = 0; t < T; ++t) {
        std::copy_n(k + (n * T + t) * stride, width_, slot(keys, n, past + t));
        std::copy_n(v + (n * T + t) * stride, width_, slot(values, n, past + t));
      }
  }

  // The key-padding mask over every cached position: (rows, length).
  Tensor<std::int64_t> key_padding_mask() const {
    Tensor<std::int64_t> out({rows_, length_});
    for (Index n = 0; n < rows_; ++n)
      std::copy_n(mask_.begin() + n * capacity_, length_, out.ptr() + n * length_);
    return out;
  }
  // Layer l's keys (values) of positions 0..count-1, gathered: (rows, count, width).
  Tensor<Real> past_keys(Index layer, Index count) const { return gather(key, layer, count); }
  Tensor<Real> past_values(Index layer, Index count) const { return gather(value, layer, count); }

  // Layer l as ops::step_attention_forward reads it.
  ops::SlottedKvView<Real> layer_view(Index layer) const {
    return {key.at(static_cast<std::size_t>(layer)).get(),
            value.at(static_cast<std::size_t>(layer)).get(),
            source_.data(),
            mask_.data(),
            rows_,
            capacity_,
            length_,
            width_};
  }

  // Row i continues old row r[i] in every layer: beam search continues each beam from its parent,
  // and expands B prompts into B · num_beams rows ({0, 0, 1, 1} for 2 beams).
  void select_rows(std::span<const Index> r) {
    if (length_ == 0) return;
    for (Index i : r)
      check<IndexError>(i >= 0 && i < rows_, "KvCache::select_rows: row ", i, " out of range for ",
                        rows_, " rows");
    const Index N = static_cast<Index>(r.size());
    std::vector<std::int32_t> source(static_cast<std::size_t>(N * capacity_), 0);
    std::vector<std::int64_t> mask(static_cast<std::size_t>(N * capacity_), 0);
    for (Index n = 0; n < N; ++n) {
      std::copy_n(source_.begin() + r[n] * capacity_, length_, source.begin() + n * capacity_);
      std::copy_n(mask_.begin() + r[n] * capacity_, length_, mask.begin() + n * capacity_);
    }
    source_ = std::move(source);
    mask_ = std::move(mask);
    rows_ = N;
    if (rows_ > slots_) resize(rows_, capacity_);  // row n appends into slot row n
  }

 private:
  Index rows_ = 0, slots_ = 0, capacity_ = 0, length_ = 0, width_ = 0, appended_ = 0;
  Index reserve_ = 0;
  std::vector<std::int32_t> source_;  // (rows, capacity)
  std::vector<std::int64_t> mask_;    // (rows, capacity)

  Real* slot(Real* storage, Index s, Index t) const {
    return storage + (s * capacity_ + t) * width_;
  }
  std::unique_ptr<Real[]> allocate(Index s, Index c) const {
    return std::make_unique_for_overwrite<Real[]>(static_cast<std::size_t>(s * c * width_));
  }
  Tensor<Real> gather(const std::vector<std::unique_ptr<Real[]>>& storage, Index layer,
                      Index count) const {
    const ops::SlottedKvView<Real> view = layer_view(layer);
    const Real* base = storage.at(static_cast<std::size_t>(layer)).get();
    Tensor<Real> out({rows_, count, width_});
    for (Index n = 0; n < rows_; ++n)
      for (Index t = 0; t < count; ++t)
        std::copy_n(base + view.offset(n, t), width_, out.ptr() + (n * count + t) * width_);
    return out;
  }
  void resize(Index new_slots, Index new_capacity) {
    auto move_layer = [&](std::unique_ptr<Real[]>& storage) {
      auto grown = allocate(new_slots, new_capacity);
      for (Index s = 0; s < slots_; ++s)
        std::copy_n(slot(storage.get(), s, 0), length_ * width_,
                    grown.get() + s * new_capacity * width_);
      storage = std::move(grown);
    };
    for (auto& s : key) move_layer(s);
    for (auto& s : value) move_layer(s);
    if (new_capacity != capacity_) {
      auto widen = [&](auto& table) {
        std::remove_reference_t<decltype(table)> wider(
            static_cast<std::size_t>(rows_ * new_capacity), 0);
        for (Index n = 0; n < rows_; ++n)
          std::copy_n(table.begin() + n * capacity_, length_, wider.begin() + n * new_capacity);
        table = std::move(wider);
      };
      widen(source_);
      widen(mask_);
    }
    slots_ = new_slots;
    capacity_ = new_capacity;
  }
};

}  // namespace fourierft::models
