// fourierft/io/image_batches.hpp — DecodedImageFolder: an image folder decoded once into memory
// (small data sets such as the bundled CIFAR-10 slices) and its batches, augmented or plain.
#pragma once

// io::ImageFolder decodes every image each time a batch asks for it and uses torchvision's default
// crop (area 8%..100%), which is made for 224-pixel photos. For 32 x 32 images trained for many
// epochs, decoding once and cropping less (area crop_min..100%) is faster and trains better:
//   DecodedImageFolder train(root / "train");
//   io::ImageBatch b = train.batch(rows, processor, &rng, {.scale_min = 0.35});   // augmented
//   io::ImageBatch e = train.batch(rows, processor);                               // evaluation
// Crops and flips are drawn from *augment in row order before any pixel work, so a batch is the
// same for every thread count (and a resumed run draws what the uninterrupted one drew).

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/image.hpp"
#include "fourierft/io/image_folder.hpp"

namespace fourierft::io {

class DecodedImageFolder {
 public:
  explicit DecodedImageFolder(const std::filesystem::path& root) : folder_(root) {
    images_.resize(static_cast<std::size_t>(folder_.size()));
    for (Index i = 0; i < folder_.size(); ++i) images_[static_cast<std::size_t>(i)] = folder_.load(i);
  }

  const io::ImageFolder& folder() const { return folder_; }
  const std::vector<std::string>& classes() const { return folder_.classes(); }
  Index size() const { return folder_.size(); }
  std::int64_t label(Index i) const { return folder_.items()[static_cast<std::size_t>(i)].label; }

  // pixels (B, 3, H, W) and labels (B) of items `rows`: the processor's training transform with a
  // random resized crop (`crop`) and flip drawn from *augment, or its evaluation transform (resize,
  // normalise) when augment is null.
  io::ImageBatch batch(std::span<const Index> rows, const io::ImageProcessor& processor,
                       Rng* augment = nullptr, const io::RandomResizedCropOptions& crop = {}) const {
    const auto B = static_cast<Index>(rows.size());
    const Index H = processor.height, W = processor.width;
    io::ImageBatch out{Tensor<float>({B, 3, H, W}), Tensor<std::int64_t>({B})};
    std::vector<io::Augmentation> drawn;
    for (Index b = 0; b < B; ++b) {
      const Index i = rows[static_cast<std::size_t>(b)];
      check<IndexError>(i >= 0 && i < size(), "DecodedImageFolder::batch: item ", i, " of '",
                        folder_.root().string(), "' does not exist (", size(), " images)");
      out.labels[b] = label(i);
      if (augment != nullptr) {
        const io::Image& im = images_[static_cast<std::size_t>(i)];
        drawn.push_back(io::draw_augmentation(im.height, im.width, *augment, crop));
      }
    }
#pragma omp parallel for if (B >= 16)
    for (Index b = 0; b < B; ++b) {
      const io::Image& im = images_[static_cast<std::size_t>(rows[static_cast<std::size_t>(b)])];
      const std::span<float> dst = out.pixels.data().subspan(static_cast<std::size_t>(b * 3 * H * W),
                                                             static_cast<std::size_t>(3 * H * W));
      if (augment != nullptr)
        processor.train(im, drawn[static_cast<std::size_t>(b)], dst);
      else
        processor.eval(im, dst);
    }
    return out;
  }

 private:
  io::ImageFolder folder_;
  std::vector<io::Image> images_;
};

}  // namespace fourierft::io
