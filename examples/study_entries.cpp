// study_entries — where FourierFT's n spectral coefficients live: PEFT's uniform entries against
// the paper's frequency-biased entries (eq. 5), on the paper's 768 x 768 spectrum.
//
// Shows (the paper's Figure 3 and what it implies):
//   1. the eq. 5 sampling probability p(u, v) = exp(-((D^2 - f_c^2) / (D W))^2) for f_c = 0, 100,
//      200, 300, 400 at band width W = 200, fftshift-ed so the zero frequency is at the centre;
//   2. the same as a profile p(D) against the distance D from the zero frequency;
//   3. the n = 1000 entries actually drawn: PEFT's uniform randperm (seed 777) and eq. 5 for each
//      f_c, with the circle D = f_c drawn in.
//
// Run:   ./build/examples/study_entries [--out out/study_entries] [--d 768] [--n 1000] [--W 200]
//                                       [--fc 0,100,200,300,400] [--seed 777] [--small]
//        --small: a 96 x 96 spectrum, n = 200, W = 25, f_c scaled by 96/768 (what CTest runs).
// Writes (into --out):
//   probability_maps.png   eq. 5 maps, one panel per f_c         band_pass_profile.png  p(D)
//   sampled_entries.png    the drawn entries, uniform + one panel per f_c
//   band_pass_profile.csv  D, p for each f_c                      sampled_entries.csv   every entry
//   summary.csv            per sampler: mean distance of the drawn entries vs the distribution's,
//                          how many drawn pairs are mirror images (−u, −v) (the same cosine), how
//                          many distinct row frequencies |u'| were drawn, and the rank of a ΔW
//                          with these entries and random coefficients
// Expect: f_c = 0 is a low-pass disc of radius ~W; larger f_c give rings of radius f_c and width
// ~W. Uniform entries cover the whole spectrum (mean D ~ 0.38·d for a square d x d); each biased
// sampler's mean D matches its distribution's mean within a few percent. Mirrored pairs (the same
// cosine twice) are rare at this size: a handful of the 1000 (uniform: about n²/(2·d²) ~ 1
// expected). A ΔW from 1000 uniform entries has rank 676 of 768, not full: it is bounded by twice
// the number of distinct row (and column) frequencies drawn, 356 here. About 10 s (the SVDs).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numbers>
#include <set>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "fourierft/core/error.hpp"
#include "fourierft/peft/entries.hpp"
#include "fourierft/peft/fourierft_op.hpp"
#include "fourierft/util/args.hpp"
#include "fourierft/util/atomic_file.hpp"
#include "plot.hpp"

using namespace fourierft;
namespace plot = fourierft::examples::plot;

namespace {
// Signed frequency of index u in a length-d DFT (what eq. 5 measures distance with).
double signed_frequency(Index u, Index d) { return static_cast<double>(u <= d / 2 ? u : u - d); }

// "0,100,200" -> {0, 100, 200}
std::vector<double> parse_list(const std::string& text) {
  std::vector<double> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    char* end = nullptr;
    out.push_back(std::strtod(item.c_str(), &end));
    check(!item.empty() && *end == '\0', "--fc: '", item, "' is not a number (in '", text, "')");
    start = comma + 1;
  }
  return out;
}

