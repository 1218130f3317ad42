// cpu_features() against the kernel's own list of this CPU's flags.
#include <contaccum/core/cpu_features.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace contaccum {
namespace {

TEST(CpuFeatures, AgreeWithTheKernelsFlags) {
#if !defined(__linux__) || !(defined(__x86_64__) || defined(__i386__))
  GTEST_SKIP() << "reads /proc/cpuinfo's x86 flags";
#else
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::set<std::string> flags;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string w; words >> w;) flags.insert(w);
    break;
  }
  if (flags.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  const auto& f = cpu_features();
  EXPECT_EQ(f.avx2, flags.count("avx2") > 0);
  EXPECT_EQ(f.fma, flags.count("fma") > 0);
  EXPECT_EQ(f.avx512f, flags.count("avx512f") > 0);
#endif
}

}  // namespace
}  // namespace contaccum
