#pragma once
// What the two epilogue passes share (gemm_epilogue.h: a consumer run on each
// block of a GEMM's product; row_epilogue.h: on each finished row of a loop
// kernel's output): finding the one kernel that may run, element by element,
// on a producer's output while it is in cache.
//
// The consumer's contract (its loop shapes are in gemm_epilogue.h): one flat
// loop over the product's elements, or a rows x columns nest; every access at
// the element, at the column (the nest), or invariant; no value carried from
// one element to the next. So its elements may be visited in any order, and
// in any grouping the producer finishes them in.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "compiler/lower/loop_ir.h"

namespace kiln::lower {

// Why `u` cannot run as the epilogue of a producer writing buffer `c`, `cols`
// columns wide (empty: it can).
std::string epilogue_misfit(const Program& p, const Kernel& u, int c, int64_t cols);

// Buffer `id` is c itself or a view of all of c (a reshape): element i of one is element i of the other.
bool whole_product(const Program& p, int id, int c);

// Which kernels touch which buffers, over every entry, taken once before a
// pass fuses anything (a fused consumer leaves its entries: the order check
// then refuses it to any other producer).
class ConsumerSearch {
 public:
  explicit ConsumerSearch(const Program& p);
  const std::set<int>& used() const { return used_; }
  // The kernel that may run as the epilogue of `producer` on buffer `c` (cols
  // columns wide): c's only other reader, not an end-of-step update copy,
  // writing nothing the producer reads, and movable to the producer's place
  // in every entry. -1 if none; `why` then says why not.
  int sole_consumer(const Program& p, int producer, int c, int64_t cols, std::string& why) const;

 private:
  std::set<int> used_, tail_;
  std::map<int, std::set<int>> touched_by_;
};

// Every load of `buffer` in `body` is at `at` (null: there is none). Both
// passes ask it before a consumer finishes the product in its own output.
bool reads_only_at(const std::vector<Stmt>& body, int buffer, const ExprP& at);

// Removes kernel `k` from every entry's kernel list.
void drop_from_entries(Program& p, int k);

}  // namespace kiln::lower
