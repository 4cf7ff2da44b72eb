// examples/plot.hpp — just enough plotting for the study programs: an RGB image with lines,
// markers and text (stb_easy_font), heatmaps with a colormap and colorbar, line charts, PNG output.
#pragma once

// Everything draws into an Image (8-bit RGB, row-major, top row first) and write_png() saves it
// atomically. Typical use:
//   plot::Image map = plot::heatmap(values, rows, cols, {.title = "dW", .colormap = plot::Colormap::diverging});
//   plot::Image chart = plot::line_chart({{.label = "FourierFT", .x = n, .y = err}}, {.log_y = true});
//   plot::write_png("out/figure.png", plot::tile({map, chart}, 2));
// Text is ASCII only (other bytes print as '?'): stb_easy_font has glyphs for 32..126.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "stb_image_write.hpp"
#include "fourierft/util/atomic_file.hpp"

namespace fourierft::examples::plot {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};
inline constexpr Rgb white{255, 255, 255}, black{0, 0, 0}, gray{128, 128, 128},
    light_gray{225, 225, 225};
// Line colours for up to eight series (matplotlib's "tab10" order).
inline constexpr std::array<Rgb, 8> palette = {Rgb{31, 119, 180}, Rgb{255, 127, 14},
                                               Rgb{44, 160, 44},  Rgb{214, 39, 40},
                                               Rgb{148, 103, 189}, Rgb{140, 86, 75},
                                               Rgb{227, 119, 194}, Rgb{127, 127, 127}};

enum class Marker { none, circle, square, triangle, cross };

// ---------------------------------------------------------------------------
// Image: width x height RGB pixels; drawing outside the image is clipped silently.
class Image {
 public:
  Image() = default;
  Image(int width, int height, Rgb background = white) : width_(width), height_(height) {
    check(width > 0 && height > 0, "plot::Image: size ", width, " x ", height, " must be positive");
    pixels_.resize(static_cast<std::size_t>(width) * height * 3);
    fill_rect(0, 0, width, height, background);
  }
  int width() const { return width_; }
  int height() const { return height_; }
  const std::vector<std::uint8_t>& pixels() const { return pixels_; }

