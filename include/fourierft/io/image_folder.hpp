// fourierft/io/image_folder.hpp — ImageFolder: a `root/<class>/<file>` image dataset (torchvision's
// layout and order), batched into (B, 3, H, W) floats and int64 labels, eval or augmented.
#pragma once

#include <algorithm>
#include <cctype>
#include <exception>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/image.hpp"

namespace fourierft::io {

struct ImageBatch {
  Tensor<float> pixels;         // (B, 3, H, W), normalised
  Tensor<std::int64_t> labels;  // (B)
};

// Rows [begin, begin + count) of `batch` (a data-parallel rank's shard of a micro-batch).
inline ImageBatch batch_rows(const ImageBatch& batch, Index begin, Index count) {
  return {slice_rows(batch.pixels, begin, count), slice_rows(batch.labels, begin, count)};
}

// Classes are the sub-folders of root, sorted by name (label = position); each class holds the
// .png / .jpg / .jpeg files anywhere below its folder (extension case ignored), sorted by path,
// as torchvision's ImageFolder orders them. Images are decoded when a batch asks for them.
class ImageFolder {
 public:
  struct Item {
    std::filesystem::path path;
    std::int64_t label;
  };

  explicit ImageFolder(const std::filesystem::path& root) : root_(root) {
    namespace fs = std::filesystem;
    check<IoError>(fs::is_directory(root), "ImageFolder: '", root.string(), "' is not a folder");
    for (const auto& entry : fs::directory_iterator(root))
      if (entry.is_directory()) classes_.push_back(entry.path().filename().string());
    std::sort(classes_.begin(), classes_.end());
    check<FormatError>(!classes_.empty(), "ImageFolder: '", root.string(),
                       "' has no class folders (expected root/<class>/<image>)");
    for (std::size_t label = 0; label < classes_.size(); ++label) {
      std::vector<fs::path> files;
      for (const auto& entry : fs::recursive_directory_iterator(root / classes_[label]))
        if (entry.is_regular_file() && is_image_file(entry.path())) files.push_back(entry.path());
      std::sort(files.begin(), files.end());
      check<FormatError>(!files.empty(), "ImageFolder: class folder '",
                         (root / classes_[label]).string(), "' has no .png, .jpg or .jpeg files");
      for (auto& f : files) items_.push_back({std::move(f), static_cast<std::int64_t>(label)});
    }
  }

  const std::filesystem::path& root() const { return root_; }
  const std::vector<std::string>& classes() const { return classes_; }
  const std::vector<Item>& items() const { return items_; }
  Index size() const { return static_cast<Index>(items_.size()); }
  Image load(Index i) const { return read_image(item(i).path); }

  // Images `indices` through `processor`: eval transform when `augment` is null, else the train
  // transform with crops and flips drawn from *augment in index order (so the batch is the same
  // for any thread count). Decoding and resizing run in parallel (OpenMP).
  ImageBatch batch(std::span<const Index> indices, const ImageProcessor& processor,
                   Rng* augment = nullptr) const {
    const auto B = static_cast<Index>(indices.size());
    const Index H = processor.height, W = processor.width;
    ImageBatch out{Tensor<float>({B, 3, H, W}), Tensor<std::int64_t>({B})};
    for (Index b = 0; b < B; ++b) out.labels[b] = item(indices[static_cast<std::size_t>(b)]).label;
    std::vector<Image> images(static_cast<std::size_t>(B));
    run_parallel(B, [&](Index b) {
      images[static_cast<std::size_t>(b)] = load(indices[static_cast<std::size_t>(b)]);
    });
    std::vector<Augmentation> drawn;
    if (augment != nullptr)
      for (const Image& im : images)
        drawn.push_back(draw_augmentation(im.height, im.width, *augment));
    run_parallel(B, [&](Index b) {
      const Image& im = images[static_cast<std::size_t>(b)];
      std::span<float> dst = out.pixels.data().subspan(static_cast<std::size_t>(b * 3 * H * W),
                                                       static_cast<std::size_t>(3 * H * W));
      if (augment != nullptr) {
        processor.train(im, drawn[static_cast<std::size_t>(b)], dst);
      } else {
        check<ShapeError>(
            processor.do_resize || (im.height == H && im.width == W), "ImageFolder::batch: '",
            item(indices[static_cast<std::size_t>(b)]).path.string(), "' is ", im.height, " x ",
            im.width, " but do_resize is off and the batch is ", H, " x ", W);
        processor.eval(im, dst);
      }
    });
    return out;
  }

 private:
  static bool is_image_file(const std::filesystem::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
  }
  const Item& item(Index i) const {
    check<IndexError>(i >= 0 && i < size(), "ImageFolder: index ", i, " out of range for ", size(),
                      " images in '", root_.string(), "'");
    return items_[static_cast<std::size_t>(i)];
  }
  // f(b) for b in [0, n) over OpenMP threads. Exceptions cannot leave an OpenMP region: the one
  // of the lowest b is kept and rethrown here, so the error does not depend on thread timing.
  template <class F>
  static void run_parallel(Index n, F&& f) {
    std::exception_ptr error;
    Index error_at = n;
#pragma omp parallel for schedule(dynamic)
    for (Index b = 0; b < n; ++b) {
      try {
        f(b);
      } catch (...) {
#pragma omp critical(fourierft_image_folder_error)
        if (b < error_at) {
          error_at = b;
          error = std::current_exception();
        }
      }
    }
    if (error) std::rethrow_exception(error);
  }

  std::filesystem::path root_;
  std::vector<std::string> classes_;
  std::vector<Item> items_;
};

}  // namespace fourierft::io
