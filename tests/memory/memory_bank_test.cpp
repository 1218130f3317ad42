#include "test_util.h"

#include <algorithm>
#include <deque>

namespace contaccum {
namespace {

// Rows whose value is their global sequence number, [n, group, dim].
torch::Tensor numbered(int64_t first, int64_t n, int64_t group = 2, int64_t dim = 3) {
  return torch::arange(first, first + n, torch::kDouble).view({n, 1, 1}).expand({n, group, dim}).contiguous();
}

TEST(MemoryBank, KeepsTheNewestRowsInFifoOrderAcrossWraps) {
  MemoryBank bank(MemoryBankOptions(5));
  std::deque<double> want;  // oracle: a plain deque of sequence numbers
  int64_t next = 0;
  for (int64_t n : {2, 2, 3, 1, 4, 7, 5, 1}) {
    bank.enqueue(numbered(next, n));
    for (int64_t i = 0; i < n; ++i) want.push_back(static_cast<double>(next + i));
    while (static_cast<int64_t>(want.size()) > 5) want.pop_front();
    next += n;
    ASSERT_EQ(bank.size(), static_cast<int64_t>(want.size()));
    const auto ordered = bank.ordered();
    for (int64_t i = 0; i < bank.size(); ++i) {
      EXPECT_EQ(ordered[i][1][2].item<double>(), want[i]) << "after enqueueing " << n << ", row " << i;
    }
    // view() holds the same rows in storage order.
    auto v = bank.view().select(2, 0).select(1, 0).contiguous();
    auto got = std::vector<double>(v.data_ptr<double>(), v.data_ptr<double>() + v.numel());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, std::vector<double>(want.begin(), want.end()));
  }
  EXPECT_TRUE(bank.full());
  EXPECT_DOUBLE_EQ(bank.fill(), 1.0);
}

TEST(MemoryBank, StoresDetachedCopiesWithoutReallocating) {
  MemoryBank bank(MemoryBankOptions(4));
  auto x = torch::randn({3, 2}, torch::requires_grad());
  bank.enqueue(x * 2);
  const void* storage = bank.view().data_ptr();
  EXPECT_FALSE(bank.view().requires_grad());
  EXPECT_EQ(bank.entries_per_row(), 1);
  EXPECT_EQ(bank.dim(), 2);
  bank.enqueue(torch::randn({3, 2}));
  bank.enqueue(torch::randn({2, 2}));
  EXPECT_EQ(bank.view().data_ptr(), storage) << "the ring buffer must not move";
  EXPECT_EQ(bank.size(), 4);
  EXPECT_EQ(bank.head(), 0);
  x.data().fill_(100.0);  // the bank holds copies
  EXPECT_LT(bank.view().abs().max().item<double>(), 100.0);
}

TEST(MemoryBank, ClearEmptiesAndZeroCapacityIgnoresEverything) {
  MemoryBank bank(MemoryBankOptions(3));
  bank.enqueue(numbered(0, 2));
  bank.clear();
  EXPECT_TRUE(bank.empty());
  EXPECT_EQ(bank.view().size(0), 0);
  bank.enqueue(numbered(10, 1));
  EXPECT_EQ(bank.ordered()[0][0][0].item<double>(), 10.0);

  MemoryBank off;
  off.enqueue(numbered(0, 4));
  EXPECT_EQ(off.size(), 0);
  EXPECT_FALSE(off.view().defined());
  EXPECT_DOUBLE_EQ(off.fill(), 0.0);
}

TEST(MemoryBank, FollowsTheDtypeOfWhatItStoresAndRejectsMismatches) {
  MemoryBank bank(MemoryBankOptions(3));
  bank.enqueue(torch::randn({1, 2, 4}, torch::kFloat));
  EXPECT_EQ(bank.view().scalar_type(), torch::kFloat);
  EXPECT_THAT(
      [&] {
        bank.enqueue(torch::randn({1, 2, 5}, torch::kFloat));
      },
      ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("must match the bank's [3, 2, 4]")));
  EXPECT_THAT(
      [&] {
        bank.enqueue(torch::randn({1, 2, 4}, torch::kDouble));
      },
      ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("(Double, cpu) must match the bank (Float, cpu)")));
  EXPECT_THAT([] { MemoryBank(MemoryBankOptions(-1)); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("capacity must be >= 0, got -1")));
}