  void set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
    std::uint8_t* p = &pixels_[(static_cast<std::size_t>(y) * width_ + x) * 3];
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
  Rgb get(int x, int y) const {
    const std::uint8_t* p = &pixels_[(static_cast<std::size_t>(y) * width_ + x) * 3];
    return {p[0], p[1], p[2]};
  }
  void fill_rect(int x, int y, int w, int h, Rgb c) {
    for (int j = std::max(y, 0); j < std::min(y + h, height_); ++j)
      for (int i = std::max(x, 0); i < std::min(x + w, width_); ++i) set(i, j, c);
  }
  void frame_rect(int x, int y, int w, int h, Rgb c) {
    fill_rect(x, y, w, 1, c), fill_rect(x, y + h - 1, w, 1, c);
    fill_rect(x, y, 1, h, c), fill_rect(x + w - 1, y, 1, h, c);
  }
  // Bresenham's line, stamped with a thickness x thickness square pen; `dash` > 0 draws dashes of
  // that many steps with equal gaps.
  void line(int x0, int y0, int x1, int y1, Rgb c, int thickness = 1, int dash = 0) {
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy, step = 0;
    for (;;) {
      if (dash <= 0 || (step / dash) % 2 == 0)
        fill_rect(x0 - (thickness - 1) / 2, y0 - (thickness - 1) / 2, thickness, thickness, c);
      ++step;
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  }
  // A marker centred at (x, y), about `size` pixels across.
  void marker(int x, int y, Marker m, Rgb c, int size = 7) {
    const int r = size / 2;
    switch (m) {
      case Marker::none: break;
      case Marker::circle:
        for (int j = -r; j <= r; ++j)
          for (int i = -r; i <= r; ++i)
            if (i * i + j * j <= r * r + r) set(x + i, y + j, c);
        break;
      case Marker::square: fill_rect(x - r, y - r, 2 * r + 1, 2 * r + 1, c); break;
      case Marker::triangle:
        for (int j = -r; j <= r; ++j) {
          const int half = (j + r) / 2;  // widens downwards
          fill_rect(x - half, y + j, 2 * half + 1, 1, c);
        }
        break;
      case Marker::cross:
        line(x - r, y - r, x + r, y + r, c, 2);
        line(x - r, y + r, x + r, y - r, c, 2);
        break;
    }
  }
  // ASCII text with its top-left corner at (x, y), each font pixel drawn as scale x scale. With
  // `vertical`, the text reads bottom to top and (x, y) is its bottom-left corner.
  void text(int x, int y, const std::string& s, Rgb c = black, int scale = 1, bool vertical = false) {
    std::string ascii = sanitize(s);
    std::vector<char> quads(ascii.size() * 1024 + 64);  // 64 bytes per quad, <= 11 quads per glyph
    const int count = stb_easy_font_print(0, 0, ascii.data(), nullptr, quads.data(),
                                          static_cast<int>(quads.size()));
    for (int q = 0; q < count; ++q) {  // 4 vertices of 16 bytes: x, y floats first
      float v[2][2];
      std::memcpy(v[0], quads.data() + q * 64, 8);
      std::memcpy(v[1], quads.data() + q * 64 + 32, 8);  // the opposite corner
      for (int gy = static_cast<int>(v[0][1]) * scale; gy < static_cast<int>(v[1][1]) * scale; ++gy)
        for (int gx = static_cast<int>(v[0][0]) * scale; gx < static_cast<int>(v[1][0]) * scale; ++gx)
          vertical ? set(x + gy, y - gx, c) : set(x + gx, y + gy, c);
    }
  }
  static int text_width(const std::string& s, int scale = 1) {
    std::string ascii = sanitize(s);
    return stb_easy_font_width(ascii.data()) * scale;
  }
  static int text_height(int scale = 1) { return 8 * scale; }  // cap height 7, plus descenders
  // Copies `other` with its top-left corner at (x, y).
  void paste(const Image& other, int x, int y) {
    for (int j = 0; j < other.height(); ++j)
      for (int i = 0; i < other.width(); ++i) set(x + i, y + j, other.get(i, j));
  }

 private:
  static std::string sanitize(const std::string& s) {
    std::string out = s;
    for (char& ch : out)
      if (static_cast<unsigned char>(ch) < 32 || static_cast<unsigned char>(ch) > 126) ch = '?';
    return out;
  }
  int width_ = 0, height_ = 0;
  std::vector<std::uint8_t> pixels_;
};

// Writes `image` as an 8-bit RGB PNG, atomically (util/atomic_file.hpp); creates the folder.
inline void write_png(const std::filesystem::path& path, const Image& image) {
  check(image.width() > 0, "write_png: '", path.string(), "': the image is empty");
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::string bytes;
  stbi_write_png_compression_level = 9;  // stb's zlib; figures are committed, so smaller is better
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                               static_cast<std::size_t>(size));
  };
  const int ok = stbi_write_png_to_func(append, &bytes, image.width(), image.height(), 3,
                                        image.pixels().data(), image.width() * 3);
  check<IoError>(ok != 0 && !bytes.empty(), "write_png: cannot encode '", path.string(), "'");
  util::write_file_atomically(path, bytes);
}

