#include "contaccum/core/similarity.h"

namespace contaccum {

template <>
const std::vector<std::pair<Similarity, std::string>>& enum_names<Similarity>() {
  static const std::vector<std::pair<Similarity, std::string>> names = {{Similarity::Dot, "dot"},
                                                                        {Similarity::Cosine, "cosine"}};
  return names;
}

}  // namespace contaccum