TEST(MemoryBank, SaveAndLoadRestoreContentsAndOrder) {
  MemoryBank bank(MemoryBankOptions(4));
  bank.enqueue(numbered(0, 3));
  bank.enqueue(numbered(3, 3));  // wrapped: storage order != age order
  torch::serialize::OutputArchive out;
  bank.save(out);
  std::stringstream buffer;
  out.save_to(buffer);

  MemoryBank restored(MemoryBankOptions(4));
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  restored.load(in);
  EXPECT_TRUE(torch::equal(restored.ordered(), bank.ordered()));
  // Every row in the slot it had: products over view() run in the same order.
  EXPECT_TRUE(torch::equal(restored.view(), bank.view()));
  EXPECT_EQ(restored.head(), bank.head());
  // And both continue identically.
  bank.enqueue(numbered(6, 1));
  restored.enqueue(numbered(6, 1));
  EXPECT_TRUE(torch::equal(restored.ordered(), bank.ordered()));
  EXPECT_TRUE(torch::equal(restored.view(), bank.view()));

  MemoryBank other(MemoryBankOptions(5));
  buffer.seekg(0);
  torch::serialize::InputArchive again;
  again.load_from(buffer);
  EXPECT_THAT([&] { other.load(again); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("saved capacity 4 != this bank's capacity 5")));
}

// Every write position: empty, partially filled, full at head 0, rotated.
TEST(MemoryBank, SaveAndLoadRestoreTheStorageAtEveryWritePosition) {
  for (int64_t written = 0; written <= 11; ++written) {
    MemoryBank bank(MemoryBankOptions(5));
    for (int64_t i = 0; i < written; ++i) bank.enqueue(torch::randn({1, 2, 3}));
    torch::serialize::OutputArchive out;
    bank.save(out);
    std::stringstream buffer;
    out.save_to(buffer);
    MemoryBank restored(MemoryBankOptions(5));
    restored.enqueue(torch::randn({4, 2, 3}));  // state the load must replace
    torch::serialize::InputArchive in;
    in.load_from(buffer);
    restored.load(in);
    ASSERT_EQ(restored.size(), bank.size()) << written;
    EXPECT_EQ(restored.head(), bank.head()) << written;
    if (written > 0) {
      EXPECT_TRUE(torch::equal(restored.view(), bank.view())) << written;
    }
    const auto next = torch::randn({2, 2, 3});
    bank.enqueue(next);
    restored.enqueue(next);
    EXPECT_TRUE(torch::equal(restored.view(), bank.view())) << written;
    EXPECT_EQ(restored.head(), bank.head()) << written;
  }
}

// Every row's tag is the tag of the enqueue that wrote it: through wraps, an
// enqueue longer than the bank, an undo and a save/load; slot_for says where
// each row goes.
TEST(MemoryBank, TagsFollowTheirRowsThroughWrapsUndoAndSaveLoad) {
  MemoryBank bank(MemoryBankOptions(7));
  // A plain model of the ring: each slot's row number and tag.
  std::vector<int64_t> row_of(7, -1), tag_of(7, -1);
  int64_t next = 0;
  const auto enqueue = [&](int64_t n, int64_t tag) {
    for (int64_t j = 0; j < n; ++j) {
      const int64_t slot = bank.slot_for(n, j);
      if (n > 7 && j < n - 7) {
        EXPECT_EQ(slot, -1);
        continue;
      }
      ASSERT_GE(slot, 0);
      row_of[static_cast<size_t>(slot)] = next + j;
      tag_of[static_cast<size_t>(slot)] = tag;
    }
    bank.enqueue(numbered(next, n), tag);
    next += n;
  };
  const auto check = [&](const std::string& when) {
    std::vector<int64_t> want(tag_of.begin(), tag_of.begin() + bank.size());
    EXPECT_EQ(bank.tags(), want) << when;
    for (int64_t s = 0; s < bank.size(); ++s) {
      EXPECT_EQ(bank.view()[s][0][0].item<double>(), static_cast<double>(row_of[static_cast<size_t>(s)])) << when;
    }
  };
  enqueue(3, 0);
  check("filling");
  enqueue(3, 1);
  const auto undo = bank.undo_for(3);
  const auto tags_before = tag_of;
  const auto rows_before = row_of;
  enqueue(3, 2);  // wraps: slots 6, 0, 1
  check("wrapped");
  bank.undo(undo);
  tag_of = tags_before;
  row_of = rows_before;
  next -= 3;
  check("undone");
  enqueue(10, 3);  // longer than the bank: the newest 7 rows, all tag 3
  check("overfull");
  enqueue(2, 4);

  auto in = test::through_bytes(bank);
  MemoryBank restored(MemoryBankOptions(7));
  restored.load(in);
  EXPECT_EQ(restored.tags(), bank.tags());
  bank.clear();
  EXPECT_TRUE(bank.tags().empty());
}

}  // namespace
}  // namespace contaccum