// Panels laid out left to right, `columns` per row, `gap` pixels apart, on a white background.
inline Image tile(const std::vector<Image>& panels, int columns, int gap = 12) {
  check(!panels.empty() && columns > 0, "plot::tile: need at least one panel and one column");
  const int rows = (static_cast<int>(panels.size()) + columns - 1) / columns;
  std::vector<int> col_w(columns, 0), row_h(rows, 0);
  for (std::size_t k = 0; k < panels.size(); ++k) {
    col_w[k % columns] = std::max(col_w[k % columns], panels[k].width());
    row_h[k / columns] = std::max(row_h[k / columns], panels[k].height());
  }
  int width = gap, height = gap;
  for (int w : col_w) width += w + gap;
  for (int h : row_h) height += h + gap;
  Image out(width, height);
  int y = gap;
  for (int r = 0; r < rows; ++r) {
    int x = gap;
    for (int c = 0; c < columns && r * columns + c < static_cast<int>(panels.size()); ++c) {
      out.paste(panels[r * columns + c], x, y);
      x += col_w[c] + gap;
    }
    y += row_h[r] + gap;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Colormaps: t in [0, 1] -> colour, piecewise linear between a few anchors.
enum class Colormap {
  viridis,    // dark blue -> green -> yellow: magnitudes, probabilities
  diverging,  // blue -> white -> red, white at t = 0.5: signed values (weights, ΔW)
  gray_r,     // white -> black: densities on a white page
};

inline Rgb colormap(Colormap map, double t) {
  static constexpr std::array<Rgb, 9> viridis = {
      Rgb{68, 1, 84},    Rgb{72, 40, 120},  Rgb{62, 73, 137},  Rgb{49, 104, 142}, Rgb{38, 130, 142},
      Rgb{31, 158, 137}, Rgb{53, 183, 121}, Rgb{110, 206, 88}, Rgb{253, 231, 37}};
  static constexpr std::array<Rgb, 5> diverging = {Rgb{33, 102, 172}, Rgb{103, 169, 207},
                                                   Rgb{247, 247, 247}, Rgb{239, 138, 98},
                                                   Rgb{178, 24, 43}};
  static constexpr std::array<Rgb, 2> gray_r = {white, black};
  auto lerp = [&](std::span<const Rgb> anchors) {
    const double x = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * double(anchors.size() - 1);
    const std::size_t i = std::min(static_cast<std::size_t>(x), anchors.size() - 2);
    const double f = x - double(i);
    auto mix = [&](std::uint8_t a, std::uint8_t b) {
      return static_cast<std::uint8_t>(std::lround(a + f * (double(b) - double(a))));
    };
    return Rgb{mix(anchors[i].r, anchors[i + 1].r), mix(anchors[i].g, anchors[i + 1].g),
               mix(anchors[i].b, anchors[i + 1].b)};
  };
  switch (map) {
    case Colormap::viridis: return lerp(viridis);
    case Colormap::diverging: return lerp(diverging);
    case Colormap::gray_r: return lerp(gray_r);
  }
  return black;
}

// A short number for tick labels: whole numbers as such, else 3 significant digits ("0.25", "1e-05").
inline std::string format_number(double v) {
  char buf[32];
  if (v == std::round(v) && std::abs(v) < 1e6)
    std::snprintf(buf, sizeof buf, "%.0f", v);  // 0, 200, 16384
  else if (std::abs(v) >= 1e-3 && std::abs(v) < 1e6)
    std::snprintf(buf, sizeof buf, "%.3g", v);  // 0.25, 3.14
  else
    std::snprintf(buf, sizeof buf, "%.2g", v);  // 1e-05, 2.5e+07
  return buf;
}

// (rows, cols) -> the same with the zero frequency moved to the centre (numpy.fft.fftshift):
// out[(p + rows/2) % rows, (q + cols/2) % cols] = in[p, q].
inline std::vector<double> fftshift(std::span<const double> in, Index rows, Index cols) {
  check<ShapeError>(static_cast<Index>(in.size()) == rows * cols, "fftshift: ", in.size(),
                    " values are not a (", rows, ", ", cols, ") matrix");
  std::vector<double> out(in.size());
  for (Index p = 0; p < rows; ++p)
    for (Index q = 0; q < cols; ++q)
      out[((p + rows / 2) % rows) * cols + (q + cols / 2) % cols] = in[p * cols + q];
  return out;
}

// ---------------------------------------------------------------------------
// heatmap: a (rows, cols) row-major matrix as an image, row 0 at the top, with a title above and
// a colorbar on the right. Larger matrices are block-averaged down to at most `side` pixels per
// side; smaller ones are enlarged by an integer factor to about `side`.
struct HeatmapOptions {
  std::string title;
  Colormap colormap = Colormap::viridis;
  std::optional<double> vmin, vmax;  // default: the data's range (diverging: ±max |v|)
  int side = 256;
  bool colorbar = true;
  std::string colorbar_label;        // e.g. "log10 |F|"
};

inline Image heatmap(std::span<const double> values, Index rows, Index cols,
                     const HeatmapOptions& o = {}) {
  check<ShapeError>(rows > 0 && cols > 0 && static_cast<Index>(values.size()) == rows * cols,
                    "plot::heatmap: ", values.size(), " values are not a (", rows, ", ", cols,
                    ") matrix");
  check(o.side > 0, "plot::heatmap: side must be positive, got ", o.side);
  // Pixel grid: block-average by `shrink`, or enlarge by `zoom`.
  const Index longest = std::max(rows, cols);
  const Index shrink = longest > o.side ? (longest + o.side - 1) / o.side : 1;
  const Index zoom = longest < o.side ? std::max<Index>(1, o.side / longest) : 1;
  const Index h = (rows + shrink - 1) / shrink, w = (cols + shrink - 1) / shrink;
  std::vector<double> cell(static_cast<std::size_t>(h * w), 0.0), count(cell.size(), 0.0);
  for (Index p = 0; p < rows; ++p)
    for (Index q = 0; q < cols; ++q) {
      const double v = values[p * cols + q];
      if (!std::isfinite(v)) continue;
      cell[(p / shrink) * w + q / shrink] += v;
      count[(p / shrink) * w + q / shrink] += 1;
    }
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (std::size_t i = 0; i < cell.size(); ++i) {
    cell[i] = count[i] > 0 ? cell[i] / count[i] : std::numeric_limits<double>::quiet_NaN();
    if (std::isfinite(cell[i])) lo = std::min(lo, cell[i]), hi = std::max(hi, cell[i]);
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (o.colormap == Colormap::diverging) hi = std::max(std::abs(lo), std::abs(hi)), lo = -hi;
  lo = o.vmin.value_or(lo), hi = o.vmax.value_or(hi);
  if (!(hi > lo)) hi = lo + 1;

  const int map_w = static_cast<int>(w * zoom), map_h = static_cast<int>(h * zoom);
  const std::string labels[3] = {format_number(hi), format_number((lo + hi) / 2), format_number(lo)};
  int label_w = 0;
  for (const std::string& l : labels) label_w = std::max(label_w, Image::text_width(l));
  const int top = o.title.empty() ? 4 : 18;
  const int bar_w = o.colorbar ? 28 + label_w + (o.colorbar_label.empty() ? 0 : 14) : 0;
  Image img(std::max(map_w + bar_w + 8, Image::text_width(o.title) + 8), map_h + top + 6);
  img.text(4, 4, o.title);
  for (Index i = 0; i < h; ++i)
    for (Index j = 0; j < w; ++j) {
      const double v = cell[i * w + j];
      const Rgb c = std::isfinite(v) ? colormap(o.colormap, (v - lo) / (hi - lo)) : light_gray;
      img.fill_rect(4 + static_cast<int>(j * zoom), top + static_cast<int>(i * zoom),
                    static_cast<int>(zoom), static_cast<int>(zoom), c);
    }
  if (o.colorbar) {  // a vertical bar, hi at the top, labelled at both ends and the middle
    const int x = map_w + 12, bar_h = map_h;
    for (int y = 0; y < bar_h; ++y)
      img.fill_rect(x, top + y, 10, 1, colormap(o.colormap, 1.0 - double(y) / std::max(1, bar_h - 1)));
    img.frame_rect(x, top, 10, bar_h, gray);
    img.text(x + 14, top, labels[0]);
    img.text(x + 14, top + bar_h / 2 - 4, labels[1]);
    img.text(x + 14, top + bar_h - 8, labels[2]);
    if (!o.colorbar_label.empty())  // vertical, centred on the bar
      img.text(x + 18 + label_w, top + bar_h / 2 + Image::text_width(o.colorbar_label) / 2,
               o.colorbar_label, gray, 1, true);
  }
  return img;
}

// ---------------------------------------------------------------------------
// line_chart: series of (x, y) points joined by lines, on linear or logarithmic axes, with ticks,
// axis labels, a title and a legend. Points that are not finite (or not positive on a log axis)
// are skipped and break the line.
struct Series {
  std::string label;
  std::vector<double> x, y;
  std::optional<Rgb> color;  // default: palette[index of the series]
  Marker marker = Marker::circle;
  bool line = true;
  bool dashed = false;
};

enum class Legend { top_right, top_left, bottom_right, bottom_left, none };

struct ChartOptions {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  std::optional<double> x_min, x_max, y_min, y_max;
  int width = 640, height = 420;
  Legend legend = Legend::top_right;
  int marker_size = 7;
};

namespace detail {
struct Axis {
  double lo, hi;
  bool log;
  double f(double v) const { return log ? std::log10(v) : v; }
  bool usable(double v) const { return std::isfinite(v) && (!log || v > 0); }
};

// Tick positions: decades on a log axis (with 2 and 5 when it spans less than two decades), else
// multiples of 1, 2 or 5 x 10^k giving about six ticks.
inline std::vector<double> ticks(const Axis& a) {
  std::vector<double> out;
  if (a.log) {
    const double lo = std::log10(a.lo), hi = std::log10(a.hi);
    const bool fine = hi - lo < 2;
    for (int k = static_cast<int>(std::floor(lo)); k <= static_cast<int>(std::ceil(hi)); ++k)
      for (double m : fine ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
        const double v = m * std::pow(10.0, k);
        if (v >= a.lo * (1 - 1e-9) && v <= a.hi * (1 + 1e-9)) out.push_back(v);
      }
    if (out.size() > 12) {  // many decades: every other one
      std::vector<double> thin;
      for (std::size_t i = 0; i < out.size(); i += 2) thin.push_back(out[i]);
      out = thin;
    }
    return out;
  }
  const double raw = (a.hi - a.lo) / 6, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  for (double v = std::ceil(a.lo / step) * step; v <= a.hi + 1e-9 * step; v += step)
    out.push_back(std::abs(v) < 1e-12 * step ? 0.0 : v);
  return out;
}

// The axis range covering the data (or the given limits), padded a little.
inline Axis fit_axis(const std::vector<const std::vector<double>*>& data, bool log,
                     std::optional<double> lo_given, std::optional<double> hi_given) {
  Axis a{std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(), log};
  for (const auto* values : data)
    for (double v : *values)
      if (a.usable(v)) a.lo = std::min(a.lo, v), a.hi = std::max(a.hi, v);
  if (!std::isfinite(a.lo)) a.lo = log ? 0.1 : 0, a.hi = log ? 1 : 1;
  if (a.hi == a.lo) a.lo = log ? a.lo / 2 : a.lo - 1, a.hi = log ? a.hi * 2 : a.hi + 1;
  if (log) {
    const double pad = std::pow(a.hi / a.lo, 0.04);
    a.lo /= pad, a.hi *= pad;
  } else {
    const double pad = 0.04 * (a.hi - a.lo);
    a.lo -= pad, a.hi += pad;
  }
  a.lo = lo_given.value_or(a.lo), a.hi = hi_given.value_or(a.hi);
  check(a.hi > a.lo && (!log || a.lo > 0), "plot::line_chart: empty or invalid axis range [",
        a.lo, ", ", a.hi, "]", log ? " on a log axis" : "");
  return a;
}
}  // namespace detail

inline Image line_chart(const std::vector<Series>& series, const ChartOptions& o = {}) {
  check(!series.empty(), "plot::line_chart: no series to draw");
  std::vector<const std::vector<double>*> xs, ys;
  for (const Series& s : series) {
    check<ShapeError>(s.x.size() == s.y.size(), "plot::line_chart: series '", s.label, "' has ",
                      s.x.size(), " x values but ", s.y.size(), " y values");
    xs.push_back(&s.x), ys.push_back(&s.y);
  }
  const detail::Axis ax = detail::fit_axis(xs, o.log_x, o.x_min, o.x_max);
  const detail::Axis ay = detail::fit_axis(ys, o.log_y, o.y_min, o.y_max);

  Image img(o.width, o.height);
  const int left = 62, right = 16, top = o.title.empty() ? 12 : 28, bottom = 44;
  const int pw = o.width - left - right, ph = o.height - top - bottom;
  check(pw > 50 && ph > 50, "plot::line_chart: ", o.width, " x ", o.height, " is too small");
  auto px = [&](double x) {
    return left + static_cast<int>(std::lround((ax.f(x) - ax.f(ax.lo)) / (ax.f(ax.hi) - ax.f(ax.lo)) * pw));
  };
  auto py = [&](double y) {
    return top + ph - static_cast<int>(std::lround((ay.f(y) - ay.f(ay.lo)) / (ay.f(ay.hi) - ay.f(ay.lo)) * ph));
  };
  // Grid, ticks and tick labels.
  for (double t : detail::ticks(ax)) {
    const int x = px(t);
    img.fill_rect(x, top, 1, ph, light_gray);
    img.fill_rect(x, top + ph, 1, 5, black);
    const std::string label = format_number(t);
    img.text(x - Image::text_width(label) / 2, top + ph + 8, label);
  }
  for (double t : detail::ticks(ay)) {
    const int y = py(t);
    img.fill_rect(left, y, pw, 1, light_gray);
    img.fill_rect(left - 5, y, 5, 1, black);
    const std::string label = format_number(t);
    img.text(left - 8 - Image::text_width(label), y - 4, label);
  }
  img.frame_rect(left, top, pw + 1, ph + 1, black);
  if (!o.title.empty()) img.text(left + pw / 2 - Image::text_width(o.title) / 2, 8, o.title);
  img.text(left + pw / 2 - Image::text_width(o.x_label) / 2, o.height - 16, o.x_label);
  img.text(8, top + ph / 2 + Image::text_width(o.y_label) / 2, o.y_label, black, 1, true);

  // Series: lines first, then markers on top, clipped to the plot area.
  Image plot_area(pw + 1, ph + 1);
  for (int j = 0; j <= ph; ++j)
    for (int i = 0; i <= pw; ++i) plot_area.set(i, j, img.get(left + i, top + j));
  for (std::size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    const Rgb c = s.color.value_or(palette[k % palette.size()]);
    bool joined = false;  // is there a previous point to join?
    int x_prev = 0, y_prev = 0;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!ax.usable(s.x[i]) || !ay.usable(s.y[i])) {
        joined = false;
        continue;
      }
      const int x = px(s.x[i]) - left, y = py(s.y[i]) - top;
      if (s.line && joined) plot_area.line(x_prev, y_prev, x, y, c, 2, s.dashed ? 5 : 0);
      joined = true, x_prev = x, y_prev = y;
    }
    for (std::size_t i = 0; i < s.x.size(); ++i)
      if (ax.usable(s.x[i]) && ay.usable(s.y[i]))
        plot_area.marker(px(s.x[i]) - left, py(s.y[i]) - top, s.marker, c, o.marker_size);
  }
  img.paste(plot_area, left, top);
  img.frame_rect(left, top, pw + 1, ph + 1, black);

  // Legend: a framed box in the chosen corner, one row per labelled series.
  if (o.legend != Legend::none) {
    int rows = 0, text_w = 0;
    for (const Series& s : series)
      if (!s.label.empty()) ++rows, text_w = std::max(text_w, Image::text_width(s.label));
    if (rows > 0) {
      const int bw = text_w + 44, bh = rows * 14 + 8;
      const bool right_side = o.legend == Legend::top_right || o.legend == Legend::bottom_right;
      const bool top_side = o.legend == Legend::top_right || o.legend == Legend::top_left;
      const int bx = right_side ? left + pw - bw - 8 : left + 8;
      const int by = top_side ? top + 8 : top + ph - bh - 8;
      img.fill_rect(bx, by, bw, bh, white);
      img.frame_rect(bx, by, bw, bh, gray);
      int row = 0;
      for (std::size_t k = 0; k < series.size(); ++k) {
        const Series& s = series[k];
        if (s.label.empty()) continue;
        const Rgb c = s.color.value_or(palette[k % palette.size()]);
        const int y = by + 10 + row * 14;
        if (s.line) img.line(bx + 6, y, bx + 30, y, c, 2, s.dashed ? 5 : 0);
        img.marker(bx + 18, y, s.marker, c, o.marker_size);
        img.text(bx + 36, y - 4, s.label);
        ++row;
      }
    }
  }
  return img;
}

}  // namespace fourierft::examples::plot
