#include "contaccum/data/passage_source.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace contaccum {

void TablePassages::for_each_block(int64_t begin, int64_t end, int64_t block_rows, const PassageBlockFn& fn) const {
  TORCH_CHECK(0 <= begin && begin <= end && end <= size(), "TablePassages::for_each_block: rows [", begin, ", ", end,
              ") are not within a table of ", size(), " rows");
  TORCH_CHECK(block_rows > 0, "TablePassages::for_each_block: block_rows must be > 0, got ", block_rows);
  for (int64_t first = begin; first < end; first += block_rows) {
    TextTable block;
    for (int64_t row = first; row < std::min(end, first + block_rows); ++row) {
      block.add(table_.id(row), table_.title(row), table_.text(row));
    }
    fn(first, block);
  }
}

}  // namespace contaccum