namespace contaccum {
namespace {

// A checkpoint whose banked rows hold a NaN is refused, naming the row.
TEST(MemoryBank, LoadRefusesANonFiniteRow) {
  MemoryBank saved(MemoryBankOptions(6));
  auto rows = torch::randn({4, 2, 3});
  rows[2][1][0] = std::numeric_limits<float>::quiet_NaN();
  saved.enqueue(rows);
  auto archive = test::through_bytes(saved);
  MemoryBank loaded(MemoryBankOptions(6));
  EXPECT_THAT(test::error_of([&] { loaded.load(archive, torch::kCPU); }),
              ::testing::HasSubstr("MemoryBank::load: banked row 2 of 4 holds a NaN or an infinity"));
}

}  // namespace
}  // namespace contaccum

namespace contaccum {
namespace {

TEST(MemoryBank, IdentitiesFollowTheirRowsThroughWrapsWideningUndoAndSaveLoad) {
  MemoryBank bank(4);
  EXPECT_FALSE(bank.ids().defined());
  bank.enqueue(torch::zeros({3, 2}), 0, torch::tensor({10, 11, 12}, torch::kLong));
  EXPECT_TRUE(torch::equal(bank.ids(), torch::tensor({10, 11, 12}, torch::kLong).view({3, 1})));
  // Two identities a row widen every list; the older rows are padded.
  bank.enqueue(torch::zeros({2, 2}), 1, torch::tensor({{20, 21}, {30, 31}}, torch::kLong));
  // Slots: 0 <- 30 (wrapped), 1: 11, 2: 12, 3: 20.
  EXPECT_TRUE(torch::equal(bank.ids(), torch::tensor({{30, 31}, {11, -1}, {12, -1}, {20, 21}}, torch::kLong)));
  const auto undo = bank.undo_for(2);
  bank.enqueue(torch::zeros({2, 2}), 2);  // no identities: -1
  EXPECT_TRUE(torch::equal(bank.ids().narrow(0, 1, 2), torch::full({2, 2}, -1, torch::kLong)));
  bank.undo(undo);
  EXPECT_TRUE(torch::equal(bank.ids(), torch::tensor({{30, 31}, {11, -1}, {12, -1}, {20, 21}}, torch::kLong)));
  MemoryBank restored(4);
  auto archive = test::through_bytes(bank);
  restored.load(archive);
  EXPECT_TRUE(torch::equal(restored.ids(), bank.ids()));
  // More rows than the bank holds: the newest rows' identities are kept.
  restored.enqueue(torch::zeros({5, 2}), 3, torch::arange(5, torch::kLong));
  EXPECT_TRUE(torch::equal(restored.ids().select(1, 0), torch::tensor({4, 1, 2, 3}, torch::kLong)));
}

}  // namespace
}  // namespace contaccum

namespace contaccum {
namespace {

// A trainer's undo record (`Strategy` takes one a step) keeps its buffers
// from one `undo_for` to the next, and each record puts the bank back as it
// was, rows, identities, tags, size and write position, across a wrap.
TEST(MemoryBank, AReusedUndoRecordKeepsItsBuffersAndRestoresAcrossAWrap) {
  MemoryBank bank(5);
  int64_t next_id = 100;
  const auto enqueue = [&](int64_t n, int64_t tag) {
    bank.enqueue(torch::randn({n, 2, 3}), tag, torch::arange(next_id, next_id + 2 * n, torch::kLong).view({n, 2}));
    next_id += 2 * n;
  };
  enqueue(4, 0);  // slots 0-3; the head at 4
  MemoryBank::Undo record;
  const void* rows_buffer = nullptr;
  const void* ids_buffer = nullptr;
  for (int64_t step = 1; step <= 4; ++step) {
    bank.undo_for(3, record);  // the next 3 writes: slots 4, 0, 1 at first, then further round
    if (step > 1) {
      EXPECT_EQ(record.rows.data_ptr(), rows_buffer) << step;
      EXPECT_EQ(record.ids.data_ptr(), ids_buffer) << step;
    }
    rows_buffer = record.rows.data_ptr();
    ids_buffer = record.ids.data_ptr();
    const auto rows = bank.view().clone(), ids = bank.ids().clone();
    const auto tags = bank.tags();
    const int64_t head = bank.head(), size = bank.size();
    enqueue(3, step);
    ASSERT_FALSE(torch::equal(bank.view(), rows));
    bank.undo(record);
    EXPECT_TRUE(torch::equal(bank.view(), rows)) << step;
    EXPECT_TRUE(torch::equal(bank.ids(), ids)) << step;
    EXPECT_EQ(bank.tags(), tags) << step;
    EXPECT_EQ(bank.head(), head) << step;
    EXPECT_EQ(bank.size(), size) << step;
    enqueue(3, step);  // the step taken again, kept
  }
}

}  // namespace
}  // namespace contaccum