// One sampler's entries drawn as dots on the fftshift-ed spectrum, `side` pixels square.
plot::Image scatter(const peft::SpectralEntries& e, double fc, const std::string& title, int side) {
  const int top = 18, pad = 4;
  plot::Image img(side + 2 * pad, side + top + pad);
  img.text(pad, 4, title);
  img.frame_rect(pad - 1, top - 1, side + 2, side + 2, plot::gray);
  auto to_px = [&](double f, Index d) {  // signed frequency -> pixel, zero frequency at the centre
    return static_cast<int>(std::floor((f + static_cast<double>(d / 2)) * side / static_cast<double>(d)));
  };
  if (fc > 0)  // the circle D = f_c, where eq. 5 peaks
    for (int k = 0; k < 720; ++k) {
      const double a = 2 * std::numbers::pi * k / 720;
      img.set(pad + to_px(fc * std::cos(a), e.d_in), top + to_px(fc * std::sin(a), e.d_out),
              plot::Rgb{240, 160, 160});
    }
  img.fill_rect(pad + side / 2, top, 1, side, plot::light_gray);  // axes through zero frequency
  img.fill_rect(pad, top + side / 2, side, 1, plot::light_gray);
  for (Index l = 0; l < e.n(); ++l) {
    const int x = pad + to_px(signed_frequency(e.cols[l], e.d_in), e.d_in);
    const int y = top + to_px(signed_frequency(e.rows[l], e.d_out), e.d_out);
    img.fill_rect(x - 1, y - 1, 2, 2, plot::palette[0]);
  }
  return img;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    // ---- options ---------------------------------------------------------------------------
    util::Args args(argc, argv, {"--small"});
    const bool small = args.has("--small");
    const Index d = args.integer("--d", small ? 96 : 768);
    const Index n = args.integer("--n", small ? 200 : 1000);
    const double W = args.real("--W", small ? 25.0 : 200.0);
    std::vector<double> fcs = parse_list(args.str("--fc", "0,100,200,300,400"));
    if (small && !args.has("--fc"))
      for (double& fc : fcs) fc *= static_cast<double>(d) / 768.0;
    const std::uint64_t seed = static_cast<std::uint64_t>(args.integer("--seed", 777));
    const std::filesystem::path out = args.str("--out", "out/study_entries");
    args.reject_unknown();
    check(d >= 8, "--d must be at least 8, got ", d);
    std::filesystem::create_directories(out);
    std::printf("spectrum %lld x %lld, n = %lld entries, W = %g, seed %llu -> %s\n", (long long)d,
                (long long)d, (long long)n, W, (unsigned long long)seed, out.c_str());

    // ---- 1. eq. 5 probability maps, zero frequency at the centre --------------------------
    std::vector<plot::Image> maps;
    std::vector<double> expected_mean_D;  // of the normalised distribution, for step 3
    for (std::size_t k = 0; k < fcs.size(); ++k) {
      std::vector<double> p(static_cast<std::size_t>(d * d));
      double mass = 0, moment = 0;
      for (Index u = 0; u < d; ++u)
        for (Index v = 0; v < d; ++v) {
          const double pr = peft::band_pass_probability(u, v, d, d, fcs[k], W);
          p[u * d + v] = pr;
          mass += pr;
          moment += pr * std::hypot(signed_frequency(u, d), signed_frequency(v, d));
        }
      expected_mean_D.push_back(moment / mass);
      maps.push_back(plot::heatmap(plot::fftshift(p, d, d), d, d,
                                   {.title = "eq. 5: f_c = " + plot::format_number(fcs[k]) +
                                             ", W = " + plot::format_number(W),
                                    .vmin = 0.0, .vmax = 1.0, .side = 160,
                                    .colorbar = k + 1 == fcs.size(),
                                    .colorbar_label = "p(u,v)"}));
    }
    plot::write_png(out / "probability_maps.png", plot::tile(maps, static_cast<int>(maps.size())));

    // ---- 2. the profile p(D) ----------------------------------------------------------------
    const double D_max = std::sqrt(2.0) * static_cast<double>(d / 2);
    std::vector<double> D;
    for (int i = 0; i <= 400; ++i) D.push_back(D_max * i / 400.0);
    std::vector<plot::Series> profile;
    for (double fc : fcs) {
      plot::Series s{.label = "f_c = " + plot::format_number(fc), .x = D, .marker = plot::Marker::none};
      for (double dist : D) {  // eq. 5 written out in D; at D = 0 its limit (1 if f_c = 0, else 0)
        const double z = dist > 0 ? (dist * dist - fc * fc) / (dist * W) : 0.0;
        s.y.push_back(dist > 0 ? std::exp(-z * z) : (fc == 0 ? 1.0 : 0.0));
      }
      profile.push_back(std::move(s));
    }
    plot::write_png(out / "band_pass_profile.png",
                    plot::line_chart(profile, {.title = "eq. 5 sampling weight against distance from the zero frequency",
                                               .x_label = "D = |(u', v')|  (signed frequencies)",
                                               .y_label = "p", .y_min = 0.0, .y_max = 1.05}));
    util::write_file_atomically(out / "band_pass_profile.csv", [&](std::ostream& csv) {
      csv << "D";
      for (double fc : fcs) csv << ",p_fc" << fc;
      csv << "\n";
      for (std::size_t i = 0; i < D.size(); ++i) {
        csv << D[i];
        for (const plot::Series& s : profile) csv << "," << s.y[i];
        csv << "\n";
      }
    });

    // ---- 3. the n entries drawn: uniform (PEFT) and eq. 5 per f_c ---------------------------
    struct Sampler {
      std::string name;
      double fc;  // NaN for uniform
      peft::SpectralEntries entries;
    };
    std::vector<Sampler> samplers;
    samplers.push_back({"uniform", std::nan(""), peft::uniform_entries(d, d, n, seed)});
    for (double fc : fcs)
      samplers.push_back({"band_pass", fc, peft::frequency_biased_entries(d, d, n, fc, W, seed)});

    // The uniform distribution's mean distance, exactly: every position equally likely.
    double uniform_mean_D = 0;
    for (Index u = 0; u < d; ++u)
      for (Index v = 0; v < d; ++v)
        uniform_mean_D += std::hypot(signed_frequency(u, d), signed_frequency(v, d));
    uniform_mean_D /= static_cast<double>(d * d);

    std::vector<plot::Image> scatters;
    std::string summary =
        "sampler,fc,W,n,mean_D,expected_mean_D,median_D,mirrored_pairs,distinct_abs_u,rank_dW\n";
    std::printf("%-10s %8s %12s %14s %10s %15s %12s %10s\n", "sampler", "f_c", "mean D", "expected D",
                "median D", "mirrored pairs", "distinct |u|", "rank dW");
    for (std::size_t k = 0; k < samplers.size(); ++k) {
      const Sampler& s = samplers[k];
      std::vector<double> dist;
      for (Index l = 0; l < n; ++l)
        dist.push_back(std::hypot(signed_frequency(s.entries.rows[l], d),
                                  signed_frequency(s.entries.cols[l], d)));
      double mean = 0;
      for (double x : dist) mean += x / static_cast<double>(n);
      std::nth_element(dist.begin(), dist.begin() + n / 2, dist.end());
      const double median = dist[static_cast<std::size_t>(n / 2)];
      // Entries whose mirror (−u, −v) was drawn too: the same cosine, a wasted coefficient.
      std::set<Index> drawn;
      for (Index l = 0; l < n; ++l) drawn.insert(s.entries.rows[l] * d + s.entries.cols[l]);
      Index mirrored = 0;
      for (Index l = 0; l < n; ++l) {
        const Index mu = (d - s.entries.rows[l]) % d, mv = (d - s.entries.cols[l]) % d;
        if (mu * d + mv != s.entries.rows[l] * d + s.entries.cols[l] && drawn.count(mu * d + mv)) ++mirrored;
      }
      const double expected = k == 0 ? uniform_mean_D : expected_mean_D[k - 1];
      // The rank of a ΔW with these entries and N(0, 1) coefficients (scale 1: rank ignores it).
      // Each cosine has rank <= 2, and the column space is spanned by cos and sin of the distinct
      // row frequencies |u'| present, so entries that repeat frequencies give a lower rank.
      Rng coeff_rng(seed + 1);
      std::vector<double> c(static_cast<std::size_t>(n)), dW(static_cast<std::size_t>(d * d));
      for (double& x : c) x = coeff_rng.normal();
      peft::fourierft_delta_forward<double>(dW, c, s.entries, 1.0);
      using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      const Eigen::VectorXd sv = Eigen::BDCSVD<Matrix>(Eigen::Map<const Matrix>(dW.data(), d, d)).singularValues();
      const Index rank = (sv.array() > 1e-10 * sv[0]).count();
      std::set<Index> row_frequencies;  // distinct |u'|: the rank is at most about twice this
      for (Index l = 0; l < n; ++l) row_frequencies.insert(static_cast<Index>(std::abs(signed_frequency(s.entries.rows[l], d))));
      summary += str_cat(s.name, ",", s.fc, ",", W, ",", n, ",", mean, ",", expected, ",", median, ",",
                         mirrored / 2, ",", row_frequencies.size(), ",", rank, "\n");
      std::printf("%-10s %8s %12.1f %14.1f %10.1f %15lld %12zu %10lld\n", s.name.c_str(),
                  k == 0 ? "-" : plot::format_number(s.fc).c_str(), mean, expected, median,
                  (long long)(mirrored / 2), row_frequencies.size(), (long long)rank);
      scatters.push_back(scatter(s.entries, k == 0 ? 0.0 : s.fc,
                                 k == 0 ? "uniform (PEFT randperm, seed " + std::to_string(seed) + ")"
                                        : "eq. 5, f_c = " + plot::format_number(s.fc),
                                 192));
    }
    util::write_file_atomically(out / "summary.csv", summary);
    util::write_file_atomically(out / "sampled_entries.csv", [&](std::ostream& csv) {
      csv << "sampler,fc,l,row,col,u_signed,v_signed,D\n";
      for (const Sampler& s : samplers)
        for (Index l = 0; l < n; ++l) {
          const double u = signed_frequency(s.entries.rows[l], d), v = signed_frequency(s.entries.cols[l], d);
          csv << s.name << "," << s.fc << "," << l << "," << s.entries.rows[l] << ","
              << s.entries.cols[l] << "," << u << "," << v << "," << std::hypot(u, v) << "\n";
        }
    });
    plot::write_png(out / "sampled_entries.png", plot::tile(scatters, 3));
    std::printf("wrote probability_maps.png, band_pass_profile.png, sampled_entries.png and 3 CSVs\n");
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "study_entries: %s\n", e.what());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    std::fprintf(stderr, "study_entries: %s\n", e.what());
    return 1;
  }
}
