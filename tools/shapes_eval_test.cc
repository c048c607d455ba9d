#include "tools/shapes_eval.h"

#include <gtest/gtest.h>

#include <vector>

namespace duet {
namespace {

TEST(GalleryPickerTest, EveryCategoryGetsItsShareInFileOrder) {
  // A held-out file: 100 items of each category, category by category.
  std::vector<world::Category> items;
  for (world::Category c : world::kAllCategories) items.insert(items.end(), 100, c);
  GalleryPicker picker(/*tiles=*/32);
  std::vector<size_t> picked;
  for (size_t i = 0; i < items.size(); ++i) {
    if (picker.Take(items[i])) picked.push_back(i);
  }
  ASSERT_EQ(picked.size(), 32u);
  for (size_t k = 0; k < 4; ++k) {
    for (size_t j = 0; j < 8; ++j)
      EXPECT_EQ(picked[k * 8 + j], k * 100 + j);  // the first 8 of each
  }
}

TEST(GalleryPickerTest, FewerTilesThanCategoriesShowNone) {
  GalleryPicker picker(/*tiles=*/3);
  EXPECT_FALSE(picker.Take(world::Category::kSingle));
}

}  // namespace
}  // namespace duet
