// fourierft/metrics/classification.hpp — the GLUE metrics: accuracy, F1 (positive class 1),
// Matthews correlation (CoLA), Pearson and Spearman correlation (STS-B).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <span>
#include <vector>

#include "fourierft/core/error.hpp"

namespace fourierft::metrics {

namespace detail {

template <class T>
void check_pairs(const char* metric, std::span<const T> pred, std::span<const T> label) {
  check(pred.size() == label.size(), metric, ": ", pred.size(), " predictions but ", label.size(),
        " labels");
  check(!pred.empty(), metric, ": no predictions");
}

}  // namespace detail

// Fraction of predictions equal to their label.
inline double accuracy(std::span<const std::int64_t> pred, std::span<const std::int64_t> label) {
  detail::check_pairs("accuracy", pred, label);
  std::size_t right = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) right += pred[i] == label[i];
  return static_cast<double>(right) / static_cast<double>(pred.size());
}

// Binary F1 of class 1 (MRPC, QQP): F1 = 2 TP / (2 TP + FP + FN), 0 when there is no positive
// prediction nor label (sklearn's zero_division=0). Labels must be 0 or 1.
inline double f1_binary(std::span<const std::int64_t> pred, std::span<const std::int64_t> label) {
  detail::check_pairs("f1_binary", pred, label);
  double tp = 0, fp = 0, fn = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) {
    check((pred[i] == 0 || pred[i] == 1) && (label[i] == 0 || label[i] == 1), "f1_binary: entry ",
          i, " has prediction ", pred[i], " and label ", label[i], "; expected 0 or 1");
    tp += pred[i] == 1 && label[i] == 1;
    fp += pred[i] == 1 && label[i] == 0;
    fn += pred[i] == 0 && label[i] == 1;
  }
  const double denom = 2 * tp + fp + fn;
  return denom == 0 ? 0.0 : 2 * tp / denom;
}

// Matthews correlation (CoLA) for any number of classes, as sklearn's matthews_corrcoef: with
// C the confusion matrix, t_k / p_k the true / predicted counts of class k, c = trace(C), s = n,
//   MCC = (c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2)),
// and 0 when a factor under the root is 0 (e.g. every prediction in one class).
inline double matthews_corrcoef(std::span<const std::int64_t> pred,
                                std::span<const std::int64_t> label) {
  detail::check_pairs("matthews_corrcoef", pred, label);
  std::map<std::int64_t, double> p, t;
  double c = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) {
    p[pred[i]] += 1;
    t[label[i]] += 1;
    c += pred[i] == label[i];
  }
  const double s = static_cast<double>(pred.size());
  double pt = 0, pp = 0, tt = 0;
  for (const auto& [k, v] : p) {
    pp += v * v;
    if (auto it = t.find(k); it != t.end()) pt += v * it->second;
  }
  for (const auto& [k, v] : t) tt += v * v;
  const double cov_pp = s * s - pp, cov_tt = s * s - tt;
  if (cov_pp == 0 || cov_tt == 0) return 0.0;
  return (c * s - pt) / std::sqrt(cov_pp * cov_tt);
}

// Pearson correlation r = sum (x - mx)(y - my) / sqrt(sum (x - mx)^2 sum (y - my)^2).
// A constant input has no correlation: NaN, as numpy and scipy return.
inline double pearson(std::span<const double> x, std::span<const double> y) {
  detail::check_pairs("pearson", x, y);
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (sxx == 0 || syy == 0) return std::numeric_limits<double>::quiet_NaN();
  return std::clamp(sxy / std::sqrt(sxx * syy), -1.0, 1.0);
}

// Ranks 1..n; tied values share the average of their ranks (scipy.stats.rankdata 'average').
inline std::vector<double> average_ranks(std::span<const double> x) {
  std::vector<std::size_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
  std::vector<double> rank(x.size());
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    while (j + 1 < order.size() && x[order[j + 1]] == x[order[i]]) ++j;
    const double r = (static_cast<double>(i) + static_cast<double>(j)) / 2 + 1;
    for (std::size_t k = i; k <= j; ++k) rank[order[k]] = r;
    i = j + 1;
  }
  return rank;
}

// Spearman correlation: Pearson of the average ranks (scipy.stats.spearmanr).
inline double spearman(std::span<const double> x, std::span<const double> y) {
  detail::check_pairs("spearman", x, y);
  for (std::size_t i = 0; i < x.size(); ++i)
    check(!std::isnan(x[i]) && !std::isnan(y[i]), "spearman: entry ", i, " is NaN");
  const auto rx = average_ranks(x), ry = average_ranks(y);
  return pearson(rx, ry);
}

}  // namespace fourierft::metrics
